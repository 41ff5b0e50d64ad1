"""``entropy_history.json`` for verl runs: the builtin trainer's schema (seed 002,
``[{"step": 1, "entropy": 4.53}, …]``) from verl's ``actor/entropy``.

verl logs its metrics into the train stage's MLflow run (``trainer.logger`` includes mlflow and
``MLFLOW_RUN_ID`` attaches it to that run), so after the verl process ends the history is read from
MLflow; when the store is unreachable or holds no values, the console lines verl printed
(``LaunchResult.step_metrics``) are the fallback. A step logged twice (a resumed run) keeps its
latest value.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENTROPY_KEY = "actor/entropy"
HISTORY_FILE = "entropy_history.json"


def entropy_history(client: Any, run_id: str | None, console: Mapping[int, Mapping[str, float]],
                    key: str = ENTROPY_KEY) -> tuple[list[dict], str]:
    """(history, where it came from: ``mlflow`` / ``console`` / ``none``)."""
    if client is not None and run_id:
        try:
            values = client.get_metric_history(run_id, key)
        except Exception as exc:  # noqa: BLE001 - the store is unreachable: the console copy still counts
            print(f"[rlreg] could not read {key} from MLflow: {exc}", file=sys.stderr)
            values = []
        latest: dict[int, tuple[int, float]] = {}
        for m in values:
            if m.step not in latest or m.timestamp >= latest[m.step][0]:
                latest[m.step] = (m.timestamp, m.value)
        history = [{"step": int(s), "entropy": float(v)} for s, (_, v) in sorted(latest.items()) if math.isfinite(v)]
        if history:
            return history, "mlflow"
    history = [{"step": int(s), "entropy": float(m[key])} for s, m in sorted(console.items())
               if key in m and math.isfinite(float(m[key]))]
    return history, "console" if history else "none"


def write_history(ctx: Any, console: Mapping[int, Mapping[str, float]]) -> Path | None:
    """Write ``entropy_history.json`` into the stage output and log it; None when verl logged no
    entropy (e.g. ``calculate_entropy`` off and ``entropy_coeff`` 0)."""
    client = getattr(ctx.tracker, "client", None)
    history, source = entropy_history(client, getattr(ctx.tracker, "run_id", None), console)
    ctx.tracker.set_tags({"rlreg.entropy_history.source": source})
    if not history:
        return None
    path = ctx.out_dir / HISTORY_FILE
    path.write_text(json.dumps(history, indent=1))
    ctx.tracker.log_artifact(path)
    return path
