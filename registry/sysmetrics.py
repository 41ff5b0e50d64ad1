"""MLflow system metrics (``system/cpu_utilization_percentage``, memory, disk, network, GPU) on a
stage run, for exactly as long as the stage's code runs.

MLflow's ``SystemMetricsMonitor`` is attached to the child run id (rlreg drives runs through
``MlflowClient``, not ``mlflow.start_run``, so ``log_system_metrics=True`` does not apply). Its
thread publishes one aggregate per sampling interval and drops the samples of an unfinished
interval when stopped, so a stage shorter than the interval would get none: ``StageMonitor.stop``
logs one last sample. GPU metrics come from MLflow's NVML monitor, active when ``pynvml``
(package ``nvidia-ml-py``) is importable and a GPU is visible; they cover every GPU of this node,
so a verl train stage launched from here shows its GPUs in the train child.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

_log = logging.getLogger(__name__)


def _monitor_class() -> Any:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class StageMonitor(SystemMetricsMonitor):
        def stop(self) -> None:
            """Stop the thread, then log one final sample (the thread drops a partial interval)."""
            self._shutdown_event.set()
            if self._process is not None:
                self._process.join(timeout=30)
                self._process = None
            try:
                self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
                self.mlflow_logger.flush()
            except Exception as exc:  # the store may be gone; system metrics never fail a stage
                _log.debug("final system-metrics sample failed: %s", exc)

    return StageMonitor


@contextlib.contextmanager
def system_metrics(tracking_uri: str, run_id: str, enabled: bool = True, interval_s: float = 10.0) -> Iterator[Any]:
    """Sample system metrics onto ``run_id`` during the block; stopped on any exit (errors,
    Ctrl-C, SIGTERM turned into an exception)."""
    if not enabled:
        yield None
        return
    monitor = None
    try:
        with _quiet_mlflow_logger():
            monitor = _monitor_class()(run_id, sampling_interval=interval_s, tracking_uri=tracking_uri)
            monitor.start()
    except Exception as exc:  # never fail a stage over its system metrics
        _log.warning("system metrics unavailable: %s", exc)
        monitor = None
    try:
        yield monitor
    finally:
        if monitor is not None:
            with _quiet_mlflow_logger():
                monitor.stop()


@contextlib.contextmanager
def _quiet_mlflow_logger() -> Iterator[None]:
    """MLflow logs "Started monitoring…", "Skip logging GPU metrics…" at INFO for every stage."""
    logger = logging.getLogger("mlflow.system_metrics")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
