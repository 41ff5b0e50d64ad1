"""Tags that say which reward code scored a run (its source hash), for train and eval runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.hashing import sha256_file

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def reward_file(spec: Any = None, project_root: Path | None = None) -> Path:
    """The file whose bytes decide the scores: ``reward.path`` (resolved) or runners/reward.py."""
    from runners.reward_file import source_file

    return source_file(spec.reward if spec is not None else None, project_root or PROJECT_ROOT)


def reward_tags(spec: Any, project_root: Path | None = None) -> dict[str, str]:
    path = reward_file(spec, project_root)
    digest = sha256_file(path) if path.exists() else "missing"
    return {"rlreg.reward_function": spec.reward.label, "rlreg.reward_sha256": digest}
