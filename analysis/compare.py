"""Compare arms metric by metric: one row per metric, one column per arm, and for every arm after
the first its difference from the first (B − A) with an interval that says what noise it covers.

An arm is one parent run (a spec name or run id) or several (a study arm: one run per training
seed; ``analysis.arms``). Where a single run's cell comes from, in order (``Cell.source``):
1. ``repeats``: the eval child's per-repeat history of the base key (``eval/accuracy`` for
   ``eval/accuracy_mean``, steps 0..N−1) → mean ± Student-t CI over those values (a cached eval
   child points with ``rlreg.cache_hit`` at the run that holds the history);
2. ``logged-ci``: the parent's ``<base>_ci95_low/high`` (or the eval child's) with the repeat count
   ``<prefix>/repeats`` (std recovered from the interval) when the per-repeat values are gone;
3. ``parent``: the parent's logged value; 4. ``child``: a stage child's latest value.
An arm of ≥ 2 runs gets ``seeds``: mean ± t-interval over the runs' values. Proportions
(``analysis.metrics``) keep their intervals inside [0, 1]. Differences: ``analysis.verdict``; two
seeded arms with ≥ 2 seeds in common are compared paired by seed (``analysis.seedpair``) unless
``pair_seeds=False``, the unpaired Welch shown alongside.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis import arms as A
from analysis import runs as R
from analysis import seedpair
from analysis.entries import load_entries, shared_prompts
from analysis.metrics import base_key, entry_column, is_proportion
from analysis.paired import paired_diff, per_prompt
from analysis.stats import MeanCI, clip_proportion, holm, mean_ci, mean_ci_from_interval
from analysis.verdict import UNIT_REPEATS, UNIT_SEEDS, Diff, repeats_diff, seed_paired_diff, seeds_diff
from analysis.verdict import paired_diff as paired_verdict
from registry.errors import UsageError
from registry.parent_view import CURVE_KEYS

# Folded into the ``_mean`` cell (interval, n) rather than shown as rows of their own.
COMPANION_RE = re.compile(r"(_ci95_low|_ci95_high|_std|/repeats)$")
REPEAT_STAGE = "eval"
DEFAULT_PRIMARY = "eval/accuracy_mean"
TAG_PRIMARY = "rlreg.primary_metric"  # on study cells (registry/study/cells.py)

__all__ = ["Cell", "Comparison", "Diff", "Row", "base_key", "build", "is_fraction"]


@dataclass
class Cell:
    value: float | None = None
    ci: MeanCI | None = None
    source: str = "missing"
    repeats: list[float] = field(default_factory=list)
    """The values the interval is over: eval repeats (one run) or per-seed values (an arm)."""
    unit: str = ""

    @property
    def present(self) -> bool:
        return self.value is not None and not (isinstance(self.value, float) and math.isnan(self.value))

    def summary(self) -> MeanCI | None:
        if not self.present:
            return None
        return self.ci or MeanCI(float(self.value), math.nan, math.nan, math.nan, 1)  # type: ignore[arg-type]


@dataclass
class Row:
    metric: str
    cells: list[Cell]
    diffs: list[Diff | None]
    percent: bool
    primary: bool = False


@dataclass
class Comparison:
    arms: list[A.Arm]
    rows: list[Row]
    primary: str = ""
    notes: list[str] = field(default_factory=list)
    study: str = ""
    scopes: dict[str, seedpair.Scope] = field(default_factory=dict)  # what each arm's seeds change

    @property
    def labels(self) -> list[str]:
        return [a.label for a in self.arms]

    @property
    def runs(self) -> list[R.RunRecord]:
        """One run per arm (its first seed): where a single-run arm's numbers come from."""
        return [a.runs[0] for a in self.arms]

    @property
    def children(self) -> list[dict[str, R.RunRecord]]:
        return [a.children[0] for a in self.arms]

    @property
    def all_runs(self) -> list[R.RunRecord]:
        return [r for a in self.arms for r in a.runs]

    def row(self, metric: str) -> Row:
        for r in self.rows:
            if r.metric == metric:
                return r
        raise KeyError(metric)


def is_fraction(metric: str, values: Sequence[float] = ()) -> bool:
    """Kept for callers: whether ``metric`` prints in percent — a property of the metric's name
    (``analysis.metrics.is_proportion``), never of its values."""
    return is_proportion(metric)


def default_metrics(records: Sequence[R.RunRecord]) -> list[str]:
    """Every headline metric on the parents; the per-step curves copied onto them are figures (their
    last values are the ``*_last`` headline metrics)."""
    keys = sorted({k for r in records for k in r.metrics})
    return [k for k in keys if not COMPANION_RE.search(k) and k not in CURVE_KEYS]


def _repeat_values(histories: Any, child: R.RunRecord | None, key: str) -> list[float]:
    if child is None or histories is None or histories.empty:
        return []
    h = histories[(histories.run_id == R.data_run_id(child)) & (histories.key == key)]
    # a repeat re-logged at the same step counts once (the latest value)
    return [float(v) for v in h.drop_duplicates("step", keep="last")["value"]]


