"""Render a Comparison as text, Markdown, JSON or CSV.

Numbers: proportions (by metric name, ``analysis.metrics``) print in percent, their differences in
points ("pts"), whatever their values or intervals; JSON and CSV keep the raw logged values
(fractions) so they round-trip exactly. Every difference says its unit of replication and what its
interval covers; the primary metric's verdict comes first, the others are marked secondary with
Holm-adjusted p-values.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from analysis.compare import Cell, Comparison, Row
from analysis.verdict import Diff

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
        lo, hi = cell.ci.low * scale, cell.ci.high * scale
        unit_of = "seeds" if cell.unit == "training seeds" else "repeats" if cell.unit else ""
        n = f"n={cell.ci.n}{' ' + unit_of if unit_of == 'seeds' else ''}"
        text += f" [{_plain(lo, digits)}, {_plain(hi, digits)}] ({n})"
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
    """``demo-egpo − demo-grpo = +1.8 pts [−1.5, +5.1]: no difference detected at this sample size
    (±3.3 pts, p = 0.24)``."""
    value, interval = diff_parts(diff, percent)
    return f"{diff.b} {MINUS} {diff.a} = {value}{' ' + interval if interval else ''}: {diff.verdict}"


def unpaired_line(diff: Diff, percent: bool) -> str:
    """The Welch result a seed-paired verdict replaces, so nothing is hidden."""
    u = diff.unpaired
    if u is None:
        return ""
    value, interval = diff_parts(u, percent)
    return (f"Unpaired (Welch over each arm's seeds, the seed pairing ignored): {value}"
            f"{' ' + interval if interval else ''}, n = {u.n[0]} vs {u.n[1]}: {u.verdict}.")


def _diff_lines(comp: Comparison) -> list[tuple[Row, Diff]]:
    """Primary metric first, then the secondary ones."""
    ordered = sorted(comp.rows, key=lambda r: not r.primary)
    return [(row, d) for row in ordered for d in row.diffs if d is not None]


def verdict_lines(comp: Comparison) -> list[str]:
    """The headline: the primary metric's difference(s), what the interval covers, the power."""
    out = []
    for row in comp.rows:
        if not row.primary:
            continue
        for d in row.diffs:
            if d is None:
                continue
            out.append(_minus(d.sentence()))
            if d.covers:
                out.append(f"  The interval covers {d.covers}.")
            if d.power_note:
                out.append(f"  {d.power_note}")
            if d.unpaired is not None:
                out.append(f"  {_minus(unpaired_line(d, row.percent))}")
    return out


def _minus(s: str) -> str:
    return s.replace(" - ", f" {MINUS} ")


