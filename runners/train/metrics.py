"""Per-step metric history kept next to the checkpoints, so a resumed run continues its curves.

``<work_dir>/metrics_history.jsonl`` holds one ``{"step": N, "metrics": {...}}`` line per finished
step. On resume from step N the lines after N (steps that will be redone) are dropped and the rest
is re-logged into the new MLflow run in one batch, so its curves start at step 1, not at N + 1.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

ENTROPY_KEY = "actor/entropy"


class MetricsHistory:
    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def load(self, up_to_step: int) -> list[dict[str, Any]]:
        """Read the history, keep steps ≤ ``up_to_step``, and rewrite the file to match."""
        self.rows = self.read(up_to_step)
        self._rewrite()
        return self.rows

    def digest(self, up_to_step: int | None = None) -> str:
        """sha256 of the rows (in memory, or on disk up to ``up_to_step``) as the file holds them;
        a checkpoint records it so a resume refuses a history edited since."""
        rows = self.rows if up_to_step is None else self.read(up_to_step)
        return hashlib.sha256("".join(json.dumps(r) + "\n" for r in rows).encode()).hexdigest()

    def read(self, up_to_step: int) -> list[dict[str, Any]]:
        rows = []
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a crash
                    continue
                if int(row["step"]) <= up_to_step:
                    rows.append(row)
        # The same step may appear twice if a crash hit between logging and checkpointing.
        by_step = {int(r["step"]): r for r in rows}
        return [by_step[s] for s in sorted(by_step)]

    def reset(self) -> None:
        self.rows = []
        self._rewrite()

    def append(self, step: int, metrics: Mapping[str, float]) -> None:
        row = {"step": step, "metrics": {k: _jsonable(v) for k, v in metrics.items()}}
        self.rows.append(row)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    def _rewrite(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def entropy_history(self) -> list[dict[str, float]]:
        """Seed 002's format: ``[{"step": 1, "entropy": 4.53}, …]``."""
        return [
            {"step": r["step"], "entropy": r["metrics"][ENTROPY_KEY]}
            for r in self.rows
            if r["metrics"].get(ENTROPY_KEY) is not None
        ]

    def series(self, key: str) -> list[float]:
        return [r["metrics"][key] for r in self.rows if r["metrics"].get(key) is not None]


def _jsonable(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def masked_stats(values: torch.Tensor, mask: torch.Tensor, prefix: str) -> dict[str, float]:
    """mean/std/max/min of ``values`` where ``mask`` is set (verl's ``critic/advantages/*`` shape)."""
    picked = values[mask.bool()].float()
    if picked.numel() == 0:
        return {f"{prefix}/mean": 0.0, f"{prefix}/std": 0.0, f"{prefix}/max": 0.0, f"{prefix}/min": 0.0}
    return {
        f"{prefix}/mean": float(picked.mean()),
        f"{prefix}/std": float(picked.std()) if picked.numel() > 1 else 0.0,
        f"{prefix}/max": float(picked.max()),
        f"{prefix}/min": float(picked.min()),
    }


def mean_of(dicts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average each key over a list of per-mini-batch metric dicts."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            sums[k] = sums.get(k, 0.0) + float(v)
            counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}
