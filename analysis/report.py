"""A report over N runs or a study's arms: the verdict first (what the interval covers, the power),
what differs in the specs between arms (overrides included), the metric table, per-step curves as
mean ± band across seeds, per-prompt wins/losses, the entropy-after-tool-call overlay.

Output from jinja2 templates (``analysis/templates``): Markdown (figures as PNG files beside it,
in ``<stem>_files/``) or self-contained HTML (figures embedded as base64 PNGs). ``log_report``
records it in MLflow as its own run tagged ``rlreg.role=report`` in the first arm's experiment,
never on the parents: a parent is the record of one execution, reports are made again and again.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import plots, render
from analysis import runs as R
from analysis.compare import Comparison, base_key, build
from analysis.report_specs import SpecRow, spec_changes, spec_table
from registry.diff import Change
from registry.errors import UsageError

# The policy's own solve rate first: under dynamic sampling train/reward_mean and critic/score/mean
# are over the kept (mixed-reward) groups and sit near 0.5 whatever the policy learns.
REWARD_KEYS = ("rollout/reward_mean_generated", "train/reward_mean", "critic/score/mean")
ENTROPY_KEY = "actor/entropy"
LENGTH_KEY = "response_length/mean"
CURVE_PAGE_KEYS = ("actor/entropy", "critic/score/mean")
TEMPLATES = Path(__file__).parent / "templates"

__all__ = ["Report", "UsageError", "build_report", "log_report", "spec_changes", "to_html", "to_markdown",
           "write_report"]


@dataclass
class FigureEntry:
    name: str  # file name, e.g. "reward.png"
    title: str
    png: bytes


@dataclass
class Report:
    title: str
    comparison: Comparison
    spec_changes: list[Change]  # baseline arm → last arm (key-aware)
    spec_source: str  # "spec.yaml" or "params"
    spec_rows: list[SpecRow] = field(default_factory=list)  # every key that differs between any arms
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wins: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def build_report(client: Any, refs: Sequence[str], metrics: Sequence[str] | None = None,
                 pinned: dict[str, str] | None = None, *, study: str | None = None, where: str | None = None,
                 primary: str | None = None, pair_seeds: bool = True) -> Report:
    comp = build(client, refs, metrics, pinned, study=study, where=where, primary=primary, pair_seeds=pair_seeds)
    changes, source = spec_changes(client, comp.runs[0], comp.runs[-1])
    rows, _ = spec_table(client, comp.arms)
    title = (f"study {study}: " if study else "") + " vs ".join(comp.labels)
    report = Report(title, comp, changes, source, rows, notes=list(comp.notes))
    _add_figures(client, report)
    return report


def _histories(client: Any, comp: Comparison, keys: Sequence[str]) -> Any:
    trains = [R.data_run_id(k["train"]) for a in comp.arms for k in a.children if "train" in k]
    return R.metric_histories(client, trains, keys), trains


def _groups(comp: Comparison, hist: Any, key: str) -> dict[str, list[tuple[list, list]]]:
    out: dict[str, list[tuple[list, list]]] = {}
    for arm in comp.arms:
        for kids in arm.children:
            if "train" not in kids:
                continue
            rid = R.data_run_id(kids["train"])
            h = hist[(hist.run_id == rid) & (hist.key == key)].drop_duplicates("step", keep="last")
            if len(h):
                out.setdefault(arm.label, []).append((h["step"].tolist(), h["value"].tolist()))
    return out


def _add_figures(client: Any, report: Report) -> None:
    comp = report.comparison
    hist, _ = _histories(client, comp, [*REWARD_KEYS, ENTROPY_KEY, LENGTH_KEY])
    replicated = any(a.replicated for a in comp.arms)

    reward_key = next((k for k in REWARD_KEYS if _groups(comp, hist, k)), None)
    if reward_key:
        report.figures.append(FigureEntry("reward.png", f"Reward ({reward_key}) over steps",
                                          plots.to_png(plots.band_steps(_groups(comp, hist, reward_key), reward_key))))
    else:
        report.notes.append(f"no train reward history ({' / '.join(REWARD_KEYS)}) on the compared runs")
    entropy = _groups(comp, hist, ENTROPY_KEY)
    if entropy and replicated:
        report.figures.append(FigureEntry("entropy.png", f"Policy entropy ({ENTROPY_KEY}): mean ± 1 sd across seeds",
                                          plots.to_png(plots.band_steps(entropy, ENTROPY_KEY))))
    elif entropy:
        single = {label: runs[0] for label, runs in entropy.items()}
        report.figures.append(FigureEntry("entropy.png", f"Policy entropy ({ENTROPY_KEY}) over steps, with mean/max/min per run",
                                          plots.to_png(plots.with_stats(single, ENTROPY_KEY))))
    else:
        report.notes.append(f"no {ENTROPY_KEY} history on the compared runs")
    length = _groups(comp, hist, LENGTH_KEY)
    if length:
        report.figures.append(FigureEntry("response_length.png", f"Response length ({LENGTH_KEY}) over steps",
                                          plots.to_png(plots.band_steps(length, LENGTH_KEY))))
    _add_repeats(report)
    _add_wins(report)
    tool_fig = _tool_entropy_figure(client, comp)
    if tool_fig is not None:
        report.figures.append(FigureEntry("entropy_after_tool_call.png", "Entropy after tool calls", tool_fig))


def _add_repeats(report: Report) -> None:
    comp = report.comparison
    panels = {}
    for row in comp.rows:
        values = {label: c.repeats for label, c in zip(comp.labels, row.cells) if len(c.repeats) >= 2}
        if values:
            panels[base_key(row.metric)] = (values, row.percent)
    unit = "training seed" if any(a.replicated for a in comp.arms) else "eval repeat"
    if len(panels) == 1:
        (key, (values, percent)), = panels.items()
        report.figures.append(FigureEntry(key.replace("/", "_") + "_repeats.png", f"{key}: every {unit}",
                                          plots.to_png(plots.eval_repeats(values, key, percent))))
    elif panels:
        report.figures.append(FigureEntry("eval_repeats.png", f"Every {unit}: each arm's mean and 95% band",
                                          plots.to_png(plots.eval_repeats_panels(panels))))


def _add_wins(report: Report) -> None:
    """Per-prompt wins/losses of the primary metric's paired comparisons."""
    comp = report.comparison
    pairs = {}
    for row in comp.rows:
        if not row.primary:
            continue
        for d in row.diffs:
            if d is not None and d.paired is not None:
                pairs[f"{d.b} vs {d.a}"] = (d.paired.wins, d.paired.ties, d.paired.losses)
                report.wins.append({"a": d.a, "b": d.b, "wins": d.paired.wins, "ties": d.paired.ties,
                                    "losses": d.paired.losses, "n": d.paired.n, "metric": row.metric})
    if pairs:
        report.figures.append(FigureEntry("wins_losses.png", "Per-prompt wins / ties / losses (primary metric)",
                                          plots.to_png(plots.wins_losses(pairs))))


