"""Which stages a run computes: ``--stages`` (a subset; the unselected earlier stages come from the
cache) and ``--force`` (all stages, or the named ones, recomputed from scratch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import cache
from registry.errors import UsageError
from registry.store import all_experiment_ids

if TYPE_CHECKING:
    from registry.pipeline import Pipeline


def parse_force(value: str | None) -> bool | list[str]:
    """``--force`` alone → every stage; ``--force train,eval`` → those stages; absent → none."""
    if value is None:
        return False
    if value == FORCE_ALL:
        return True
    return [s.strip() for s in value.split(",") if s.strip()]


FORCE_ALL = "\0all"
"""The value click gives a bare ``--force`` (a name no stage can have)."""


def is_stage_list(value: str) -> bool:
    """``train`` or ``train,eval`` (stage names), as opposed to a spec name after a bare ``--force``."""
    from registry.stages import STAGES

    names = [s.strip() for s in value.split(",") if s.strip()]
    return bool(names) and all(n in STAGES for n in names)


def reused_stages(planned: list[str], only: list[str] | None) -> list[str]:
    """The stages ``--stages`` leaves out that come before a selected one (taken from the cache)."""
    chosen = [s for s in planned if only and s in only]
    return [s for s in planned[: planned.index(chosen[-1])] if s not in chosen] if chosen else []


def check_force(force: bool | list[str], selected: list[str]) -> None:
    if isinstance(force, list):
        wrong = [s for s in force if s not in selected]
        if wrong or not force:
            raise UsageError(
                f"--force {','.join(wrong)}: not among the stages this run computes "
                f"({', '.join(selected) or 'none'}) (name stages of the spec's pipeline, e.g. "
                f"--force {selected[-1] if selected else 'train'}; or add them to --stages)"
            )


def leading_cached(pipeline: "Pipeline", stages: list[str]) -> dict[str, cache.CachedStage]:
    """Cache hits for the unselected stages before the first selected one, found before the parent
    run starts, so a missing one is a usage error rather than a FAILED run."""
    hits: dict[str, cache.CachedStage] = {}
    digests: dict[str, str] = {}
    for j, stage in enumerate(stages):
        if pipeline._selected(stage):
            break
        key, _ = cache.stage_key(stage, pipeline.spec, digests, pipeline.root, pipeline.ref_digest)
        hit = cache.find_cached(pipeline.client, all_experiment_ids(pipeline.client), key)
        if hit is None:
            rest = stages[j:]
            todo = rest[: next((k for k, s in enumerate(rest) if pipeline._selected(s)), len(rest))]
            raise UsageError(not_cached(pipeline.spec.name, pipeline.only, stage, todo))
        hits[stage] = hit
        digests.update({f"{stage}.{n}": d for n, d in hit.digests.items()})
    return hits


def not_cached(spec_name: str, only: list[str] | None, stage: str, todo: list[str]) -> str:
    return (f"--stages {','.join(only or [])}: stage '{stage}' is not selected and has no cached result "
            f"for this spec (run it first: `rlreg run {spec_name} --stages {','.join(todo or [stage])}`, "
            "or run without --stages: cached stages are reused)")
