"""``rlreg study run|status``: run a study's cells (locally or on Ray) and show where they stand."""

from __future__ import annotations

import json
import sys

import click


@click.group("study")
def study() -> None:
    """Run a study (arms × grid × seeds of specs) and show its cells. docs/studies.md."""


@study.command("run")
@click.argument("name")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Cells at a time (local executor).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: subprocesses on this machine; ray: Ray tasks on an existing cluster.")
@click.option("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else auto).")
@click.option("--only", "only", multiple=True, metavar="ARM", help="Run only these arms (repeatable, or comma-separated).")
@click.option("--dry-run", is_flag=True, help="List every cell and, per stage, whether it would be a cache hit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stdout carries only JSON).")
def run_cmd(name: str, jobs: int, executor: str, address: str | None, only: tuple[str, ...], dry_run: bool,
            as_json: bool) -> None:
    """Run every missing or failed cell of study NAME; FINISHED cells are skipped (a rerun after a
    kill runs only what is missing). Exit 1 if any cell did not finish."""
    from registry.study.load import load_study

    loaded = load_study(name)
    arms = [a.strip() for v in only for a in v.split(",") if a.strip()] or None
    echo = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    s = loaded.study
    grid = " × ".join(f"{len(v)} {k}" for k, v in s.grid.items())
    echo(f"Study {loaded.name}: {len(s.arms)} arms{' × ' + grid if grid else ''} × {len(s.seeds)} seeds "
         f"(primary metric {s.primary_metric}; shared stages: {', '.join(s.shared_stages) or 'none'})")
    if dry_run:
        from registry.study.dryrun import dry_run

        rows = dry_run(loaded, arms, echo)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        return
    import contextlib

    from registry.study.runner import run_study

    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    with quiet:
        outcome = run_study(loaded, jobs=jobs, executor=executor, address=address, only=arms, echo=echo,
                            progress=sys.stderr.isatty() and not as_json)
    done = sum(c.state == "done" for c in outcome.cells)
    echo(f"Done: {done}/{len(outcome.cells)} cells FINISHED ({len(outcome.ran)} ran, {len(outcome.skipped)} skipped); "
         f"study run {outcome.study_run_id}")
    if as_json:
        from registry.study.status import status_rows

        click.echo(json.dumps({"study": loaded.name, "study_run_id": outcome.study_run_id, "ran": outcome.ran,
                               "skipped": outcome.skipped, "cells": status_rows(loaded, outcome.cells)}, indent=2))
    if outcome.failed:
        echo(f"Not finished: {', '.join(outcome.failed)} (rerun `rlreg study run {name}` to retry them)")
        sys.exit(1)


@study.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(name: str, as_json: bool) -> None:
    """Cells of study NAME: arm, grid values, seed, run id, status, primary metric."""
    from registry.study.load import load_study
    from registry.study.status import show_status

    show_status(load_study(name), as_json)


@study.command("_cell", hidden=True)
@click.argument("study_file")
@click.option("--cell", "cell_id", required=True)
@click.option("--study-hash", default=None)
@click.option("--study-run", default=None)
def cell_cmd(study_file: str, cell_id: str, study_hash: str | None, study_run: str | None) -> None:
    """One cell (what executors run): a normal parent run with the cell tags."""
    from registry.study.runner import run_one_cell

    summary = run_one_cell(study_file, cell_id, study_hash, study_run, echo=click.echo)
    click.echo(f"Done: cell {cell_id}: parent run {summary.parent_run_id} {summary.status}")