def _tool_entropy_figure(client: Any, comp: Comparison) -> bytes | None:
    """The entropy stage's figure, when runs have an ``entropy`` child with ``entropy_data.json``."""
    try:
        from analysis import tool_entropy
    except ImportError:
        return None
    records: list[dict] = []
    for arm in comp.arms:
        for i, kids in enumerate(arm.children):
            child = kids.get("entropy")
            if child is None:
                continue
            rid = R.data_run_id(child)
            if tool_entropy.ENTROPY_ARTIFACT not in {a.path for a in client.list_artifacts(rid)}:
                continue
            with tempfile.TemporaryDirectory(prefix="rlreg-report-") as tmp:
                local = R.download_artifact(client, rid, tool_entropy.ENTROPY_ARTIFACT, tmp)
                recs = tool_entropy.load_entropy_file(local)
            label = arm.label if len(arm.runs) == 1 else f"{arm.label} seed {arm.seeds[i]}"
            records += [{**r, "model": f"{label}: {r['model']}" if r.get("model") else label} for r in recs]
    return plots.to_png(tool_entropy.entropy_figure(records)) if records else None


# -- rendering ------------------------------------------------------------------------------------
def _env(html: bool) -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=html,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined)


def _context(report: Report) -> dict[str, Any]:
    comp = report.comparison
    diffs = []
    for row, d in render._diff_lines(comp):
        value, interval = render.diff_parts(d, row.percent)
        diffs.append({"metric": row.metric, "role": "primary" if row.primary else "secondary",
                      "pair": f"{d.b} {render.MINUS} {d.a}", "value": value, "interval": interval or "—",
                      "unit": d.unit or "—", "verdict": d.verdict, "covers": d.covers,
                      "beyond": d.verdict.startswith(("higher", "lower"))})
    return {
        "r": report, "comp": comp, "arms": render.arm_lines(comp),
        "verdict": render.verdict_lines(comp),
        "compare_url": R.compare_page(comp.all_runs),
        "metric_rows": [(row.metric, row.primary, [render.fmt_cell(c, row.percent) for c in row.cells])
                        for row in comp.rows],
        "curves_url": R.metric_page(comp.all_runs, CURVE_PAGE_KEYS),
        "diffs": diffs, "spec_rows": report.spec_rows,
    }


