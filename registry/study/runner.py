"""``rlreg study run``: expand the cells, skip the FINISHED ones, run the rest on an executor, and
keep the study's own run (tag ``rlreg.role=study``: the study file and the cell list) up to date.

The study run is NOT the MLflow parent of its cells (cells stay ordinary parent runs, so compare
pages and ``rlreg compare`` see no extra level); it lives in the study's experiment and is found
by its tags. One study run per study name, reused by every ``study run`` of it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from registry import cache
from registry.hashing import spec_hash
from registry.loader import project_root, specs_dir
from registry.store import _sqlite_file, ensure_store, experiment_id, stage_store_root, tracking_uri
from registry.study.cells import TAG_STUDY, TAG_STUDY_RUN, Cell, expand
from registry.study.executors import CellJob, make_executor
from registry.study.load import LoadedStudy
from registry.study.state import CellState, cell_specs, cell_states, metric_value

ROLE_STUDY = "study"


@dataclass
class StudyOutcome:
    study: str
    study_run_id: str | None
    cells: list[CellState] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [s.cell.id for s in self.cells if s.state != "done"]


def absolute_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` means the driver's cwd; a cell process elsewhere needs the full path."""
    db = _sqlite_file(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


def cell_env(extra_names: list[str]) -> dict[str, str]:
    from registry.study.executors import passthrough_env

    root = project_root()
    return {**passthrough_env(extra_names), "MLFLOW_TRACKING_URI": absolute_uri(tracking_uri()),
            "RLREG_HOME": str(stage_store_root(root)), "RLREG_PROJECT_ROOT": str(root),
            "RLREG_SPECS_DIR": str(specs_dir())}


def _env_names(raw: Any) -> list[str]:
    """``$VAR`` / ``${VAR}`` a spec reads (e.g. MODEL_ROOT): passed on to remote cells."""
    return sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", json.dumps(raw, default=str))))


def resources(spec: Any) -> tuple[float, float]:
    """(CPUs, GPUs) one cell needs: verl cells hold nnodes × n_gpus_per_node GPUs."""
    if spec.train is not None and spec.train.backend == "verl":
        v = spec.train.verl
        if v.nnodes > 1:
            from registry.errors import UsageError

            raise UsageError(
                f"spec '{spec.name}': train.verl.nnodes={v.nnodes}: a Ray task runs on one node; run multi-node "
                "verl cells with --executor local (verl then uses train.verl.ray_address)"
            )
        return 1.0, float(v.nnodes * v.n_gpus_per_node)
    threads = spec.model.cpu_threads if spec.model is not None else None
    return float(threads or 1), 0.0


def log_path(study: str, cell: Cell) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", cell.id.replace("/", "__"))
    return stage_store_root(project_root()) / "studies" / study / "logs" / f"{safe}.log"


def run_study(
    loaded: LoadedStudy, *, jobs: int = 1, executor: str = "local", address: str | None = None,
    only: list[str] | None = None, echo: Callable[[str], None] = print, progress: bool = False,
) -> StudyOutcome:
    cells = expand(loaded, only)
    specs = cell_specs(loaded, cells)
    ex = make_executor(executor, jobs, address)  # a missing `ray` is reported before anything starts
    client = ensure_store()  # created/migrated once, before any cell process opens it
    from registry.recovery import reap_dead_runs

    for run_id in reap_dead_runs(client):
        echo(f"Marked run {run_id} KILLED: its process is gone (crashed or killed earlier).")
    states = cell_states(client, loaded, cells, specs)
    todo = [s for s in states if s.todo]
    outcome = StudyOutcome(loaded.name, None, states)
    for s in states:
        if not s.todo:
            outcome.skipped.append(s.cell.id)
            echo(f"  {s.cell.id}: {'FINISHED' if s.state == 'done' else 'RUNNING'} run {s.run_id}, skipped")
    study_run = _start_study_run(client, loaded, cells, specs)
    outcome.study_run_id = study_run
    echo(f"Study {loaded.name}: {len(cells)} cells, {len(todo)} to run on '{ex.name}'"
         + (f" ({jobs} at a time)" if ex.name == "local" else "") + f"; study run {study_run}")
    job_list = []
    for s in todo:
        spec = specs[s.cell.id]
        cpus, gpus = resources(spec.spec)
        args = ["-m", "registry", "study", "_cell", str(loaded.path), "--cell", s.cell.id,
                "--study-hash", loaded.hash, "--study-run", study_run]
        job_list.append(CellJob(s.cell, args, cell_env(_env_names(spec.raw)), project_root(),
                                log_path(loaded.name, s.cell), cpus, gpus))
    bar = _progress(len(job_list)) if progress and job_list else None
    say = bar.write if bar is not None else echo
    primary = loaded.study.primary_metric

    def on_done(job: CellJob, rc: int, output: str) -> None:
        outcome.ran.append(job.cell.id)
        fresh = cell_states(client, loaded, [job.cell], specs)[0]
        value = metric_value(fresh.run.data.metrics, primary) if fresh.run is not None else None
        shown = f", {primary} = {value:.4g}" if value is not None else ""
        if fresh.state == "done" and rc == 0:
            say(f"  {job.cell.id}: FINISHED run {fresh.run_id}{shown}")
        else:
            last = [ln for ln in output.splitlines() if ln.startswith("Error:")][-1:] or output.splitlines()[-1:]
            say(f"  {job.cell.id}: {fresh.status} (exit {rc}) {last[0] if last else ''} — log: {job.log}")
        if bar is not None:
            bar.update(1)

    status = "FAILED"
    import signal

    from registry.pipeline import Terminated, _main_thread, _raise_terminated

    # SIGTERM becomes an exception, so the executor stops its cells (each marks its runs KILLED)
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if _main_thread() else None
    try:
        ex.run(job_list, on_done)
        outcome.cells = cell_states(client, loaded, cells, specs)
        status = "FINISHED" if not outcome.failed else "FAILED"
    except (KeyboardInterrupt, Terminated):
        status = "KILLED"
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
        _finish_study_run(client, study_run, loaded, outcome, cells, specs, status)
    return outcome


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="cells", unit="cell", file=sys.stderr, dynamic_ncols=True)