def _clip(metric: str, ci: MeanCI) -> MeanCI:
    return clip_proportion(ci) if is_proportion(metric) else ci


def _cell(metric: str, parent: R.RunRecord, kids: dict[str, R.RunRecord], histories: Any) -> Cell:
    base = base_key(metric)
    values = _repeat_values(histories, kids.get(REPEAT_STAGE), base)
    if len(values) >= 2:
        return Cell(mean_ci(values).mean, _clip(metric, mean_ci(values)), "repeats", values, UNIT_REPEATS)
    # interval bounds live on the eval child (the parent carries the mean only)
    holders = [parent, *([kids[REPEAT_STAGE]] if REPEAT_STAGE in kids else [])]
    if metric in parent.metrics:
        value = parent.metrics[metric]
        prefix = base.rsplit("/", 1)[0] if "/" in base else None
        for holder in holders:
            low, high = holder.metrics.get(f"{base}_ci95_low"), holder.metrics.get(f"{base}_ci95_high")
            count = holder.metrics.get(f"{prefix}/repeats") if prefix else None
            if low is not None and high is not None and count is not None and count >= 2:
                ci = mean_ci_from_interval(value, low, high, int(count))
                return Cell(value, _clip(metric, ci), "logged-ci", [], UNIT_REPEATS)
        return Cell(value, None, "parent")
    for kid in kids.values():
        if metric in kid.metrics:
            return Cell(kid.metrics[metric], None, f"child:{kid.stage or kid.run_id[:8]}")
    return Cell()


def _arm_cell(metric: str, arm: A.Arm, histories: Any) -> tuple[Cell, list[Cell]]:
    per_run = [_cell(metric, p, k, histories) for p, k in zip(arm.runs, arm.children)]
    if not arm.replicated:
        return per_run[0], per_run
    values = [float(c.value) for c in per_run if c.present]  # type: ignore[arg-type]
    if not values:
        return Cell(), per_run
    ci = mean_ci(values)
    return Cell(ci.mean, _clip(metric, ci) if len(values) >= 2 else None, "seeds", values,
                UNIT_SEEDS if len(values) >= 2 else ""), per_run


class _Entries:
    """Per-prompt outcomes per arm, loaded once per run (only for metrics that have them)."""

    def __init__(self, client: Any):
        self.client = client
        self._rows: dict[str, list[dict] | None] = {}

    def rows(self, kids: dict[str, R.RunRecord]) -> list[dict] | None:
        child = kids.get(REPEAT_STAGE)
        if child is None:
            return None
        rid = R.data_run_id(child)
        if rid not in self._rows:
            self._rows[rid] = load_entries(self.client, rid)
        return self._rows[rid]

    def arm(self, arm: A.Arm, column: str) -> tuple[dict[str, float], int, list[dict]] | None:
        """``({entry_id: outcome averaged over repeats and seeds}, repeats, rows)`` or None."""
        tables = [self.rows(k) for k in arm.children]
        if not tables or any(t is None or not t or column not in t[0] for t in tables):
            return None
        prompts: dict[str, list[float]] = {}
        for t in tables:
            for k, v in per_prompt(t, column).items():  # type: ignore[arg-type]
                prompts.setdefault(k, []).append(v)
        repeats = max(len({r.get("repeat") for r in t}) for t in tables)  # type: ignore[union-attr]
        return {k: sum(v) / len(v) for k, v in prompts.items()}, repeats, [r for t in tables for r in t]  # type: ignore[union-attr]


def _values(per_run: list[Cell]) -> list[float | None]:
    return [float(c.value) if c.present else None for c in per_run]  # type: ignore[arg-type]


def _seeds_diff(metric: str, a: A.Arm, b: A.Arm, ca: MeanCI, cb: MeanCI, per_run: tuple[list[Cell], list[Cell]],
                scopes: dict[str, seedpair.Scope], pair_seeds: bool) -> Diff:
    """Paired by seed when the design pairs the cells (≥ 2 seeds both arms ran), else Welch; the
    rule is the design's, never the smaller p's (docs/statistics.md)."""
    spread = seedpair.spread(a.label, b.label, scopes)
    welch = seeds_diff(metric, a.label, b.label, ca, cb, spread)
    if not pair_seeds:
        return welch
    sp = seedpair.pairs(a, b, _values(per_run[0]), _values(per_run[1]))
    if sp.n < 2:
        welch.covers += (f"; not paired by seed: the arms have {sp.n} seed{'' if sp.n == 1 else 's'} in common "
                         "(2 needed)")
        return welch
    d = seed_paired_diff(metric, a.label, b.label, sp.a, sp.b, seeds=sp.seeds, spread=spread, shares=sp.shares,
                         left_out=sp.left_out(a.label, b.label))
    d.unpaired = welch
    return d