def to_markdown(report: Report, figure_dir: str = "") -> str:
    ctx = _context(report)
    ctx["figure_dir"] = figure_dir + "/" if figure_dir else ""
    ctx["esc"] = render._md_escape
    return _env(False).get_template("report.md.jinja").render(**ctx)


def to_html(report: Report) -> str:
    """One file: tables and base64-embedded PNG figures, no external resources."""
    ctx = _context(report)
    ctx["images"] = [(f, base64.b64encode(f.png).decode("ascii")) for f in report.figures]
    return _env(True).get_template("report.html.jinja").render(**ctx)


def write_report(report: Report, output: str | Path) -> list[Path]:
    """``.html`` → one self-contained file; ``.md`` → the file plus ``<stem>_files/*.png``."""
    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm", ".md"):
        raise UsageError(f"-o {output}: unknown report format (end the name in .md or .html)")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() in (".html", ".htm"):
        output.write_text(to_html(report), encoding="utf-8")
        return [output]
    fig_dir = output.parent / f"{output.stem}_files"
    written = [output]
    if report.figures:
        fig_dir.mkdir(exist_ok=True)
        for f in report.figures:
            (fig_dir / f.name).write_bytes(f.png)
            written.append(fig_dir / f.name)
    output.write_text(to_markdown(report, fig_dir.name), encoding="utf-8")
    return written


def log_report(client: Any, report: Report) -> str:
    """A new run tagged ``rlreg.role=report`` in the first arm's experiment, holding report.html,
    report.md + report_files/, and comparison.json; returns its run id."""
    comp = report.comparison
    tags = {
        "mlflow.runName": f"report: {report.title}"[:250],
        R.TAG_ROLE: "report",
        "rlreg.report.runs": ",".join(r.run_id for r in comp.all_runs)[:8000],
        "rlreg.report.specs": ",".join(comp.labels)[:8000],
        "mlflow.note.content": ("\n".join(render.verdict_lines(comp)) + "\n\n" + render.to_markdown(comp))[:8000],
    }
    if comp.study:
        tags["rlreg.report.study"] = comp.study  # not rlreg.study: a report is no cell of the study
    run_id = client.create_run(comp.runs[0].experiment_id, tags=tags).info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="rlreg-report-") as tmp:
            write_report(report, Path(tmp) / "report.html")
            write_report(report, Path(tmp) / "report.md")
            (Path(tmp) / "comparison.json").write_text(render.to_json(comp), encoding="utf-8")
            client.log_artifacts(run_id, tmp)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
