"""A report comparing runs: title, what differs in the specs (key-aware, changed keys only), the
metric comparison with Welch intervals, and figures overlaid run against run.

Output: Markdown (figures as PNG files beside it, in ``<stem>_files/``) or self-contained HTML
(figures embedded as base64 PNGs). ``log_report`` records it in MLflow as its own run tagged
``rlreg.role=report`` in the first run's experiment, never on the parents: a parent is the record
of one execution, and reports are made again and again (other pairs, newer code).
"""

from __future__ import annotations

import base64
import html
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import plots, render
from analysis import runs as R
from analysis.compare import Comparison, base_key, build
from registry.diff import Change, diff_specs
from registry.diff import fmt as fmt_spec_value
from registry.errors import UsageError

REWARD_KEYS = ("train/reward_mean", "critic/score/mean")
ENTROPY_KEY = "actor/entropy"


@dataclass
class FigureEntry:
    name: str  # file name, e.g. "reward.png"
    title: str
    png: bytes


@dataclass
class Report:
    title: str
    comparison: Comparison
    spec_changes: list[Change]
    spec_source: str  # "spec.yaml" or "params"
    figures: list[FigureEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def _spec_of(client: Any, record: R.RunRecord) -> tuple[dict, str]:
    try:
        return R.spec_from_run(record.run_id, client), "spec.yaml"
    except UsageError:
        return dict(record.params), "params"  # flattened already; diff_specs keys them the same way


def spec_changes(client: Any, a: R.RunRecord, b: R.RunRecord) -> tuple[list[Change], str]:
    (left, src_a), (right, src_b) = _spec_of(client, a), _spec_of(client, b)
    if src_a != src_b:  # compare like with like: both as logged params (strings)
        left, right, src_a = dict(a.params), dict(b.params), "params"
    return diff_specs(left, right), src_a


def build_report(client: Any, refs: Sequence[str], metrics: Sequence[str] | None = None,
                 pinned: dict[str, str] | None = None) -> Report:
    if len(refs) != 2:
        raise UsageError(f"a report compares exactly two runs, got {len(refs)} (use `rlreg compare` for more)")
    comp = build(client, refs, metrics, pinned)
    changes, source = spec_changes(client, comp.runs[0], comp.runs[-1])
    title = " vs ".join(comp.labels)
    report = Report(title, comp, changes, source)
    _add_figures(client, report)
    return report


def _add_figures(client: Any, report: Report) -> None:
    comp = report.comparison
    trains = {label: kids["train"] for label, kids in zip(comp.labels, comp.children) if "train" in kids}
    hist = R.metric_histories(client, [R.data_run_id(t) for t in trains.values()], [*REWARD_KEYS, ENTROPY_KEY])

    def series(key: str) -> dict[str, tuple[list[float], list[float]]]:
        out = {}
        for label, child in trains.items():
            h = hist[(hist.run_id == R.data_run_id(child)) & (hist.key == key)].drop_duplicates("step", keep="last")
            if len(h):
                out[label] = (h["step"].tolist(), h["value"].tolist())
        return out

    reward_key = next((k for k in REWARD_KEYS if series(k)), None)
    if reward_key:
        report.figures.append(FigureEntry("reward.png", f"Reward ({reward_key}) over steps",
                                          plots.to_png(plots.overlay_steps(series(reward_key), reward_key))))
    else:
        report.notes.append(f"no train reward history ({' / '.join(REWARD_KEYS)}) on the compared runs")
    entropy = series(ENTROPY_KEY)
    if entropy:
        report.figures.append(FigureEntry("entropy.png", f"Policy entropy ({ENTROPY_KEY}) over steps, with mean/max/min per run",
                                          plots.to_png(plots.with_stats(entropy, ENTROPY_KEY))))
    else:
        report.notes.append(f"no {ENTROPY_KEY} history on the compared runs")
    panels = {}
    for row in comp.rows:
        repeats = {label: c.repeats for label, c in zip(comp.labels, row.cells) if len(c.repeats) >= 2}
        if repeats:
            panels[base_key(row.metric)] = (repeats, row.percent)
    if len(panels) == 1:
        (key, (repeats, percent)), = panels.items()
        report.figures.append(FigureEntry(key.replace("/", "_") + "_repeats.png", f"{key}: every eval repeat",
                                          plots.to_png(plots.eval_repeats(repeats, key, percent))))
    elif panels:
        report.figures.append(FigureEntry("eval_repeats.png", "Every eval repeat: each run's mean and 95% band",
                                          plots.to_png(plots.eval_repeats_panels(panels))))
    tool_fig = _tool_entropy_figure(client, comp)
    if tool_fig is not None:
        report.figures.append(FigureEntry("entropy_after_tool_call.png", "Entropy after tool calls", tool_fig))


def _tool_entropy_figure(client: Any, comp: Comparison) -> bytes | None:
    """The entropy stage's figure, when runs have an ``entropy`` child with ``entropy_data.json``."""
    try:
        from analysis import tool_entropy
    except ImportError:
        return None
    records: list[dict] = []
    for label, kids in zip(comp.labels, comp.children):
        child = kids.get("entropy")
        if child is None:
            continue
        rid = R.data_run_id(child)
        if tool_entropy.ENTROPY_ARTIFACT not in {a.path for a in client.list_artifacts(rid)}:
            continue
        with tempfile.TemporaryDirectory(prefix="rlreg-report-") as tmp:
            local = R.download_artifact(client, rid, tool_entropy.ENTROPY_ARTIFACT, tmp)
            recs = tool_entropy.load_entropy_file(local)
        records += [{**r, "model": f"{label}: {r['model']}" if r.get("model") else label} for r in recs]
    return plots.to_png(tool_entropy.entropy_figure(records)) if records else None


# -- rendering ------------------------------------------------------------------------------------
def _run_lines(report: Report) -> list[tuple[str, str]]:
    return [(label, f"run `{r.run_id}` (experiment {r.experiment_id}, {r.status})")
            for label, r in zip(report.comparison.labels, report.comparison.runs)]


def _diff_rows(report: Report) -> list[tuple[str, str, str]]:
    return [(c.key, fmt_spec_value(c.left), fmt_spec_value(c.right)) for c in report.spec_changes]


def to_markdown(report: Report, figure_dir: str = "") -> str:
    labels = report.comparison.labels
    a, b = labels[0], labels[-1]
    out = [f"# {report.title}", "", f"_Generated {report.created} by `rlreg report`._", ""]
    out += [f"- **{label}**: {text}" for label, text in _run_lines(report)]
    out += [f"- MLflow UI: `{R.compare_page(report.comparison.runs)}` (after your `mlflow ui` address)"]
    out += ["", f"## What differs in the specs ({a} → {b})", ""]
    if report.spec_changes:
        out += [f"| key | {a} | {b} |", "|---|---|---|"]
        out += [f"| `{k}` | {render._md_escape(l)} | {render._md_escape(r)} |" for k, l, r in _diff_rows(report)]
        if report.spec_source == "params":
            out += ["", "_From the runs' logged params (no `spec.yaml` artifact on one of them)._"]
    else:
        out.append("The specs are identical.")
    out += ["", "## Metrics", "", render.to_markdown(report.comparison).rstrip(), "",
            ("Cells: mean ± half-width of the 95% Student-t interval over eval repeats (n), or the logged value. "
             "Differences: Welch's 95% interval; _within noise_ means it contains 0.")]
    if report.figures:
        out += ["", "## Figures"]
        for f in report.figures:
            out += ["", f"### {f.title}", "", f"![{f.title}]({figure_dir + '/' if figure_dir else ''}{f.name})"]
    if report.notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in report.notes]]
    return "\n".join(out) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}code{background:#f5f5f5;padding:0 .2em}img{max-width:100%;border:1px solid #eee}
.within{color:#555}.beyond{color:#b00;font-weight:bold}.muted{color:#777;font-size:.9em}"""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], code_first: bool = True) -> str:
    e = html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(
            f"<td><code>{e(c)}</code></td>" if (i == 0 and code_first) else f"<td>{e(c)}</td>" for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: Report) -> str:
    """One file: tables and base64-embedded PNG figures, no external resources."""
    e = html.escape
    comp = report.comparison
    a, b = comp.labels[0], comp.labels[-1]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(report.title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{e(report.title)}</h1>",
             f"<p class='muted'>Generated {e(report.created)} by <code>rlreg report</code>.</p><ul>"]
    parts += [f"<li><b>{e(label)}</b>: {e(text).replace('`', '')}</li>" for label, text in _run_lines(report)]
    parts.append(f"<li>MLflow UI: <code>{e(R.compare_page(comp.runs))}</code> (after your <code>mlflow ui</code> "
                 "address)</li>")
    parts.append(f"</ul><h2>What differs in the specs ({e(a)} → {e(b)})</h2>")
    if report.spec_changes:
        parts.append(_table(["key", a, b], _diff_rows(report)))
        if report.spec_source == "params":
            parts.append("<p class='muted'>From the runs' logged params (no spec.yaml artifact on one of them).</p>")
    else:
        parts.append("<p>The specs are identical.</p>")
    parts.append("<h2>Metrics</h2>")
    parts.append(_table(["metric", *comp.labels],
                        [[row.metric, *(render.fmt_cell(c, row.percent) for c in row.cells)] for row in comp.rows]))
    diffs = [(row, d) for row in comp.rows for d in row.diffs if d is not None]
    if diffs:
        body = []
        for row, d in diffs:
            value, interval = render.diff_parts(d, row.percent)
            cls = "beyond" if "beyond" in d.verdict else "within"
            body.append(f"<tr><td><code>{e(row.metric)}</code></td><td>{e(d.b)} {render.MINUS} {e(d.a)} = {e(value)}</td>"
                        f"<td>{e(interval or '—')}</td><td class='{cls}'>{e(d.verdict)}</td></tr>")
        parts.append("<table><thead><tr><th>metric</th><th>difference</th><th>95% CI (Welch)</th><th>verdict</th>"
                     f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    parts.append("<p class='muted'>Cells: mean ± half-width of the 95% Student-t interval over eval repeats (n), "
                 "or the logged value. Differences: Welch's 95% interval; <i>within noise</i> means it contains 0.</p>")
    if report.figures:
        parts.append("<h2>Figures</h2>")
    for f in report.figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(f"<h3>{e(f.title)}</h3><img alt='{e(f.title)}' src='data:image/png;base64,{data}'>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in report.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(report: Report, output: str | Path) -> list[Path]:
    """``.html`` → one self-contained file; ``.md`` → the file plus ``<stem>_files/*.png``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() in (".html", ".htm"):
        output.write_text(to_html(report), encoding="utf-8")
        return [output]
    if output.suffix.lower() != ".md":
        raise UsageError(f"-o {output}: unknown report format (end the name in .md or .html)")
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
    """A new run tagged ``rlreg.role=report`` in the first run's experiment, holding report.html,
    report.md + report_files/, and comparison.json; returns its run id."""
    comp = report.comparison
    tags = {
        "mlflow.runName": f"report: {report.title}"[:250],
        R.TAG_ROLE: "report",
        "rlreg.report.runs": ",".join(r.run_id for r in comp.runs),
        "rlreg.report.specs": ",".join(comp.labels)[:8000],
        "mlflow.note.content": render.to_markdown(comp)[:8000],
    }
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
