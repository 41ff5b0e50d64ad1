"""Content hashes: canonical JSON of specs, sha256 of files/directories, runner source versions."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_text(canonical_json(obj))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def digest_path(path: Path) -> str:
    """sha256 of a file, or of a directory's sorted (relative path, file sha256) list."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        entries = [
            f"{p.relative_to(path).as_posix()}:{sha256_file(p)}"
            for p in sorted(path.rglob("*"))
            if p.is_file()
        ]
        return sha256_text("\n".join(entries))
    if path.exists():  # a FIFO or device: never read it (a FIFO blocks); the stage reports it
        return "not-a-regular-file"
    raise FileNotFoundError(path)


def spec_hash(spec_dump: dict[str, Any]) -> str:
    return sha256_json(spec_dump)


@cache
def code_version(module_name: str) -> str:
    """Hash of a runner's source: its module (whole package if it is one) and, transitively,
    every ``runners.*`` module it imports (found by parsing, not importing)."""
    seen: set[Path] = set()
    pending = [module_name]
    while pending:
        name = pending.pop()
        for file in _module_files(name):
            if file in seen:
                continue
            seen.add(file)
            pending.extend(_runner_imports(file))
    h = hashlib.sha256()
    for file in sorted(seen):
        h.update(file.name.encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:16]


def _module_files(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: every file in it
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def _runner_imports(file: Path) -> list[str]:
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return [n for n in names if n == "runners" or n.startswith("runners.")]
