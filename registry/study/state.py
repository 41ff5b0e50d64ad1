"""What the store says about a study's cells: the newest parent run per cell, and whether it is
done (FINISHED with the spec hash the cell resolves to now), running, or still to run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from registry.hashing import spec_hash
from registry.study.cells import TAG_CELL, TAG_STUDY, Cell, load_cell
from registry.study.load import LoadedStudy


@dataclass
class CellState:
    cell: Cell
    spec_hash: str
    state: str
    """``done`` | ``running`` | ``missing`` | ``failed`` | ``killed`` | ``stale`` (spec changed since)."""
    run: Any = None
    """The run that decided the state (newest matching run), or None."""
    runs: list[Any] = field(default_factory=list)

    @property
    def todo(self) -> bool:
        return self.state not in ("done", "running")

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None

    @property
    def status(self) -> str:
        return self.run.info.status if self.run is not None else "missing"


def cell_specs(loaded: LoadedStudy, cells: list[Cell]) -> dict[str, Any]:
    """Cell id → its resolved LoadedSpec (raises the first spec/override error, naming the cell)."""
    return {c.id: load_cell(c, loaded) for c in cells}


def study_runs(client: Any, study: str) -> list[Any]:
    """Every parent run tagged with this study, newest first."""
    from registry.store import all_experiment_ids

    exp_ids = all_experiment_ids(client)
    if not exp_ids:
        return []
    name = study.replace("'", "\\'")
    return list(client.search_runs(
        exp_ids, filter_string=f"tags.`{TAG_STUDY}` = '{name}' and tags.`rlreg.role` = 'parent'",
        max_results=50000, order_by=["attributes.start_time DESC"],
    ))


def cell_states(client: Any, loaded: LoadedStudy, cells: list[Cell], specs: dict[str, Any]) -> list[CellState]:
    from registry.pipeline import spec_dump

    by_cell: dict[str, list[Any]] = {}
    for run in (study_runs(client, loaded.name) if client is not None else []):
        by_cell.setdefault(run.data.tags.get(TAG_CELL, ""), []).append(run)
    out = []
    for cell in cells:
        want = spec_hash(spec_dump(specs[cell.id].spec))
        runs = by_cell.get(cell.id, [])
        current = [r for r in runs if r.data.tags.get("rlreg.spec_hash") == want]
        finished = [r for r in current if r.info.status == "FINISHED"]
        if finished:
            state, run = "done", finished[0]
        elif current:
            run = current[0]
            state = {"RUNNING": "running", "FAILED": "failed", "KILLED": "killed"}.get(run.info.status, "failed")
        elif runs:
            state, run = "stale", runs[0]
        else:
            state, run = "missing", None
        out.append(CellState(cell, want, state, run, runs))
    return out


def metric_value(metrics: dict[str, float], name: str) -> float | None:
    """``eval/accuracy`` reads ``eval/accuracy`` or, for repeated evals, ``eval/accuracy_mean``."""
    if name in metrics:
        return metrics[name]
    return metrics.get(f"{name}_mean")
