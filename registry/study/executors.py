"""Run cell processes: ``local`` (``--jobs N`` subprocesses at a time on this machine) or ``ray``
(each cell a Ray task on an existing cluster, registry/study/ray_executor.py).

Each cell is the command ``python -m registry study _cell …`` (one process per cell, so a crash or
a kill is confined to it and marks only its own runs KILLED/FAILED). Executors report each finished
cell through ``on_done(job, returncode, output)``; what the cell did is read back from the store.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from registry.study.cells import Cell

# Environment variables a cell needs on any machine (Ray workers do not inherit the driver's).
PASS_ENV_PREFIXES = ("RLREG_", "MLFLOW_", "HF_", "TRANSFORMERS_", "OMP_", "MKL_")
PASS_ENV = ("TOKENIZERS_PARALLELISM", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")


@dataclass
class CellJob:
    cell: Cell
    args: list[str]
    """Arguments after ``python``: ``-m registry study _cell …``."""
    env: dict[str, str]
    """Variables the cell must see (tracking URI, RLREG_HOME, …), on top of the worker's own."""
    cwd: Path
    log: Path
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    extra_env_names: list[str] = field(default_factory=list)


DoneCallback = Callable[[CellJob, int, str], None]


def passthrough_env(names: list[str] | None = None) -> dict[str, str]:
    """The driver's variables a remote cell needs (plus ``names``, e.g. $MODEL_ROOT a spec reads)."""
    keep = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV_PREFIXES) or k in PASS_ENV}
    for name in names or []:
        if name in os.environ:
            keep[name] = os.environ[name]
    keep.pop("MLFLOW_RUN_ID", None)  # a cell is never the `mlflow run` run
    return keep


class LocalExecutor:
    """``jobs`` cell processes at a time. Ctrl-C / SIGTERM sends SIGTERM to every running cell (each
    marks its runs KILLED) and waits for them."""

    name = "local"

    def __init__(self, jobs: int = 1, poll_s: float = 0.2):
        self.jobs = max(1, jobs)
        self.poll_s = poll_s

    def run(self, jobs: list[CellJob], on_done: DoneCallback) -> None:
        queue = list(jobs)
        running: dict[subprocess.Popen, tuple[CellJob, object]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    job = queue.pop(0)
                    job.log.parent.mkdir(parents=True, exist_ok=True)
                    log = open(job.log, "w", encoding="utf-8")
                    env = {**os.environ, **job.env}
                    env.pop("MLFLOW_RUN_ID", None)
                    # own session: a Ctrl-C reaches the driver, which stops the cells in order
                    proc = subprocess.Popen([sys.executable, *job.args], cwd=job.cwd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                    running[proc] = (job, log)
                for proc in [p for p in running if p.poll() is not None]:
                    job, log = running.pop(proc)
                    log.close()
                    on_done(job, proc.returncode, job.log.read_text(encoding="utf-8", errors="replace"))
                if running:
                    time.sleep(self.poll_s)
        except BaseException:
            for proc in running:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, (_, log) in running.items():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log.close()
            raise


def make_executor(kind: str, jobs: int, address: str | None):
    if kind == "ray":
        from registry.study.ray_executor import RayExecutor

        return RayExecutor(address)
    return LocalExecutor(jobs)
