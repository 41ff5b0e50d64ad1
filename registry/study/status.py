"""``rlreg study status``: one row per cell from the store (arm, grid, seed, run, status, metric)."""

from __future__ import annotations

import json
from typing import Any

import click

from registry.study.cells import expand
from registry.study.load import LoadedStudy
from registry.study.state import CellState, cell_specs, cell_states, metric_value


def status_rows(loaded: LoadedStudy, states: list[CellState]) -> list[dict[str, Any]]:
    primary = loaded.study.primary_metric
    rows = []
    for s in states:
        metrics = dict(s.run.data.metrics) if s.run is not None else {}
        rows.append({"cell": s.cell.id, "arm": s.cell.arm, "grid": dict(s.cell.grid), "seed": s.cell.seed,
                     "run_id": s.run_id, "status": s.status, "state": s.state,
                     "primary_metric": primary, "value": metric_value(metrics, primary) if s.state == "done" else None})
    return rows


def show_status(loaded: LoadedStudy, as_json: bool) -> None:
    from registry.plan import open_store_if_present
    from registry.recovery import reap_dead_runs

    cells = expand(loaded)
    specs = cell_specs(loaded, cells)
    client = open_store_if_present()
    if client is not None:
        reap_dead_runs(client)
    rows = status_rows(loaded, cell_states(client, loaded, cells, specs))
    if as_json:
        click.echo(json.dumps({"study": loaded.name, "primary_metric": loaded.study.primary_metric, "cells": rows},
                              indent=2))
        return
    primary = loaded.study.primary_metric
    header = ["cell", "arm", "grid", "seed", "run", "status", primary]
    table = [[r["cell"], r["arm"], " ".join(f"{k}={v}" for k, v in r["grid"].items()) or "-", str(r["seed"]),
              (r["run_id"] or "-")[:12], r["status"] + (" (stale)" if r["state"] == "stale" else ""),
              "-" if r["value"] is None else f"{r['value']:.4g}"] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *table)]
    for line in [header, *table]:
        click.echo("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
    done = sum(r["state"] == "done" for r in rows)
    click.echo(f"{done}/{len(rows)} cells FINISHED")