def _diff(metric: str, arms: list[A.Arm], cells: list[Cell], i: int, entries: _Entries, notes: list[str],
          per_run: list[list[Cell]] | None = None, scopes: dict[str, seedpair.Scope] | None = None,
          pair_seeds: bool = True) -> Diff | None:
    a, b = arms[0], arms[i]
    ca, cb = cells[0].summary(), cells[i].summary()
    if ca is None or cb is None:
        return None
    if cells[0].unit == UNIT_SEEDS and cells[i].unit == UNIT_SEEDS:
        per_run = per_run or [[] for _ in arms]
        scopes = scopes or {arm.label: seedpair.TRAINED for arm in arms}
        return _seeds_diff(metric, a, b, ca, cb, (per_run[0], per_run[i]), scopes, pair_seeds)
    column = entry_column(metric)
    if column:
        ea, eb = entries.arm(a, column), entries.arm(b, column)
        if ea and eb:
            same, dropped = shared_prompts(ea[2], eb[2])
            if dropped:
                notes.append(f"{metric}: {dropped} entry id(s) of {a.label} and {b.label} name different prompts "
                             "(different eval sets); they are left out of the pairing")
            ids = sorted(same & set(ea[0]) & set(eb[0]))
            if len(ids) >= 2:
                pr = paired_diff([ea[0][k] for k in ids], [eb[0][k] for k in ids])
                return paired_verdict(metric, a.label, b.label, pr, (ea[1], eb[1]), (len(a.runs), len(b.runs)))
    return repeats_diff(metric, a.label, b.label, ca, cb)


def _adjust(rows: list[Row]) -> None:
    """Holm over the primary metric's arm pairs, and separately over every secondary test."""
    for group in ([d for r in rows if r.primary for d in r.diffs if d],
                  [d for r in rows if not r.primary for d in r.diffs if d]):
        tested = [d for d in group if math.isfinite(d.ci.p)]
        if len(tested) < 2:
            continue
        for d, p in zip(tested, holm([d.ci.p for d in tested])):
            d.p_adjusted = p


def _resolve_primary(primary: str | None, wanted: list[str]) -> str:
    if primary:
        for candidate in (primary, primary + "_mean"):
            if candidate in wanted:
                return candidate
        raise UsageError(f"primary metric {primary} is not among the compared metrics ({', '.join(wanted)})")
    return DEFAULT_PRIMARY if DEFAULT_PRIMARY in wanted else ""


def build(
    client: Any,
    refs: Sequence[str],
    metrics: Sequence[str] | None = None,
    pinned: dict[str, str] | None = None,
    *,
    study: str | None = None,
    where: str | None = None,
    primary: str | None = None,
    pair_seeds: bool = True,
) -> Comparison:
    """Resolve ``refs`` (spec names or run ids; ``pinned`` maps a spec name to a run id), a study's
    arms and/or ``where``-matched runs, and compare them. ``pair_seeds=False`` (``--unpaired-seeds``)
    compares seeded arms by Welch even where their seeds match. Raises UsageError for fewer than
    two arms, unknown specs or unknown metrics."""
    pinned = pinned or {}
    unknown_pins = set(pinned) - set(refs)
    if unknown_pins:
        raise UsageError(f"--run names spec(s) {sorted(unknown_pins)} that are not compared (list them as arguments)")
    arms = A.ref_arms(client, refs, pinned)
    if study:
        arms += A.study_arms(client, study, where)
    elif where:
        arms += A.where_arms(client, where)
    if len(arms) < 2:
        raise UsageError("compare needs at least two runs or arms (spec names, run ids, --study or --where), "
                         "e.g. `demo-grpo demo-egpo`")
    A.label_arms(arms)
    for arm in arms:
        arm.children = [R.children(client, r) for r in arm.runs]
    records = [r for a in arms for r in a.runs]
    kids = [k for a in arms for k in a.children]

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
    if not primary:  # a study's cells carry their study's primary metric; else its study file says it
        primary = next((r.tags[TAG_PRIMARY] for r in records if r.tags.get(TAG_PRIMARY)), None)
    if not primary and study:
        from analysis.studyref import primary_metric as study_file_primary

        primary = study_file_primary(study)
    primary_metric = _resolve_primary(primary, wanted)

    repeat_children = [R.data_run_id(k[REPEAT_STAGE]) for k in kids if REPEAT_STAGE in k]
    histories = R.metric_histories(client, repeat_children, {base_key(m) for m in wanted}) if repeat_children else None

    entries = _Entries(client)
    scopes = {arm.label: seedpair.scope(arm) for arm in arms}
    notes: list[str] = []
    if not pair_seeds and any(arm.replicated for arm in arms):
        notes.append("--unpaired-seeds: differences over training seeds are Welch over each arm's seeds; "
                     "the pairing of same-seed cells is ignored")
    rows = []
    for metric in wanted:
        built = [_arm_cell(metric, arm, histories) for arm in arms]
        cells, per_run = [c for c, _ in built], [p for _, p in built]
        diffs: list[Diff | None] = [None]
        for i in range(1, len(arms)):
            d = _diff(metric, arms, cells, i, entries, notes, per_run, scopes, pair_seeds)
            if d is not None:
                d.role = "primary" if metric == primary_metric else "secondary"
            diffs.append(d)
        rows.append(Row(metric, cells, diffs, is_proportion(metric), metric == primary_metric))
    _adjust(rows)
    return Comparison(arms, rows, primary_metric, notes, study or "", scopes)
