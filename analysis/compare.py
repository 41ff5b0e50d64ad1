"""Compare parent runs metric by metric: one row per metric, one column per run, and for every run
after the first its difference from the first (B − A) with Welch's 95 % interval and a verdict.

Where a cell's numbers come from, in order (``Cell.source``):
1. ``repeats``: the eval child's per-repeat history of the base key (``eval/accuracy`` for
   ``eval/accuracy_mean``, steps 0..N−1) → mean ± Student-t CI over those values (a cached eval
   child points with ``rlreg.cache_hit`` at the run that holds the history);
2. ``logged-ci``: the parent's ``<base>_ci95_low/high`` with the repeat count ``<prefix>/repeats``
   (std recovered from the interval) when the per-repeat values are gone;
3. ``parent``: the parent's logged value; 4. ``child``: a stage child's latest value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis import runs as R
from analysis.stats import (
    DiffCI,
    MeanCI,
    mean_ci,
    mean_ci_from_interval,
    verdict,
    welch_from_summary,
)
from registry.errors import UsageError

# Folded into the ``_mean`` cell (interval, n) rather than shown as rows of their own.
COMPANION_RE = re.compile(r"(_ci95_low|_ci95_high|_std|/repeats)$")
REPEAT_STAGE = "eval"


@dataclass
class Cell:
    value: float | None = None
    ci: MeanCI | None = None
    source: str = "missing"
    repeats: list[float] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return self.value is not None and not (isinstance(self.value, float) and math.isnan(self.value))

    def summary(self) -> MeanCI | None:
        if not self.present:
            return None
        return self.ci or MeanCI(float(self.value), math.nan, math.nan, math.nan, 1)  # type: ignore[arg-type]


@dataclass
class Diff:
    a: str
    b: str
    ci: DiffCI

    @property
    def verdict(self) -> str:
        return verdict(self.ci)


@dataclass
class Row:
    metric: str
    cells: list[Cell]
    diffs: list[Diff | None]
    percent: bool


@dataclass
class Comparison:
    runs: list[R.RunRecord]
    labels: list[str]
    rows: list[Row]
    children: list[dict[str, R.RunRecord]]

    def row(self, metric: str) -> Row:
        for r in self.rows:
            if r.metric == metric:
                return r
        raise KeyError(metric)


def base_key(metric: str) -> str:
    return metric.removesuffix("_mean")


def is_fraction(metric: str, values: Sequence[float]) -> bool:
    """Accuracy-like metrics in [0, 1] are shown in percent and their differences in points."""
    name = base_key(metric).lower()
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return ("accuracy" in name or name.endswith("_rate")) and bool(finite) and all(0.0 <= v <= 1.0 for v in finite)


def run_labels(records: Sequence[R.RunRecord]) -> list[str]:
    """Spec names; runs of the same spec get ``@<run id prefix>`` to tell them apart."""
    names = [r.spec or r.run_name or r.run_id[:8] for r in records]
    return [f"{n}@{r.run_id[:8]}" if names.count(n) > 1 else n for n, r in zip(names, records)]


def default_metrics(records: Sequence[R.RunRecord]) -> list[str]:
    keys = sorted({k for r in records for k in r.metrics})
    return [k for k in keys if not COMPANION_RE.search(k)]


def _repeat_values(histories: Any, child: R.RunRecord | None, key: str) -> list[float]:
    if child is None or histories is None or histories.empty:
        return []
    h = histories[(histories.run_id == R.data_run_id(child)) & (histories.key == key)]
    # a repeat re-logged at the same step counts once (the latest value)
    return [float(v) for v in h.drop_duplicates("step", keep="last")["value"]]


def _cell(metric: str, parent: R.RunRecord, kids: dict[str, R.RunRecord], histories: Any) -> Cell:
    base = base_key(metric)
    values = _repeat_values(histories, kids.get(REPEAT_STAGE), base)
    if len(values) >= 2:
        ci = mean_ci(values)
        return Cell(ci.mean, ci, "repeats", values)
    if metric in parent.metrics:
        value = parent.metrics[metric]
        low, high = parent.metrics.get(f"{base}_ci95_low"), parent.metrics.get(f"{base}_ci95_high")
        count = parent.metrics.get(f"{base.rsplit('/', 1)[0]}/repeats") if "/" in base else None
        if low is not None and high is not None and count is not None and count >= 2:
            return Cell(value, mean_ci_from_interval(value, low, high, int(count)), "logged-ci")
        return Cell(value, None, "parent")
    for kid in kids.values():
        if metric in kid.metrics:
            return Cell(kid.metrics[metric], None, f"child:{kid.stage or kid.run_id[:8]}")
    return Cell()


def build(
    client: Any,
    refs: Sequence[str],
    metrics: Sequence[str] | None = None,
    pinned: dict[str, str] | None = None,
) -> Comparison:
    """Resolve ``refs`` (spec names or run ids; ``pinned`` maps a spec name to a run id) and
    compare them. Raises UsageError for fewer than two runs, unknown specs or unknown metrics."""
    if len(refs) < 2:
        raise UsageError("compare needs at least two runs (spec names or run ids), e.g. `demo-grpo demo-egpo`")
    pinned = pinned or {}
    unknown_pins = set(pinned) - set(refs)
    if unknown_pins:
        raise UsageError(f"--run names spec(s) {sorted(unknown_pins)} that are not compared (list them as arguments)")
    records = [R.resolve(client, ref, pinned.get(ref)) for ref in refs]
    kids = [R.children(client, r) for r in records]
    labels = run_labels(records)

    wanted = list(metrics) if metrics else default_metrics(records)
    if metrics:
        available = set(default_metrics(records)) | {k for ks in kids for c in ks.values() for k in c.metrics}
        missing = [m for m in wanted if m not in available]
        if missing:
            raise UsageError(
                f"metric(s) {', '.join(missing)} not logged on any compared run "
                f"(available: {', '.join(sorted(available)) or 'none'})"
            )
    if not wanted:
        raise UsageError(f"the runs {', '.join(r.run_id for r in records)} have no metrics to compare")

    repeat_children = [R.data_run_id(k[REPEAT_STAGE]) for k in kids if REPEAT_STAGE in k]
    histories = R.metric_histories(client, repeat_children, {base_key(m) for m in wanted}) if repeat_children else None

    rows = []
    for metric in wanted:
        cells = [_cell(metric, p, k, histories) for p, k in zip(records, kids)]
        flat = [c.value for c in cells if c.present] + [v for c in cells if c.ci for v in (c.ci.low, c.ci.high)]
        diffs: list[Diff | None] = [None]
        first = cells[0].summary()
        for label, cell in zip(labels[1:], cells[1:]):
            other = cell.summary()
            diffs.append(Diff(labels[0], label, welch_from_summary(first, other)) if first and other else None)
        rows.append(Row(metric, cells, diffs, is_fraction(metric, flat)))
    return Comparison(records, labels, rows, kids)
