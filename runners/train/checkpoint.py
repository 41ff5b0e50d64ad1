"""Checkpoints in verl's layout, and resume.

    <work_dir>/checkpoints/
        latest_checkpointed_iteration.txt     newest complete step (verl writes the same file)
        global_step_N/model/                  HF model dir incl. tokenizer (what merge reads)
        global_step_N/trainer_state.pt        optimizer, scheduler, RNG states, step, data position

A checkpoint is written into ``global_step_N.tmp`` and renamed when complete, so a crash while
saving never leaves a half checkpoint that a rerun would resume from.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST_FILE = "latest_checkpointed_iteration.txt"
STATE_FILE = "trainer_state.pt"


def step_dir(root: Path, step: int) -> Path:
    return root / f"global_step_{step}"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    root: Path, step: int, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any]
) -> Path:
    """Write ``global_step_{step}`` atomically and point ``latest_checkpointed_iteration.txt`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            **extra,
        },
        tmp / STATE_FILE,
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = root / (LATEST_FILE + ".tmp")
    latest_tmp.write_text(str(step))
    os.replace(latest_tmp, root / LATEST_FILE)
    return final


def latest_checkpoint(root: Path) -> int | None:
    """The newest complete checkpoint step under ``root`` (None when there is none)."""
    latest = root / LATEST_FILE
    if latest.is_file():
        text = latest.read_text().strip()
        if text.isdigit() and (step_dir(root, int(text)) / STATE_FILE).is_file():
            return int(text)
    # The pointer is missing or stale: fall back to the newest complete directory.
    steps = [
        int(p.name.rsplit("_", 1)[1])
        for p in root.glob("global_step_*")
        if p.name.rsplit("_", 1)[1].isdigit() and (p / STATE_FILE).is_file()
    ]
    return max(steps) if steps else None


def load_trainer_state(root: Path, step: int, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore optimizer, scheduler and RNG from ``global_step_{step}``; returns the saved dict."""
    # weights_only=False: the state holds Python/numpy RNG tuples; the file is our own.
    state = torch.load(step_dir(root, step) / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def link_tree(src: Path, dst: Path) -> None:
    """Mirror ``src`` into ``dst`` with hard links (a copy where linking is impossible)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