def find_study_run(client: Any, name: str) -> Any | None:
    from registry.store import all_experiment_ids

    exp_ids = all_experiment_ids(client)
    if not exp_ids:
        return None
    quoted = name.replace("'", "\\'")
    runs = client.search_runs(exp_ids, filter_string=f"tags.`{TAG_STUDY}` = '{quoted}' and tags.`rlreg.role` = 'study'",
                              max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def _cells_json(cells: list[Cell], specs: dict[str, Any], states: list[CellState] | None = None) -> list[dict]:
    by_id = {s.cell.id: s for s in states or []}
    from registry.pipeline import spec_dump

    rows = []
    for c in cells:
        st = by_id.get(c.id)
        rows.append({"cell": c.id, "arm": c.arm, "spec": c.spec, "seed": c.seed, "grid": dict(c.grid),
                     "overrides": c.overrides, "spec_hash": spec_hash(spec_dump(specs[c.id].spec)),
                     "run_id": st.run_id if st else None, "status": st.status if st else None})
    return rows


def _start_study_run(client: Any, loaded: LoadedStudy, cells: list[Cell], specs: dict[str, Any]) -> str:
    from registry.tracking import Tracker

    existing = find_study_run(client, loaded.name)
    if existing is not None:
        run_id = existing.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        first = specs[cells[0].id].spec if cells else None
        exp = loaded.study.experiment or (first.experiment if first is not None else "rl-registry")
        run_id = client.create_run(experiment_id(client, exp), tags={"mlflow.runName": f"study {loaded.name}"}).info.run_id
    tracker = Tracker(client, run_id)
    tracker.set_tags({
        "rlreg.role": ROLE_STUDY, TAG_STUDY: loaded.name, "rlreg.study_hash": loaded.hash,
        "rlreg.study_file": str(loaded.path), "rlreg.primary_metric": loaded.study.primary_metric,
        "rlreg.pid": str(os.getpid()), "rlreg.host": cache.host(),
        "mlflow.note.content": loaded.study.description or f"study {loaded.name}",
    })
    tracker.log_text(loaded.path.read_text(encoding="utf-8"), "study.yaml")
    tracker.log_dict(_cells_json(cells, specs), "cells.json")
    return run_id


def _finish_study_run(client, run_id, loaded, outcome, cells, specs, status) -> None:
    from registry.tracking import Tracker

    try:
        states = outcome.cells
        tracker = Tracker(client, run_id)
        tracker.log_dict(_cells_json(cells, specs, states), "cells.json")
        done = sum(s.state == "done" for s in states)
        tracker.log_metrics({"study/cells": len(states), "study/cells_finished": done,
                             "study/cells_missing": len(states) - done})
        tracker.flush()
        client.set_terminated(run_id, status)
    except Exception:  # the store may be why we are here; the cells' own runs are what matter
        pass


def run_one_cell(study_file: str, cell_id: str, study_hash: str | None, study_run: str | None,
                 echo: Callable[[str], None] = print) -> Any:
    """The cell process (``python -m registry study _cell``): one Pipeline run with the cell tags."""
    from registry.errors import UsageError
    from registry.pipeline import Pipeline
    from registry.study.cells import load_cell
    from registry.study.load import load_study

    loaded = load_study(study_file)
    if study_hash and loaded.hash != study_hash:
        raise UsageError(f"{study_file} changed since `rlreg study run` started; run it again")
    cell = next((c for c in expand(loaded) if c.id == cell_id), None)
    if cell is None:
        raise UsageError(f"study '{loaded.name}' has no cell '{cell_id}'")
    spec = load_cell(cell, loaded)
    shared = load_cell(cell, loaded, shared=True) if loaded.study.shared_stages else None
    tags = cell.tags(loaded.study.primary_metric)
    tags["mlflow.runName"] = f"{spec.name} {cell.id}"
    if study_run:
        tags[TAG_STUDY_RUN] = study_run
    stage_specs = {s: shared.spec for s in loaded.study.shared_stages} if shared is not None else {}
    return Pipeline(spec, tags=tags, stage_specs=stage_specs, echo=echo).run()
