"""Digests of resume state (checkpoints, cached base models) in the work dir, checked before reuse.

The work dir is mutable and may sit on a shared filesystem: a rerun resumes only from state whose
files still match the sha256 manifest written with it, and otherwise discards it and starts over
(a flipped byte must never flow into a cached output; see docs/operations.md, "Trust model").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.hashing import sha256_file

MANIFEST = "rlreg-manifest.json"


def _files(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): sha256_file(p)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != MANIFEST}


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> None:
    """Record the sha256 of every file under ``directory`` (and ``extra`` facts, e.g. the digest of
    state kept elsewhere) in ``directory/rlreg-manifest.json``."""
    text = json.dumps({"files": _files(directory), "extra": extra or {}}, indent=1, sort_keys=True)
    (directory / MANIFEST).write_text(text)


def manifest_problem(directory: Path, extra: dict[str, Any] | None = None) -> str | None:
    """None when ``directory`` matches its manifest (and ``extra``), else what differs."""
    try:
        recorded = json.loads((directory / MANIFEST).read_text())
        files, recorded_extra = recorded["files"], recorded.get("extra", {})
    except FileNotFoundError:
        return f"{directory}: no {MANIFEST} (written by an older rlreg, or not by rlreg)"
    except (ValueError, KeyError, TypeError):
        return f"{directory / MANIFEST}: unreadable"
    actual = _files(directory)
    changed = sorted(n for n in set(files) | set(actual) if files.get(n) != actual.get(n))
    if changed:
        return f"{directory}: {', '.join(changed[:5])} differ from the recorded sha256"
    wrong = sorted(k for k in (extra or {}) if recorded_extra.get(k) != extra[k])
    if wrong:
        return f"{directory}: {', '.join(wrong)} differ from what the checkpoint recorded"
    return None