def to_text(comp: Comparison) -> str:
    header = ["metric", *comp.labels]
    body = [[row.metric, *(fmt_cell(c, row.percent) for c in row.cells)] for row in comp.rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    runs = [f"  {line}" for line in arm_lines(comp)]
    diffs: list[str] = []
    previous: tuple[str, str] | None = None
    for row, d in _diff_lines(comp):
        role = "primary" if row.primary else "secondary"
        diffs.append(f"  [{role}] {row.metric}: {fmt_diff(d, row.percent)}")
        # the unit/covers paragraph only where it changes: every metric of a study shares it
        if (d.unit, d.covers) == previous:
            diffs.append("      unit and coverage: as above")
        else:
            previous = (d.unit, d.covers)
            diffs.append(f"      unit: {d.unit or 'none'}; covers {d.covers}" if d.covers else "      unit: none")
        if d.unpaired is not None:
            diffs.append(f"      {unpaired_line(d, row.percent)}")
    head = verdict_lines(comp)
    out = (["Verdict:", *[f"  {h}" for h in head], ""] if head else []) + ["Arms:", *runs, "", *lines]
    if diffs:
        out += ["", "Differences (95% CI; secondary metrics with Holm-adjusted p):", *diffs]
    if comp.notes:
        out += ["", "Notes:", *[f"  {n}" for n in comp.notes]]
    return "\n".join(out) + "\n"


def arm_lines(comp: Comparison) -> list[str]:
    out = []
    for arm in comp.arms:
        if len(arm.runs) == 1:
            r = arm.runs[0]
            out.append(f"{arm.label}: run {r.run_id} (experiment {r.experiment_id}, {r.status})")
        else:
            seeds = ", ".join(f"seed {s or '?'}={r.run_id[:8]}" for s, r in zip(arm.seeds, arm.runs))
            scope = comp.scopes.get(arm.label)
            why = f"; {scope.variation} ({scope.why})" if scope is not None and not scope.trained else ""
            out.append(f"{arm.label}: {len(arm.runs)} runs ({seeds}){why}")
    return out


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(comp: Comparison) -> str:
    head = "| metric | " + " | ".join(_md_escape(l) for l in comp.labels) + " |"
    sep = "|---" * (len(comp.labels) + 1) + "|"
    body = [
        "| `" + row.metric + "` | " + " | ".join(_md_escape(fmt_cell(c, row.percent)) for c in row.cells) + " |"
        for row in comp.rows
    ]
    verdict = verdict_lines(comp)
    out = ([*[f"> {v.strip()}" + "  " for v in verdict], ""] if verdict else []) + [head, sep, *body]
    diffs = _diff_lines(comp)
    if diffs:
        out += ["", "| metric | role | difference | 95% CI | unit | verdict |", "|---|---|---|---|---|---|"]
        for row, d in diffs:
            value, interval = diff_parts(d, row.percent)
            out.append(
                f"| `{row.metric}` | {'primary' if row.primary else 'secondary'} | {_md_escape(d.b)} {MINUS} "
                f"{_md_escape(d.a)} = {value} | {interval or '—'} | {d.unit or '—'} | {d.verdict} |"
            )
    return "\n".join(out) + "\n"


def _num(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def to_dict(comp: Comparison) -> dict[str, Any]:
    return {
        "primary": comp.primary,
        "study": comp.study,
        "runs": [
            {"label": l, "run_id": r.run_id, "spec": r.spec, "experiment_id": r.experiment_id,
             "status": r.status, "start_time": r.start_time}
            for l, r in zip(comp.labels, comp.runs)
        ],
        "arms": [
            {"label": a.label, "runs": [r.run_id for r in a.runs], "seeds": a.seeds} for a in comp.arms
        ],
        "notes": comp.notes,
        "metrics": [
            {
                "metric": row.metric,
                "percent": row.percent,
                "role": "primary" if row.primary else "secondary",
                "values": {
                    l: {
                        "value": _num(c.value), "source": c.source,
                        "ci_low": _num(c.ci.low) if c.ci else None, "ci_high": _num(c.ci.high) if c.ci else None,
                        "std": _num(c.ci.std) if c.ci else None, "n": c.ci.n if c.ci else (1 if c.present else 0),
                        "repeats": c.repeats, "unit": c.unit,
                    }
                    for l, c in zip(comp.labels, row.cells)
                },
                "diffs": [
                    {"a": d.a, "b": d.b, "diff": _num(d.ci.diff), "ci_low": _num(d.ci.low), "ci_high": _num(d.ci.high),
                     "df": _num(d.ci.df), "t": _num(d.ci.t), "p": _num(d.ci.p), "p_holm": _num(d.p_adjusted),
                     "unit": d.unit, "covers": d.covers, "test": d.test, "n": list(d.n), "power": d.power_note,
                     "verdict": d.verdict, "unpaired": _unpaired(d)}
                    for d in row.diffs if d is not None
                ],
            }
            for row in comp.rows
        ],
    }


def _unpaired(d: Diff) -> dict[str, Any] | None:
    u = d.unpaired
    if u is None:
        return None
    return {"diff": _num(u.ci.diff), "ci_low": _num(u.ci.low), "ci_high": _num(u.ci.high), "df": _num(u.ci.df),
            "t": _num(u.ci.t), "p": _num(u.ci.p), "unit": u.unit, "covers": u.covers, "test": u.test,
            "n": list(u.n), "power": u.power_note, "verdict": u.verdict}


def to_json(comp: Comparison) -> str:
    return json.dumps(to_dict(comp), indent=2, ensure_ascii=False) + "\n"


def to_csv(comp: Comparison) -> str:
    """Wide: one row per metric; per run value, ci_low, ci_high, n; per pair diff, CI, p, verdict."""
    cols = ["metric"]
    for l in comp.labels:
        cols += [l, f"{l} ci_low", f"{l} ci_high", f"{l} n"]
    for l in comp.labels[1:]:
        pair = f"{l} - {comp.labels[0]}"
        cols += [pair, f"{pair} ci_low", f"{pair} ci_high", f"{pair} p", f"{pair} p_holm", f"{pair} unit",
                 f"{pair} verdict"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in comp.rows:
        line: list[Any] = [row.metric]
        for c in row.cells:
            line += [_num(c.value), _num(c.ci.low) if c.ci else None, _num(c.ci.high) if c.ci else None,
                     c.ci.n if c.ci else (1 if c.present else 0)]
        for d in row.diffs[1:]:
            line += ([_num(d.ci.diff), _num(d.ci.low), _num(d.ci.high), _num(d.ci.p), _num(d.p_adjusted), d.unit,
                      d.verdict] if d else [None] * 7)
        writer.writerow(["" if v is None else v for v in line])
    return buf.getvalue()


FORMATS = {"text": to_text, "md": to_markdown, "json": to_json, "csv": to_csv}
