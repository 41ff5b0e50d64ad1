"""verl's checkpoint layout (domain.md §6) and the small pointer file the train stage outputs.

    {default_local_dir}/latest_checkpointed_iteration.txt      "150"
    {default_local_dir}/global_step_150/actor/                  FSDP shards + huggingface/
    {default_local_dir}/global_step_150/data.pt                 dataloader state

Checkpoints of a 4B model are tens of GB, so they stay where verl wrote them (the stage's
persistent work dir, or ``train.verl.checkpoint_dir``) — that is also what ``resume_mode: auto``
resumes from. The train stage's ``checkpoints`` output is ``checkpoints.json`` pointing there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from registry.errors import InputDataError

LATEST_FILE = "latest_checkpointed_iteration.txt"
POINTER_FILE = "checkpoints.json"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


def saved_steps(ckpt_dir: Path) -> list[int]:
    """Steps that have an ``actor`` directory, ascending."""
    if not ckpt_dir.is_dir():
        return []
    steps = []
    for child in ckpt_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "actor").is_dir():
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_step(ckpt_dir: Path) -> int | None:
    """verl's own record of the newest complete checkpoint; falls back to the highest
    ``global_step_N`` (async saves skip the txt file)."""
    latest = ckpt_dir / LATEST_FILE
    if latest.is_file():
        text = latest.read_text().strip()
        if not text.isdigit():
            raise InputDataError(f"{latest}: expected a step number, found {text[:40]!r} (delete the file to fall back to the newest global_step_N)")
        return int(text)
    steps = saved_steps(ckpt_dir)
    return steps[-1] if steps else None


def write_pointer(out_dir: Path, ckpt_dir: Path) -> Path:
    path = out_dir / POINTER_FILE
    step = latest_step(ckpt_dir)
    path.write_text(
        json.dumps(
            {"dir": str(ckpt_dir.resolve()), "latest_step": step, "steps": saved_steps(ckpt_dir)}, indent=2
        )
    )
    return path


def checkpoint_dir_from(train_output: Path) -> Path:
    """The checkpoint directory behind the train stage's ``checkpoints`` output (the pointer file,
    or a checkpoint directory itself)."""
    if train_output.is_dir():
        return train_output
    try:
        data = json.loads(train_output.read_text())
        return Path(data["dir"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(
            f"{train_output}: not a verl checkpoint pointer ({exc}); rerun the train stage"
        ) from exc


def actor_dir(ckpt_dir: Path, step: int | None = None) -> tuple[int, Path]:
    """``(step, <ckpt>/global_step_N/actor)`` for ``step`` or the newest one; clear errors otherwise."""
    if not ckpt_dir.is_dir():
        raise InputDataError(
            f"{ckpt_dir}: verl checkpoint directory not found (it lives in the train stage's work "
            "dir or train.verl.checkpoint_dir; rerun the train stage if it was deleted)"
        )
    chosen = step if step is not None else latest_step(ckpt_dir)
    if chosen is None:
        raise InputDataError(
            f"{ckpt_dir}: no global_step_N/actor checkpoint (set train.save_freq so verl saves, "
            "e.g. 50, and make sure training ran at least that many steps)"
        )
    path = ckpt_dir / f"global_step_{chosen}" / "actor"
    if not path.is_dir():
        have = ", ".join(map(str, saved_steps(ckpt_dir))) or "none"
        raise InputDataError(f"{path}: no such checkpoint (saved steps: {have}; set merge.step to one of them)")
    return chosen, path
