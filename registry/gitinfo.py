"""Which code ran: git commit, dirty flag and the diff when dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(root: Path) -> dict[str, str]:
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"rlreg.git_commit": "unknown", "rlreg.git_dirty": "unknown"}
    status = _git(root, "status", "--porcelain", "--untracked-files=no") or ""
    return {"rlreg.git_commit": commit.strip(), "rlreg.git_dirty": "true" if status.strip() else "false"}


def git_diff(root: Path) -> str:
    return _git(root, "diff", "HEAD") or ""
