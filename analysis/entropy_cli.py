"""``rlreg plot-entropy``: the user's ``plot_entropy.py``, ``visualize_entropy.py`` and
``auto_visualize_entropy.sh`` (seeds 001/002) as one command.

Two figures, chosen by what the sources hold (``analysis/entropy_sources.py``):

- round records → the ARPO figure (normalised entropy per tool-call round, mean ± std, one line per
  source): ``--entropy_file`` (paths or globs, e.g. ``'ckpt/entropy_step_*.json'``), ``--rollout_dir``,
  ``--run`` of an entropy stage, ``--simulate``;
- step histories → policy entropy over training steps, one line per run, ``--with_stats`` adds the
  mean/max/min panel: ``--log_file``, ``--entropy_file`` of ``entropy_history.json`` files, ``--run``
  of a training run, ``--experiment`` / ``--study`` (every run with an entropy history).
"""

from __future__ import annotations

from pathlib import Path

import click

from analysis import entropy_sources as S
from registry.errors import InputDataError, RlregError, UsageError


@click.command("plot-entropy")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False), metavar="[FILES]...")
@click.option("--entropy_file", "--entropy-file", "--entropy_files", "entropy_files", multiple=True,
              help="entropy_data.json / entropy_step_*.json / entropy_history.json; a path or a quoted glob, "
                   "repeatable. Files after the options (a shell-expanded glob) count too.")
@click.option("--log_file", "--log-file", "log_files", multiple=True, type=click.Path(dir_okay=False),
              help="verl console log (`step:N - actor/entropy:X - …`), a run's logs/train.log or rlreg's "
                   "metrics_history.jsonl (repeatable): policy entropy over steps.")
@click.option("--rollout_dir", "--rollout-dir", "rollout_dirs", multiple=True, type=click.Path(file_okay=False),
              help="verl trainer.rollout_data_dir (<step>.jsonl dumps, or entropy_step_*.json files).")
@click.option("--run", "runs", multiple=True, help="MLflow run id or spec name (repeatable): an entropy stage's "
              "records, else the run's entropy history.")
@click.option("--experiment", default=None, help="Every run of this MLflow experiment with an entropy history.")
@click.option("--study", default=None, help="Every cell of this study (tag rlreg.study) with an entropy history.")
@click.option("--labels", "labels", multiple=True,
              help="One label per source (comma-separated or repeated), in this order: entropy files "
                   "(options, then trailing files), log files, rollout dirs, runs, experiment/study runs.")
@click.option("--with_stats", "--with-stats", is_flag=True, help="Step histories: add a mean/max/min panel.")
@click.option("--metric", default=S.ENTROPY_KEY, show_default=True, help="Log / MLflow metric holding the entropy.")
@click.option("--simulate", "use_simulated", is_flag=True, help="Plot simulated demo data (labelled as such).")
@click.option("--num_rounds", "--num-rounds", default=5, show_default=True, help="Simulated tool rounds.")
@click.option("--num_samples", "--num-samples", default=100, show_default=True, help="Simulated samples.")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated data.")
@click.option("--by_step", "--by-step", is_flag=True,
              help="Round records per training step: one line per tool round over steps (entropy_step_*.json "
                   "files, or --run of a multi-turn builtin train run).")
@click.option("--after_tool_only", "--after-tool-only", is_flag=True,
              help="Drop round 0 (the seed's plot showed only rounds after a tool answer).")
@click.option("--title", default=None, help="Figure title.")
@click.option("-o", "--output", default="entropy_increase.png", show_default=True, type=click.Path(dir_okay=False),
              help="Image file to write (.png, .pdf, .svg).")
@click.option("--tracking-uri", default=None, help="MLflow store (default: MLFLOW_TRACKING_URI).")
def plot_entropy(more_files, entropy_files, log_files, rollout_dirs, runs, experiment, study, labels, with_stats,
                 metric, use_simulated, num_rounds, num_samples, seed, by_step, after_tool_only, title, output,
                 tracking_uri):
    """Plot entropy per tool-call round (ARPO) or policy entropy over training steps, for one or many sources."""
    from analysis import tool_entropy as T

    files = [*entropy_files, *more_files]
    given = [bool(files), bool(log_files), bool(rollout_dirs), bool(runs), bool(experiment or study)]
    if use_simulated and any(given) or not (use_simulated or any(given)):
        raise click.UsageError("give exactly one source: --simulate, or any of --entropy_file, --log_file, "
                               "--rollout_dir, --run, --experiment/--study")
    try:
        if use_simulated:
            sources = [S.Source(T.SIMULATED_LABEL, records=T.simulate(num_rounds, num_samples, seed), origin="simulated")]
        else:
            sources = _collect(files, log_files, rollout_dirs, runs, experiment, study, metric, tracking_uri, by_step)
        _apply_labels(sources, labels)
        if by_step:
            sources = _by_step(sources, after_tool_only)
        kinds = {s.kind for s in sources}
        if len(kinds) > 1:
            listing = "; ".join(f"{s.label}: {s.kind}" for s in sources)
            raise UsageError(f"cannot draw tool-round profiles and step histories in one figure ({listing}); "
                             "plot them separately")
        if kinds == {"rounds"}:
            if with_stats:
                raise UsageError("--with_stats applies to step histories (policy entropy over training), "
                                 "not to tool-round profiles")
            summary = _plot_rounds(sources, after_tool_only, title, output)
        else:
            summary = _plot_steps(sources, with_stats, metric, title, output)
    except RlregError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"wrote {output} ({summary}){' [SIMULATED]' if use_simulated else ''}")


