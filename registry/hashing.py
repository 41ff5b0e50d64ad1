"""Content hashes: canonical JSON of specs, sha256 of files/directories, runner source versions,
and stat fingerprints that let a cache hit skip re-hashing an output nobody touched."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
RACY_NS = 1_000_000_000
"""A file changed less than this before its fingerprint was taken could change again within the
same timestamp tick without its stat changing (git's "racily clean" problem): such a fingerprint is
not recorded, and the next lookup re-hashes and records one then."""


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


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]


def fingerprint_path(path: Path) -> tuple[str, int]:
    """sha256 of every file's (relative path, size, mtime_ns, ctime_ns, inode), and the newest of
    those timestamps. Any write, truncation, replacement, rename, added or removed file changes it;
    restoring mtime with ``utime`` still moves ctime, which only the kernel sets. ``st_dev`` is left
    out: NFS clients number the same mount differently, and the path already names the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    lines, newest = [], 0
    for p in _files(path):
        st = os.stat(p)
        rel = "" if p == path else p.relative_to(path).as_posix()
        lines.append(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}")
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return sha256_text("\n".join(lines)), newest


def digest_and_fingerprint(path: Path) -> tuple[str, str | None]:
    """The content digest and a fingerprint taken *before* reading (so a write during hashing shows
    as a fingerprint mismatch later); None for the fingerprint when the content is racily fresh."""
    started = time.time_ns()
    fingerprint, newest = fingerprint_path(path)
    digest = digest_path(path)
    return digest, (fingerprint if newest < started - RACY_NS else None)


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
