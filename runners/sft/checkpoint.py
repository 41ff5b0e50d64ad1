"""SFT checkpoints in ``ctx.work_dir``: model, optimizer, scheduler, RNG states and the step.

Written to a temp file and renamed, so a crash mid-save never leaves a checkpoint that loads
half. Only the newest ``keep`` checkpoints are kept. Tensors and plain values only (the Python RNG
state as a list), loaded with ``weights_only=True``: no pickle from disk. Each ``step_N.pt`` has a
``step_N.sha256`` next to it; a resume checks it first, and a checkpoint that fails the check or does
not load without pickle is discarded (the run starts over, see ``resume_checkpoint``).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import torch

from registry.hashing import sha256_file

_NAME = re.compile(r"^step_(\d+)\.pt$")


def checkpoint_dir(work_dir: Path) -> Path:
    return Path(work_dir) / "sft_checkpoints"


def latest_checkpoint(work_dir: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in checkpoint_dir(work_dir).glob("step_*.pt") if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def _digest_file(path: Path) -> Path:
    return path.with_suffix(".sha256")


def resume_checkpoint(work_dir: Path) -> tuple[dict | None, str | None]:
    """(state, None) for the newest verified checkpoint; (None, why) after discarding every
    checkpoint when the newest fails verification; (None, None) when there is none."""
    path = latest_checkpoint(work_dir)
    if path is None:
        return None, None
    try:
        recorded = _digest_file(path).read_text().strip() if _digest_file(path).is_file() else None
        if recorded != sha256_file(path):
            raise ValueError(f"{path}: sha256 differs from {_digest_file(path).name}" if recorded else
                             f"{path}: no {_digest_file(path).name} (written by an older rlreg, or not by rlreg)")
        try:
            return torch.load(path, map_location="cpu", weights_only=True), None
        except Exception as exc:  # UnpicklingError for anything beyond tensors and plain values
            raise ValueError(f"{path}: not loadable without pickle ({type(exc).__name__}: {exc})") from exc
    except ValueError as exc:
        for old in checkpoint_dir(work_dir).glob("step_*"):
            old.unlink()
        return None, str(exc)


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
            "python": _plain(random.getstate()),
        },
        "extra": extra,
    }
    path = directory / f"step_{step}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    digest_tmp = _digest_file(path).with_suffix(".sha256.tmp")
    digest_tmp.write_text(sha256_file(tmp))
    os.replace(digest_tmp, _digest_file(path))  # digest first: a crash in between leaves a mismatch, never a pass
    os.replace(tmp, path)
    for old in sorted(directory.glob("step_*.pt"), key=lambda p: int(_NAME.match(p.name).group(1)))[:-keep]:
        old.unlink()
        _digest_file(old).unlink(missing_ok=True)
    return path


def _plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def apply_checkpoint(state: dict, model: Any, optimizer: Any, scheduler: Any) -> tuple[int, dict]:
    """Restore a state ``resume_checkpoint`` returned, in place; returns ``(step, extra)``."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    version, internal, gauss = state["rng"]["python"]
    random.setstate((version, tuple(internal), gauss))
    return int(state["step"]), dict(state.get("extra") or {})