def _by_step(sources: list[S.Source], after_tool_only: bool) -> list[S.Source]:
    if any(s.kind != "rounds" for s in sources):
        raise UsageError("--by_step needs round records (entropy_step_*.json files or a multi-turn train run), "
                         "not step histories")
    out = [h for s in sources for h in S.rounds_by_step(s)]
    return [h for h in out if not (after_tool_only and h.label.endswith(" round 0"))]


def _collect(files, log_files, rollout_dirs, runs, experiment, study, metric, tracking_uri,
             by_step=False) -> list[S.Source]:
    sources: list[S.Source] = []
    if files:
        sources += S.file_sources(files)
    for path in log_files:
        sources.append(S.Source(_log_label(Path(path)), history=S.history_from_log(path, metric), origin=path))
    for directory in rollout_dirs:
        sources.append(S.rollout_source(directory))
    if runs or experiment or study:
        sources += _run_sources(runs, experiment, study, metric, tracking_uri, by_step)
    if not sources:
        raise InputDataError("no entropy data found in the sources given")
    return sources


def _run_sources(runs, experiment, study, metric, tracking_uri, by_step=False) -> list[S.Source]:
    from analysis import runs as R
    from analysis import tool_entropy as T

    client = R.get_client(tracking_uri)
    out: list[S.Source] = []
    for ref in runs:
        if by_step:  # a multi-turn train run's entropy_step_N.json artifacts
            run_id = R.resolve(client, ref).run_id if not R.RUN_ID_RE.match(ref) else ref
            records = S.run_step_records(client, run_id)
            if not records:
                raise UsageError(f"run {run_id} ({ref}) has no {S.STEPS_ARTIFACT}/entropy_step_*.json artifacts "
                                 "(--by_step reads a builtin train run with train.rollout.multi_turn.enable)")
            out.append(S.Source(ref, records=records, origin=run_id))
            continue
        try:
            out.append(S.Source(ref, records=T.load_entropy_run(ref, tracking_uri), origin=ref))
            continue
        except UsageError as exc:
            if "no entropy_data.json" not in exc.message:
                raise
        run_id = R.resolve(client, ref).run_id if not R.RUN_ID_RE.match(ref) else ref
        history = S.run_history(client, run_id, metric)
        if not history:
            raise UsageError(f"run {run_id} ({ref}) has no entropy data: no entropy stage records, no "
                             f"{S.HISTORY_ARTIFACT} and no `{metric}` history")
        out.append(S.Source(ref, history=history, origin=run_id))
    if experiment or study:
        found = S.find_runs(client, experiment, study)
        where = f"study '{study}'" if study else f"experiment '{experiment}'"
        for label, run_id in found:
            history = S.run_history(client, run_id, metric)
            if history:
                out.append(S.Source(label, history=history, origin=run_id))
        if not any(s.origin in dict(found).values() for s in out):
            raise UsageError(f"{where}: none of its {len(found)} parent runs has an entropy history "
                             f"({S.HISTORY_ARTIFACT} or `{metric}`)")
    return out


def _log_label(path: Path) -> str:
    # logs/train.log of a stage output → the directory above `logs`
    if path.stem in ("train", "metrics_history") and path.parent.name == "logs":
        return path.parent.parent.name or path.stem
    return path.stem if path.stem not in ("train", "metrics_history") else (path.parent.name or path.stem)


def _apply_labels(sources: list[S.Source], labels: tuple[str, ...]) -> None:
    names = [part.strip() for item in labels for part in item.split(",") if part.strip()]
    if not names:
        seen: dict[str, int] = {}
        for s in sources:  # same default label twice (two runs' train.log): number them
            seen[s.label] = seen.get(s.label, 0) + 1
            if seen[s.label] > 1:
                s.label = f"{s.label} ({seen[s.label]})"
        return
    if len(names) != len(sources):
        listing = ", ".join(f"{s.label} [{s.origin}]" for s in sources)
        raise UsageError(f"--labels: {len(names)} labels for {len(sources)} sources ({listing}); give one per source")
    for s, name in zip(sources, names):
        s.label, s.label_given = name, True


def _plot_rounds(sources, after_tool_only, title, output) -> str:
    from analysis import tool_entropy as T

    records: list[dict] = []
    for s in sources:
        recs = s.records or []
        if len(sources) == 1 and not s.label_given and any(r.get("model") for r in recs):
            records += recs  # the records' own model labels
            continue
        models = {r.get("model", "") for r in recs}
        if len(models) > 1:  # a multi-model entropy stage: keep its models apart under the source
            records += [{**r, "model": f"{s.label}: {r.get('model', '')}"} for r in recs]
        else:
            records += [{**r, "model": s.label} for r in recs]
    if after_tool_only:
        records = [r for r in records if int(r["round"]) > 0]
    if not records:
        raise InputDataError("no entropy records to plot (the source is empty)")
    T.save_figure(T.entropy_figure(records, title), output)
    per = ", ".join(f"{label or 'model'}: {len(stats)} rounds" for label, stats in T.profiles(records).items())
    return f"{len(records)} records; {per}"


def _plot_steps(sources, with_stats, metric, title, output) -> str:
    from analysis import plots
    from analysis.tool_entropy import save_figure

    series = {s.label: ([r["step"] for r in s.history], [r["entropy"] for r in s.history]) for s in sources}
    if not any(steps for steps, _ in series.values()):
        raise InputDataError("no entropy values to plot (the histories are empty)")
    heading = title or f"Policy entropy ({metric}) over training steps"
    fig = plots.with_stats(series, metric, heading) if with_stats else plots.overlay_steps(series, metric, heading)
    save_figure(fig, output)
    per = ", ".join(f"{label}: {len(steps)} steps" for label, (steps, _) in series.items())
    return f"{len(series)} histories; {per}"
