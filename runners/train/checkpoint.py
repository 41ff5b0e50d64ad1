"""Checkpoints in verl's layout, and resume.

    <work_dir>/checkpoints/
        latest_checkpointed_iteration.txt     newest complete step (verl writes the same file)
        global_step_N/model/                  HF model dir incl. tokenizer (what merge reads)
        global_step_N/trainer_state.pt        optimizer, scheduler, torch RNG, step (tensors and plain
                                              values only: loaded with ``weights_only=True``, no pickle)
        global_step_N/rng.json                python and numpy RNG states
        global_step_N/rlreg-manifest.json     sha256 of every file above
    <work_dir>/checkpoints-history.json       per checkpointed step, the sha256 of the metric history
                                              up to it (outside the checkpoints: timings make it differ
                                              between runs, and published checkpoints stay byte-equal)

A checkpoint is written into ``global_step_N.tmp`` and renamed when complete, so a crash while
saving never leaves a half checkpoint that a rerun would resume from. A resume first checks the
manifest (and that the state loads without pickle); anything else discards the checkpoints and the
run starts over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runners.common.integrity import manifest_problem, write_manifest

LATEST_FILE = "latest_checkpointed_iteration.txt"
STATE_FILE = "trainer_state.pt"
RNG_FILE = "rng.json"


def step_dir(root: Path, step: int) -> Path:
    return root / f"global_step_{step}"


def rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors for ``trainer_state.pt``, JSON-able python/numpy states for ``rng.json``)."""
    tensors: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(internal), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}
    return tensors, plain


def set_rng_state(tensors: dict[str, Any], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    root: Path, step: int, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, extra: dict[str, Any],
    history_digest: str = "",
) -> Path:
    """Write ``global_step_{step}`` atomically and point ``latest_checkpointed_iteration.txt`` at it.
    ``history_digest`` (of the metric history up to ``step``) goes into the manifest, so a resume
    also refuses a history file edited since."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    rng_tensors, rng_plain = rng_state()
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_tensors, "extra": extra}, tmp / STATE_FILE)
    (tmp / RNG_FILE).write_text(json.dumps(rng_plain))
    write_manifest(tmp)
    digests = {**_history_digests(root), str(step): history_digest}
    digests_tmp = _history_file(root).with_suffix(".tmp")
    digests_tmp.write_text(json.dumps(digests, sort_keys=True))
    os.replace(digests_tmp, _history_file(root))  # before the rename: a checkpoint never lacks its entry
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


def _history_file(root: Path) -> Path:
    return root.with_name(root.name + "-history.json")


def _history_digests(root: Path) -> dict[str, str]:
    try:
        digests = json.loads(_history_file(root).read_text())
    except (OSError, ValueError):
        return {}
    return digests if isinstance(digests, dict) else {}


def read_trainer_state(root: Path, step: int, history_digest: str = "") -> dict[str, Any]:
    """The verified state of ``global_step_{step}``; raises ``ValueError`` saying why it is unusable."""
    directory = step_dir(root, step)
    problem = manifest_problem(directory)
    if problem:
        raise ValueError(problem)
    if _history_digests(root).get(str(step)) != history_digest:
        raise ValueError(f"{root.parent / 'metrics_history.jsonl'}: differs from what checkpoint {step} recorded "
                         f"in {_history_file(root).name}")
    try:
        state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
        state["rng_plain"] = json.loads((directory / RNG_FILE).read_text())
    except Exception as exc:  # UnpicklingError for anything beyond tensors and plain values
        raise ValueError(f"{directory / STATE_FILE}: not loadable without pickle ({type(exc).__name__}: {exc})") from exc
    return state


def resume_point(root: Path, history_digest: Any) -> tuple[int | None, dict[str, Any] | None, str | None]:
    """(step, state, None) for the newest verified checkpoint; (None, None, why) after discarding
    checkpoints that fail verification; (None, None, None) when there are none.
    ``history_digest(step)`` is the digest of the metric history up to ``step``."""
    step = latest_checkpoint(root)
    if step is None:
        return None, None, None
    try:
        return step, read_trainer_state(root, step, history_digest(step)), None
    except ValueError as exc:
        shutil.rmtree(root, ignore_errors=True)
        _history_file(root).unlink(missing_ok=True)
        return None, None, str(exc)


def apply_trainer_state(state: dict[str, Any], optimizer: Any, scheduler: Any) -> None:
    """Restore optimizer, scheduler and RNG from a state ``read_trainer_state`` returned."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], state["rng_plain"])


def copy_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` into ``dst``. Never hard links: the published copy must not share inodes with
    the resume state, or a write to either would corrupt both."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
