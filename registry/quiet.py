"""Quiet Hugging Face libraries inside rlreg's own stage code, without global side effects.

transformers 5 draws a "Loading weights" bar per ``from_pretrained`` and a "Writing model shards"
bar per ``save_pretrained``; in a pipeline log they interleave with the stage's own bar (a demo run
had 23 of them). ``quiet_hf()`` turns transformers' and huggingface_hub's bars and transformers'
info/warning logs off for the ``with`` block, and MLflow's per-download artifact bars (a pyfunc
save copies its artifacts through them), and restores the previous state after it, so a user who
imports rlreg keeps their settings. Errors still print.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


@contextlib.contextmanager
def quiet_hf(enabled: bool = True) -> Iterator[None]:
    if not enabled or os.environ.get("RLREG_HF_VERBOSE"):
        yield
        return
    restore: list = []
    env_before = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)  # read lazily by hub/MLflow code
    try:
        try:
            import transformers.utils.logging as tlog

            verbosity, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
            restore.append(lambda: (tlog.set_verbosity(verbosity), tlog.enable_progress_bar() if bars else None))
        except ImportError:
            pass
        try:
            import huggingface_hub.utils as hub

            if not hub.are_progress_bars_disabled():
                hub.disable_progress_bars()
                restore.append(hub.enable_progress_bars)
        except ImportError:
            pass
        yield
    finally:
        for undo in reversed(restore):
            undo()
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
