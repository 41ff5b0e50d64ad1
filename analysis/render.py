"""Render a Comparison as text, Markdown, JSON or CSV.

Numbers: accuracy-like metrics in [0, 1] print in percent, their differences in points ("pts");
JSON and CSV keep the raw logged values (fractions) so they round-trip exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from analysis.compare import Cell, Comparison, Diff, Row

MINUS = "−"


def _signed(x: float, digits: str = ".4g") -> str:
    s = format(x, "+" + digits)
    return s.replace("-", MINUS)


def _plain(x: float, digits: str = ".4g") -> str:
    return format(x, digits).replace("-", MINUS)


def fmt_cell(cell: Cell, percent: bool) -> str:
    if not cell.present:
        return "—"
    scale, unit, digits = (100.0, "%", ".1f") if percent else (1.0, "", ".4g")
    text = _plain(float(cell.value) * scale, digits) + unit  # type: ignore[arg-type]
    if cell.ci is not None and cell.ci.has_ci:
        half = (cell.ci.high - cell.ci.low) / 2.0 * scale
        text += f" ± {_plain(half, digits)} (n={cell.ci.n})"
    return text


def diff_parts(diff: Diff, percent: bool) -> tuple[str, str | None]:
    """(``+1.8 pts``, ``[−1.5, +5.1]`` or None when there is no interval)."""
    d = diff.ci
    scale, unit, digits = (100.0, " pts", ".1f") if percent else (1.0, "", ".4g")
    value = _signed(d.diff * scale, digits) + unit
    if d.has_ci and d.low != d.high:
        return value, f"[{_signed(d.low * scale, digits)}, {_signed(d.high * scale, digits)}]"
    return value, None


def fmt_diff(diff: Diff, percent: bool) -> str:
    """``demo-egpo − demo-grpo = +1.8 pts [−1.5, +5.1]: within noise (p = 0.24)``."""
    value, interval = diff_parts(diff, percent)
    return f"{diff.b} {MINUS} {diff.a} = {value}{' ' + interval if interval else ''}: {diff.verdict}"


def _diff_lines(comp: Comparison) -> list[tuple[Row, Diff]]:
    return [(row, d) for row in comp.rows for d in row.diffs if d is not None]


def to_text(comp: Comparison) -> str:
    header = ["metric", *comp.labels]
    body = [[row.metric, *(fmt_cell(c, row.percent) for c in row.cells)] for row in comp.rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    runs = [f"  {label}: run {r.run_id} (experiment {r.experiment_id}, {r.status})" for label, r in zip(comp.labels, comp.runs)]
    diffs = [f"  {row.metric}: {fmt_diff(d, row.percent)}" for row, d in _diff_lines(comp)]
    out = ["Runs:", *runs, "", *lines]
    if diffs:
        out += ["", "Differences (Welch 95% CI; 'within noise' = the interval contains 0):", *diffs]
    return "\n".join(out) + "\n"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(comp: Comparison) -> str:
    head = "| metric | " + " | ".join(_md_escape(l) for l in comp.labels) + " |"
    sep = "|---" * (len(comp.labels) + 1) + "|"
    body = [
        "| `" + row.metric + "` | " + " | ".join(_md_escape(fmt_cell(c, row.percent)) for c in row.cells) + " |"
        for row in comp.rows
    ]
    out = [head, sep, *body]
    diffs = _diff_lines(comp)
    if diffs:
        out += ["", "| metric | difference | 95% CI (Welch) | verdict |", "|---|---|---|---|"]
        for row, d in diffs:
            value, interval = diff_parts(d, row.percent)
            out.append(
                f"| `{row.metric}` | {_md_escape(d.b)} {MINUS} {_md_escape(d.a)} = {value} | {interval or '—'} | {d.verdict} |"
            )
    return "\n".join(out) + "\n"


def _num(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def to_dict(comp: Comparison) -> dict[str, Any]:
    return {
        "runs": [
            {"label": l, "run_id": r.run_id, "spec": r.spec, "experiment_id": r.experiment_id,
             "status": r.status, "start_time": r.start_time}
            for l, r in zip(comp.labels, comp.runs)
        ],
        "metrics": [
            {
                "metric": row.metric,
                "percent": row.percent,
                "values": {
                    l: {
                        "value": _num(c.value), "source": c.source,
                        "ci_low": _num(c.ci.low) if c.ci else None, "ci_high": _num(c.ci.high) if c.ci else None,
                        "std": _num(c.ci.std) if c.ci else None, "n": c.ci.n if c.ci else (1 if c.present else 0),
                        "repeats": c.repeats,
                    }
                    for l, c in zip(comp.labels, row.cells)
                },
                "diffs": [
                    {"a": d.a, "b": d.b, "diff": _num(d.ci.diff), "ci_low": _num(d.ci.low), "ci_high": _num(d.ci.high),
                     "df": _num(d.ci.df), "t": _num(d.ci.t), "p": _num(d.ci.p), "verdict": d.verdict}
                    for d in row.diffs if d is not None
                ],
            }
            for row in comp.rows
        ],
    }


def to_json(comp: Comparison) -> str:
    return json.dumps(to_dict(comp), indent=2, ensure_ascii=False) + "\n"


def to_csv(comp: Comparison) -> str:
    """Wide: one row per metric; per run value, ci_low, ci_high, n; per pair diff, CI, p, verdict."""
    cols = ["metric"]
    for l in comp.labels:
        cols += [l, f"{l} ci_low", f"{l} ci_high", f"{l} n"]
    for l in comp.labels[1:]:
        pair = f"{l} - {comp.labels[0]}"
        cols += [pair, f"{pair} ci_low", f"{pair} ci_high", f"{pair} p", f"{pair} verdict"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in comp.rows:
        line: list[Any] = [row.metric]
        for c in row.cells:
            line += [_num(c.value), _num(c.ci.low) if c.ci else None, _num(c.ci.high) if c.ci else None,
                     c.ci.n if c.ci else (1 if c.present else 0)]
        for d in row.diffs[1:]:
            line += ([_num(d.ci.diff), _num(d.ci.low), _num(d.ci.high), _num(d.ci.p), d.verdict] if d else [None] * 5)
        writer.writerow(["" if v is None else v for v in line])
    return buf.getvalue()


FORMATS = {"text": to_text, "md": to_markdown, "json": to_json, "csv": to_csv}
