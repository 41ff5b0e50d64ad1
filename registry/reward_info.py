"""Tags that say which reward code scored a run (its source hash), for train and eval runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.hashing import sha256_file


def reward_file() -> Path:
    return Path(__file__).resolve().parents[1] / "runners" / "reward.py"


def reward_tags(spec: Any) -> dict[str, str]:
    path = reward_file()
    digest = sha256_file(path) if path.exists() else "missing"
    return {"rlreg.reward_function": spec.reward.function, "rlreg.reward_sha256": digest}
