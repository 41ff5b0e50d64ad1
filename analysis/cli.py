"""``rlreg compare`` and ``rlreg report`` (wired into ``rlreg`` as ``analysis.cli:compare`` and
``analysis.cli:report``; they also run standalone).

Runs are spec names (their latest FINISHED parent run, in any experiment) or MLflow run ids;
``--run SPEC=RUN_ID`` pins the run used for a spec name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from registry.errors import RlregError, UsageError

FORMAT_CHOICE = click.Choice(["text", "md", "json", "csv"])


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``Error: <message>`` and the error's exit code (2 for usage), never a traceback; the same
    shape as the rlreg group, so the commands behave alike standalone."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RlregError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            click.get_current_context().exit(exc.exit_code)

    return wrapper


def _pins(values: tuple[str, ...]) -> dict[str, str]:
    pins = {}
    for value in values:
        name, sep, run_id = value.partition("=")
        if not sep or not name or not run_id:
            raise UsageError(f"--run '{value}': expected SPEC=RUN_ID (e.g. --run demo-egpo=<32-hex run id>)")
        pins[name] = run_id
    return pins


def _metrics(values: tuple[str, ...]) -> list[str] | None:
    out = [m.strip() for v in values for m in v.split(",") if m.strip()]
    return out or None


def _client(tracking_uri: str | None) -> Any:
    from analysis.runs import get_client

    return get_client(tracking_uri)


_run_option = click.option(
    "--run", "pins", multiple=True, metavar="SPEC=RUN_ID",
    help="Use this run for SPEC instead of its latest finished one (repeatable).")
_metrics_option = click.option(
    "--metrics", "metrics", multiple=True, metavar="KEY[,KEY…]",
    help="Metrics to compare (default: every headline metric on the parent runs).")
_uri_option = click.option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None,
    help="MLflow store to read (default: $MLFLOW_TRACKING_URI).")


_study_option = click.option("--study", default=None, metavar="NAME",
                             help="Compare a study's arms (its cell runs grouped by arm, one run per seed).")
_where_option = click.option(
    "--where", default=None, metavar="FILTER",
    help="Add parent runs matching an MLflow filter, grouped by rlreg.arm (else spec), e.g. "
         "\"tags.`rlreg.arm` = 'egpo'\"; with --study it narrows the study's cells.")
_primary_option = click.option(
    "--primary", default=None, metavar="METRIC",
    help="The metric that gets the verdict (default: the study's primary_metric, else eval/accuracy_mean); "
         "every other metric is secondary with Holm-adjusted p-values.")
_unpaired_option = click.option(
    "--unpaired-seeds", "unpaired_seeds", is_flag=True, default=False,
    help="Compare seeded arms by Welch over each arm's seeds even where their seeds match (default: paired "
         "by seed on the seeds both arms ran, the Welch result shown alongside; docs/statistics.md).")


@click.command("compare")
@click.argument("runs", nargs=-1)
@_study_option
@_where_option
@_primary_option
@_unpaired_option
@_metrics_option
@_run_option
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="text", show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@_uri_option
@_handle_errors
def compare(runs: tuple[str, ...], study: str | None, where: str | None, primary: str | None, unpaired_seeds: bool,
            metrics: tuple[str, ...], pins: tuple[str, ...], fmt: str, output: Path | None,
            tracking_uri: str | None) -> None:
    """Compare arms metric by metric: RUNS are spec names or run ids; --study / --where add arms.

    Each arm after the first gets its difference from the first with a 95% interval that names
    its unit of replication (training seeds, paired by seed where the seeds match > prompts, paired >
    eval repeats) and what it covers;
    the primary metric gets the verdict, the others Holm-adjusted p-values.
    """
    from analysis import render
    from analysis.compare import build

    comp = build(_client(tracking_uri), runs, _metrics(metrics), _pins(pins), study=study, where=where,
                 primary=primary, pair_seeds=not unpaired_seeds)
    text = render.FORMATS[fmt](comp)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("report")
@click.argument("runs", nargs=-1)
@_study_option
@_where_option
@_primary_option
@_unpaired_option
@_metrics_option
@_run_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="Report file: .html (self-contained) or .md (+ <stem>_files/ with PNGs).")
@click.option("--log/--no-log", "log", default=True, show_default=True,
              help="Also record the report in MLflow (a run tagged rlreg.role=report).")
@_uri_option
@_handle_errors
def report(runs: tuple[str, ...], study: str | None, where: str | None, primary: str | None, unpaired_seeds: bool,
           metrics: tuple[str, ...], pins: tuple[str, ...], output: Path, log: bool,
           tracking_uri: str | None) -> None:
    """Write a report over RUNS (spec names or run ids) and/or a study's arms: the verdict, spec
    differences, metrics with intervals, curves (mean ± band across seeds), per-prompt wins/losses."""
    from analysis.report import build_report, log_report, write_report

    client = _client(tracking_uri)
    rep = build_report(client, runs, _metrics(metrics), _pins(pins), study=study, where=where,
                       primary=primary, pair_seeds=not unpaired_seeds)
    written = write_report(rep, output)
    click.echo(f"wrote {written[0]} ({len(rep.figures)} figures, {len(rep.spec_rows)} spec differences)")
    if log:
        run_id = log_report(client, rep)
        click.echo(f"logged to MLflow: run {run_id} (experiment {rep.comparison.runs[0].experiment_id})")


@click.command("plot")
@click.argument("runs", nargs=-1)
@_study_option
@_where_option
@click.option("--metric", "metric_keys", multiple=True, required=True, metavar="KEY",
              help="Per-step metric to draw (repeatable), e.g. actor/entropy, critic/score/mean.")
@_run_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("plot.png"),
              show_default=True, help="PNG file (one panel per metric).")
@_uri_option
@_handle_errors
def plot(runs: tuple[str, ...], study: str | None, where: str | None, metric_keys: tuple[str, ...],
         pins: tuple[str, ...], output: Path, tracking_uri: str | None) -> None:
    """Draw per-step curves of RUNS and/or a study's arms: mean ± 1 sd band across seeds per arm."""
    from analysis.curves import plot_curves

    written, missing = plot_curves(_client(tracking_uri), runs, list(metric_keys), _pins(pins), study=study,
                                   where=where, output=output)
    click.echo(f"wrote {written}")
    for line in missing:
        click.echo(f"note: {line}", err=True)
