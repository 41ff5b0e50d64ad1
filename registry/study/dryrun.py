"""``rlreg study run --dry-run``: every cell, whether it would run, and per stage whether it is a
cache hit, runs, or runs once for several cells (a shared stage computed by an earlier cell)."""

from __future__ import annotations

from typing import Any, Callable

from registry.plan import open_store_if_present, plan
from registry.study.cells import expand, load_cell
from registry.study.load import LoadedStudy
from registry.study.state import cell_specs, cell_states


def dry_run(loaded: LoadedStudy, only: list[str] | None, echo: Callable[[str], None]) -> list[dict[str, Any]]:
    cells = expand(loaded, only)
    specs = cell_specs(loaded, cells)
    client = open_store_if_present()
    states = cell_states(client, loaded, cells, specs)
    pending: dict[str, str] = {}
    rows = []
    for st in states:
        cell = st.cell
        spec = specs[cell.id]
        row: dict[str, Any] = {"cell": cell.id, "arm": cell.arm, "spec": spec.name, "seed": cell.seed,
                               "grid": dict(cell.grid), "overrides": cell.overrides, "state": st.state,
                               "run_id": st.run_id, "stages": []}
        if not st.todo:
            echo(f"  {cell.id}  ({spec.name}): {st.status} run {st.run_id} → skipped")
            rows.append(row)
            continue
        why = {"missing": "no run yet", "stale": f"spec changed since run {st.run_id}"}.get(
            st.state, f"last run {st.run_id} {st.status}")
        echo(f"  {cell.id}  ({spec.name} {' '.join(cell.overrides)}): runs ({why})")
        shared = load_cell(cell, loaded, shared=True) if loaded.study.shared_stages else None
        stage_specs = {s: shared.spec for s in loaded.study.shared_stages} if shared is not None else {}
        for step in plan(spec, client=client, stage_specs=stage_specs, pending=pending, label=cell.id):
            echo(f"      {step.stage:<9} {step.mark()}")
            row["stages"].append(step.to_json())
        rows.append(row)
    return rows
