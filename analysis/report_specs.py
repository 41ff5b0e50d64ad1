"""What differs in the specs between arms: key-aware, only the keys that differ somewhere, the
overrides each arm was run with (tag ``rlreg.overrides``) as a row of their own.

A study arm's runs differ by seed only (the seed is the replication, listed with the arms), so the
table reads each arm's first run and leaves ``seed`` out when an arm has several runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis import runs as R
from registry.diff import Change, diff_specs
from registry.diff import fmt as fmt_spec_value
from registry.errors import UsageError

TAG_OVERRIDES = "rlreg.overrides"


@dataclass
class SpecRow:
    key: str
    values: list[str]  # one per arm


def spec_of(client: Any, record: R.RunRecord) -> tuple[dict, str]:
    try:
        return R.spec_from_run(record.run_id, client), "spec.yaml"
    except UsageError:
        return dict(record.params), "params"  # flattened already; diff_specs keys them the same way


def spec_changes(client: Any, a: R.RunRecord, b: R.RunRecord) -> tuple[list[Change], str]:
    (left, src_a), (right, src_b) = spec_of(client, a), spec_of(client, b)
    if src_a != src_b:  # compare like with like: both as logged params (strings)
        left, right, src_a = dict(a.params), dict(b.params), "params"
    return diff_specs(left, right), src_a


def spec_table(client: Any, arms: list[Any]) -> tuple[list[SpecRow], str]:
    """Rows for every key that differs between the baseline arm and any other arm."""
    specs = [spec_of(client, arm.runs[0]) for arm in arms]
    if len({src for _, src in specs}) > 1:
        specs = [(dict(arm.runs[0].params), "params") for arm in arms]
    source = specs[0][1]
    base = specs[0][0]
    per_arm: list[dict[str, Any]] = []
    keys: list[str] = []
    for spec, _ in specs[1:]:
        changes = {c.key: c for c in diff_specs(base, spec)}
        per_arm.append(changes)
        keys += [k for k in changes if k not in keys]
    replicated = any(len(arm.runs) > 1 for arm in arms)
    rows = []
    for key in keys:
        if replicated and key == "seed":
            continue
        first = next(c.left for c in (d.get(key) for d in per_arm) if c is not None)
        values = [fmt_spec_value(first)]
        for changes in per_arm:
            c = changes.get(key)
            values.append(fmt_spec_value(c.right if c is not None else first))
        rows.append(SpecRow(key, values))  # a key missing on one side prints as "—"
    overrides = [arm.runs[0].tags.get(TAG_OVERRIDES, "") for arm in arms]
    if any(overrides):
        rows.insert(0, SpecRow("overrides (rlreg.overrides)", [o or "—" for o in overrides]))
    return rows, source
