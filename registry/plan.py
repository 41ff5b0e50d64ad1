"""What a run would do, without running: per stage its cache key and whether it is a cache hit.

A stage whose upstream would run has no real key yet (its inputs' digests are unknown). Its key is
then computed from placeholders (``pending:<upstream key>``): not a cache key, but two cells whose
stages would compute the same thing get the same provisional key, so a study's dry run can say
"computed once, by cell X" (``pending`` carries those keys across cells)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import cache
from registry.loader import LoadedSpec, project_root
from registry.stages import STAGES


@dataclass
class StagePlan:
    stage: str
    runner: str
    description: str
    status: str
    """``hit`` (reuses ``hit_run_id``), ``runs``, ``shared`` (an earlier cell in the same plan runs
    it), or ``not cached`` (left out by ``--stages`` but not in the cache: the run would refuse)."""
    key: str
    provisional: bool
    """True when ``key`` was computed from placeholders (an upstream stage runs first)."""
    hit_run_id: str | None = None
    shared_with: str | None = None

    def mark(self) -> str:
        if self.status == "hit":
            return f"cache hit (run {self.hit_run_id})"
        if self.status == "shared":
            return f"shared: computed once, by {self.shared_with}"
        if self.status == "not cached":
            return "not selected and not cached (run it first, or add it to --stages)"
        return "runs"

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "runner": self.runner, "status": self.status,
                "cache_key": None if self.provisional else self.key, "hit_run_id": self.hit_run_id,
                "shared_with": self.shared_with}


def open_store_if_present() -> Any | None:
    """A client on the configured store, or None when a sqlite store does not exist yet (a dry
    run creates nothing)."""
    from registry.store import _sqlite_file, ensure_store, tracking_uri

    db = _sqlite_file(tracking_uri())
    if db is not None and not db.exists():
        return None
    return ensure_store()


def plan(loaded: LoadedSpec, only: list[str] | None = None, *, client: Any = None,
         stage_specs: dict[str, Any] | None = None, pending: dict[str, str] | None = None,
         label: str = "", root: Path | None = None) -> list[StagePlan]:
    """Plan ``loaded``'s stages against the store ``client`` (None: nothing is cached)."""
    from registry.pipeline import _find_ref, select_stages
    from registry.store import all_experiment_ids

    root = root or project_root()
    stage_specs = stage_specs or {}
    exp_ids = all_experiment_ids(client) if client is not None else []

    def ref_digest(ref: str) -> str:
        if client is None:
            return "unresolved"
        try:
            return _find_ref(ref, client)[1]
        except Exception:
            return "unresolved"

    digests: dict[str, str] = {}
    provisional = False
    out: list[StagePlan] = []
    selected = select_stages(loaded, only)
    planned = loaded.spec.stages()
    # --stages: earlier stages that are not selected come from the cache (as Pipeline.run does)
    for stage in planned[: planned.index(selected[-1]) + 1] if selected else []:
        spec = stage_specs.get(stage, loaded.spec)
        key, _ = cache.stage_key(stage, spec, digests, root, ref_digest)
        runner = STAGES[stage].runner(spec)
        entry = StagePlan(stage, runner, STAGES[stage].description, "runs", key, provisional)
        hit = cache.find_cached(client, exp_ids, key) if client is not None and not provisional else None
        if hit is not None:
            entry.status, entry.hit_run_id = "hit", hit.run_id
            digests.update({f"{stage}.{n}": d for n, d in hit.digests.items()})
        elif stage not in selected:
            entry.status = "not cached"  # the run would stop here: --stages needs it cached
            provisional = True
        else:
            if pending is not None:
                if key in pending:
                    entry.status, entry.shared_with = "shared", pending[key]
                else:
                    pending[key] = label
            for name in _output_names(stage):
                digests[f"{stage}.{name}"] = f"pending:{key}"
            provisional = True
        out.append(entry)
    return out


def _output_names(stage: str) -> list[str]:
    # Placeholders only need to be stable per upstream key; one per stage is enough.
    return ["*"]


def dry_run_report(loaded: LoadedSpec, only: list[str] | None, echo: Any, as_json: bool) -> None:
    """``rlreg run --dry-run``: each stage with its cache mark, then the runners' descriptions
    (e.g. the verl launch command); ``--json`` prints the same as one JSON object on stdout."""
    import json

    import click

    from registry.stages import load_runner

    steps = plan(loaded, only, client=open_store_if_present())
    described: dict[str, str] = {}
    details: dict[str, Any] = {}
    for step in steps:
        echo(f"  {step.stage:<9} {step.runner}  ({step.description})  → {step.mark()}")
        runner = load_runner(step.stage, loaded.spec)
        section = getattr(loaded.spec, STAGES[step.stage].section)
        describe = getattr(runner, "describe", None)
        if describe is not None:
            described[step.stage] = describe(section, loaded.spec)
        describe_json = getattr(runner, "describe_json", None)  # the runner contract's data form
        if as_json and describe_json is not None:
            details[step.stage] = describe_json(section, loaded.spec)
    for stage, text in described.items():
        echo(f"\n--- {stage} ---")
        echo(text)
    if as_json:
        click.echo(json.dumps({"spec": loaded.name, "chain": [p.stem for p in loaded.chain],
                               "overrides": list(getattr(loaded, "overrides", []) or []),
                               "stages": [{**s.to_json(), "describe": described.get(s.stage),
                                           "details": details.get(s.stage)} for s in steps]},
                              indent=2, default=str))
