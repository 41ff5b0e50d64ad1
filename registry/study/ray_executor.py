"""The ``ray`` executor: each cell is a Ray task on an existing cluster (``--address``, else
``RAY_ADDRESS``, else ``auto``). The task runs the same cell process as the local executor, on
whichever node Ray places it, with the resources the cell's spec needs: ``model.cpu_threads`` CPUs
(default 1) for builtin cells; ``nnodes × n_gpus_per_node`` GPUs for verl cells (verl then starts
its own Ray instance inside the task, on the GPUs Ray gave it).

Workers must reach the tracking store (``MLFLOW_TRACKING_URI``: a server, or a sqlite file on a
shared filesystem) and share ``RLREG_HOME`` (stage outputs and cache locks), and have this project
at the same path. docs/studies.md.
"""

from __future__ import annotations

import os
from typing import Any

from registry.errors import MissingExtra, UsageError
from registry.study.executors import CellJob, DoneCallback


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("ray (the `ray` executor)", 'pip install -e ".[ray]"') from None
    return ray


def _make_task():
    """The remote function, built inside a function so Ray ships it by value: a worker needs only
    Python and ray to run it, not this package on its import path."""

    def run_cell(args: list[str], env: dict[str, str], cwd: str) -> tuple[int, str]:
        import os
        import signal
        import subprocess
        import sys

        full = {**os.environ, **env}
        for k in ("RAY_ADDRESS", "MLFLOW_RUN_ID"):
            full.pop(k, None)
        # verl inside the cell must start its own Ray on the GPUs this task holds, not join ours
        full["RAY_ADDRESS"] = "local"
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=full, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate()
        except BaseException:  # ray.cancel() raises KeyboardInterrupt here: stop the cell cleanly
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        return proc.returncode, out

    return run_cell


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or "auto"
        _import_ray()

    def run(self, jobs: list[CellJob], on_done: DoneCallback) -> None:
        ray = _import_ray()
        try:
            ray.init(address=self.address, logging_level="WARNING", log_to_driver=False,
                     include_dashboard=False, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(
                f"cannot reach a Ray cluster at '{self.address}' ({str(exc).splitlines()[0]}); start one with "
                "`ray start --head` or pass --address HOST:PORT"
            ) from None
        try:
            self._check_fits(ray, jobs)
            task = ray.remote(_make_task())
            pending = {}
            for job in jobs:
                opts = task.options(num_cpus=job.num_cpus, num_gpus=job.num_gpus, max_retries=0,
                                    name=f"rlreg-cell:{job.cell.id}")
                pending[opts.remote(job.args, job.env, str(job.cwd))] = job
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        job = pending.pop(ref)
                        try:
                            rc, out = ray.get(ref)
                        except Exception as exc:  # the task itself died (node lost, OOM kill)
                            rc, out = 1, f"Ray task failed: {type(exc).__name__}: {exc}\n"
                        job.log.parent.mkdir(parents=True, exist_ok=True)
                        job.log.write_text(out, encoding="utf-8")
                        on_done(job, rc, out)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)
                raise
        finally:
            ray.shutdown()

    @staticmethod
    def _check_fits(ray: Any, jobs: list[CellJob]) -> None:
        """A task no node can hold would wait forever: refuse it up front."""
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        most_gpus = max([n.get("Resources", {}).get("GPU", 0) for n in nodes] + [0])
        most_cpus = max([n.get("Resources", {}).get("CPU", 0) for n in nodes] + [0])
        for job in jobs:
            if job.num_gpus > most_gpus or job.num_cpus > most_cpus:
                raise UsageError(
                    f"cell {job.cell.id} needs {job.num_cpus:g} CPUs and {job.num_gpus:g} GPUs on one node; the "
                    f"largest node of this Ray cluster has {most_cpus:g} CPUs and {most_gpus:g} GPUs (lower "
                    "model.cpu_threads / train.verl.n_gpus_per_node, or add a bigger node)"
                )
