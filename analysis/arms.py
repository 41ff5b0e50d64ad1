"""What is compared: arms, each one or more parent runs (one per training seed).

- a positional ref (spec name, run id) is an arm of one run;
- ``--study NAME``: the study's cell parents (tags ``rlreg.study``, ``rlreg.arm``, ``rlreg.seed``,
  ``rlreg.cell``), grouped by arm — by the cell id without its ``/seed=N`` part, so grid points
  of one arm stay apart; per cell the newest FINISHED run;
- ``--where FILTER``: parent runs matching an MLflow filter, grouped by ``rlreg.arm`` (else by
  spec name), newest FINISHED run per seed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from analysis import runs as R
from registry.errors import UsageError

TAG_STUDY = "rlreg.study"
TAG_ARM = "rlreg.arm"
TAG_SEED = "rlreg.seed"
TAG_CELL = "rlreg.cell"
SEED_PART_RE = re.compile(r"(^|/)seed=[^/]*")


@dataclass
class Arm:
    label: str
    runs: list[R.RunRecord]
    children: list[dict[str, R.RunRecord]] = field(default_factory=list)

    @property
    def seeds(self) -> list[str]:
        return [seed_of(r) for r in self.runs]

    @property
    def replicated(self) -> bool:
        """Two or more training seeds: seed-to-seed variance can be estimated."""
        return len(self.runs) >= 2


def seed_of(record: R.RunRecord) -> str:
    return record.tags.get(TAG_SEED) or record.params.get("seed", "")


def group_key(record: R.RunRecord) -> str:
    """The arm a cell belongs to: its cell id without ``seed=N`` (grid points stay apart)."""
    cell = record.tags.get(TAG_CELL, "")
    if cell:
        key = SEED_PART_RE.sub("", cell).strip("/")
        return key or record.tags.get(TAG_ARM, "") or record.spec
    return record.tags.get(TAG_ARM) or record.spec or record.run_name or record.run_id[:8]


def _newest_per_seed(records: Sequence[R.RunRecord]) -> list[R.RunRecord]:
    """Newest FINISHED run per seed (re-runs of one cell count once), ordered by seed."""
    best: dict[str, R.RunRecord] = {}
    for r in records:
        if r.status != "FINISHED":
            continue
        seed = seed_of(r) or r.run_id  # no seed recorded: every run is its own replicate
        if seed not in best or r.start_time > best[seed].start_time:
            best[seed] = r
    return sorted(best.values(), key=lambda r: (_seed_number(seed_of(r)), r.start_time))


def _seed_number(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.lstrip("-").isdigit() else (1 << 62, seed)


def grouped(records: Sequence[R.RunRecord]) -> list[Arm]:
    groups: dict[str, list[R.RunRecord]] = {}
    for r in sorted(records, key=lambda r: r.start_time):
        groups.setdefault(group_key(r), []).append(r)
    arms = [Arm(label, _newest_per_seed(rs)) for label, rs in groups.items()]
    return [a for a in arms if a.runs]


def _parents(client: Any, flt: str) -> list[R.RunRecord]:
    base = f"tags.`{R.TAG_ROLE}` = 'parent'"
    return [R.RunRecord.from_run(r) for r in R._search(client, f"{base} and {flt}" if flt else base, max_results=5000)]


def study_arms(client: Any, study: str, where: str | None = None) -> list[Arm]:
    flt = f"tags.`{TAG_STUDY}` = {R._quote(study)}" + (f" and {where}" if where else "")
    records = _search_or_usage(client, flt, f"--study {study}")
    if not records:
        known = sorted({r.tags.get(TAG_STUDY, "") for r in _parents(client, "")} - {""})
        hint = f"studies in this store: {', '.join(known)}" if known else "this store has no study runs"
        raise UsageError(f"--study {study}: no cell runs tagged {TAG_STUDY}={study} ({hint})")
    arms = grouped(records)
    if not arms:
        raise UsageError(f"--study {study}: no FINISHED cell runs yet (run the study, or wait for it to finish)")
    return arms


def where_arms(client: Any, where: str) -> list[Arm]:
    records = _search_or_usage(client, where, f"--where {where!r}")
    arms = grouped(records)
    if not arms:
        raise UsageError(f"--where {where!r}: no FINISHED parent runs match (check the filter with `mlflow runs list`)")
    return arms


def _search_or_usage(client: Any, flt: str, what: str) -> list[R.RunRecord]:
    from mlflow.exceptions import MlflowException

    try:
        return _parents(client, flt)
    except MlflowException as exc:
        raise UsageError(f"{what}: not a valid MLflow filter ({exc.message.splitlines()[0]}; "
                         "e.g. \"tags.`rlreg.arm` = 'egpo'\" or \"params.train.optim.lr = '1e-06'\")") from None


def ref_arms(client: Any, refs: Sequence[str], pinned: dict[str, str]) -> list[Arm]:
    return [Arm("", [R.resolve(client, ref, pinned.get(ref))]) for ref in refs]


def label_arms(arms: list[Arm]) -> None:
    """Arm labels: a study arm keeps its name; a single run its spec name, with ``@<id prefix>``
    when two single-run arms share it."""
    names = [a.label or a.runs[0].spec or a.runs[0].run_name or a.runs[0].run_id[:8] for a in arms]
    for arm, name in zip(arms, names):
        clash = names.count(name) > 1 and len(arm.runs) == 1
        arm.label = f"{name}@{arm.runs[0].run_id[:8]}" if clash else name
