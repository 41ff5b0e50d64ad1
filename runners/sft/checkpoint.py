"""SFT checkpoints in ``ctx.work_dir``: model, optimizer, scheduler, RNG states and the step.

Written to a temp file and renamed, so a crash mid-save never leaves a checkpoint that loads
half. Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import torch

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "sft_checkpoints"


def latest_checkpoint(work_dir: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in checkpoint_dir(work_dir).glob("step_*.pt") if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def save_checkpoint(work_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, extra: dict, keep: int = 2) -> Path:
    directory = checkpoint_dir(work_dir)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "python": random.getstate(),
        },
        "extra": extra,
    }
    path = directory / f"step_{step}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(directory.glob("step_*.pt"), key=lambda p: int(_NAME.match(p.name).group(1)))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, dict]:
    """Restore everything in place; returns ``(step, extra)``."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    random.setstate(state["rng"]["python"])
    return int(state["step"]), dict(state.get("extra") or {})
