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


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@_metrics_option
@_run_option
@click.option("--format", "fmt", type=FORMAT_CHOICE, default="text", show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@_uri_option
@_handle_errors
def compare(runs: tuple[str, ...], metrics: tuple[str, ...], pins: tuple[str, ...], fmt: str,
            output: Path | None, tracking_uri: str | None) -> None:
    """Compare runs metric by metric: RUNS are spec names or run ids (two or more).

    Each cell is the logged value, or mean ± 95% CI over eval repeats; each run after the first
    gets its difference from the first with Welch's 95% interval and a verdict ("within noise"
    when the interval contains 0).
    """
    from analysis import render
    from analysis.compare import build

    comp = build(_client(tracking_uri), runs, _metrics(metrics), _pins(pins))
    text = render.FORMATS[fmt](comp)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("report")
@click.argument("a")
@click.argument("b")
@_metrics_option
@_run_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="Report file: .html (self-contained) or .md (+ <stem>_files/ with PNGs).")
@click.option("--log/--no-log", "log", default=True, show_default=True,
              help="Also record the report in MLflow (a run tagged rlreg.role=report).")
@_uri_option
@_handle_errors
def report(a: str, b: str, metrics: tuple[str, ...], pins: tuple[str, ...], output: Path, log: bool,
           tracking_uri: str | None) -> None:
    """Write a report comparing runs A and B: spec differences, metrics with confidence
    intervals and verdicts, and figures (reward, entropy, eval repeats, entropy after tool calls)."""
    from analysis.report import build_report, log_report, write_report

    client = _client(tracking_uri)
    rep = build_report(client, [a, b], _metrics(metrics), _pins(pins))
    written = write_report(rep, output)
    click.echo(f"wrote {written[0]} ({len(rep.figures)} figures, {len(rep.spec_changes)} spec differences)")
    if log:
        run_id = log_report(client, rep)
        click.echo(f"logged to MLflow: run {run_id} (experiment {rep.comparison.runs[0].experiment_id})")
