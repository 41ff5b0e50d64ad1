"""``rlreg verify``: re-hash cached stage outputs in full, ignoring their stat fingerprints.

A cache hit trusts an output whose stat fingerprint is unchanged (registry/cache.py). What a
fingerprint cannot see — a bit flipped by the disk, a rewrite that restored every timestamp — this
finds: each recorded output is read again and compared with its recorded sha256. An intact output
gets a fresh fingerprint; a changed one marks every run of that cache key that records the same
path ``rlreg.corrupt``, which the cache never serves again (the stage recomputes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from registry import cache
from registry.errors import UsageError

STAGE_RUNS = "tags.`rlreg.role` = 'stage' and attributes.status = 'FINISHED'"


@dataclass
class Checked:
    run_id: str
    stage: str
    output: str
    path: str
    status: str
    """``ok``, ``changed`` (content differs from the recorded digest) or ``missing``."""


@click.command("verify")
@click.argument("runs", nargs=-1)
@click.option("--all", "all_runs", is_flag=True, help="Every FINISHED stage run in the store.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(runs: tuple[str, ...], all_runs: bool, as_json: bool) -> None:
    """Re-hash the outputs of RUN… (stage runs, or parent runs: their stages) or --all; exit 1 if
    any output changed since it was recorded (those runs are marked and never served again)."""
    from registry.store import ensure_store

    if bool(runs) == all_runs:
        raise UsageError("verify: give run ids or --all (e.g. `rlreg verify --all`)")
    client = ensure_store()
    results = verify_runs(client, _all_stage_runs(client) if all_runs else _named_runs(client, runs))
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            click.echo(f"{r.status:<8} {r.run_id}  {r.stage}.{r.output}  {r.path}")
        counts = {s: sum(r.status == s for r in results) for s in ("ok", "changed", "missing")}
        click.echo(f"{len(results)} outputs: {counts['ok']} ok, {counts['changed']} changed "
                   f"(marked {cache.TAG_CORRUPT}), {counts['missing']} missing")
    if any(r.status == "changed" for r in results):
        raise SystemExit(1)


def verify_runs(client: Any, runs: list[Any]) -> list[Checked]:
    """Check every recorded output of ``runs``; each path is hashed once, however many runs share it."""
    seen: dict[tuple[str, str], tuple[bool, str | None]] = {}
    results = []
    for run in runs:
        recorded = cache.recorded_outputs(run) or {}
        stage = run.data.tags.get("rlreg.stage", "?")
        refreshed, changed = dict(recorded), []
        for name, entry in recorded.items():
            path = Path(entry["path"])
            if not path.exists():
                results.append(Checked(run.info.run_id, stage, name, str(path), "missing"))
                continue
            memo = (str(path), entry["digest"])
            if memo not in seen:
                try:
                    seen[memo] = cache.check_output(path, entry["digest"], None)  # None: always re-hash
                except OSError:  # removed or unreadable while hashing
                    results.append(Checked(run.info.run_id, stage, name, str(path), "missing"))
                    continue
            intact, fingerprint = seen[memo]
            results.append(Checked(run.info.run_id, stage, name, str(path), "ok" if intact else "changed"))
            if not intact:
                changed.append(name)
            elif fingerprint and fingerprint != entry.get("fingerprint"):
                refreshed[name] = {**entry, "fingerprint": fingerprint}
        if changed:
            _mark_corrupt(client, run, recorded, changed)
        elif refreshed != recorded:
            client.set_tag(run.info.run_id, cache.TAG_OUTPUTS, json.dumps(refreshed, sort_keys=True))
    return results


def _mark_corrupt(client: Any, run: Any, recorded: dict[str, Any], changed: list[str]) -> None:
    """Mark this run and every run of its cache key that records the same (changed) paths: cache
    hits copy the origin's outputs tag, so they would otherwise still be served."""
    paths = {recorded[n]["path"] for n in changed}
    key = run.data.tags.get(cache.TAG_KEY)
    from registry.store import all_experiment_ids

    others = client.search_runs(all_experiment_ids(client), f"tags.`{cache.TAG_KEY}` = '{key}'",
                                max_results=1000) if key else []
    for other in [run, *others]:
        theirs = cache.recorded_outputs(other) or {}
        names = sorted(n for n, e in theirs.items() if e.get("path") in paths)
        if names:
            client.set_tag(other.info.run_id, cache.TAG_CORRUPT, json.dumps(names))


def _all_stage_runs(client: Any) -> list[Any]:
    from registry.store import all_experiment_ids

    ids, runs, token = all_experiment_ids(client), [], None
    while True:
        page = client.search_runs(ids, STAGE_RUNS, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _named_runs(client: Any, run_ids: tuple[str, ...]) -> list[Any]:
    from mlflow.exceptions import MlflowException

    runs = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise UsageError(f"verify: run '{run_id}' not found in the store (give a full run id; `rlreg verify --all` checks every run)") from None
        if run.data.tags.get("rlreg.role") == "stage":
            runs.append(run)
            continue
        runs.extend(client.search_runs([run.info.experiment_id],
                                       f"tags.`mlflow.parentRunId` = '{run_id}' and {STAGE_RUNS}", max_results=1000))
    return runs
