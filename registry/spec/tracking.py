"""``tracking``: what rlreg records about a run beyond the stages' own metrics."""

from __future__ import annotations

from pydantic import Field

from registry.spec.base import SpecModel


class TrackingSpec(SpecModel):
    system_metrics: bool = Field(
        True,
        description="Log MLflow system metrics (CPU, memory, disk, network; GPU when nvidia-ml-py is importable) "
        "on every stage run that executes (`rlreg run --no-system-metrics` turns them off for one run).",
    )
    system_metrics_interval_s: float = Field(
        10.0, gt=0, le=3600,
        description="Seconds between system-metric samples (one sample is also logged when the stage ends, so "
        "short stages get one; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it).",
    )
