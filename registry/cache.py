"""The stage cache. A stage's key = sha256(its spec payload, its inputs' digests, its runner's
source version). A FINISHED stage run with that key whose recorded outputs still exist with the
same digests is reused instead of re-running the stage.

Checking a digest means reading every byte (minutes for a multi-GB checkpoint), so each output also
records a stat fingerprint (``hashing.fingerprint_path``): a hit whose fingerprint still matches is
served without reading; any other hit is re-hashed in full, and re-fingerprinted when intact.
``rlreg verify`` re-hashes regardless and marks runs whose outputs no longer match
(``rlreg.corrupt``), which the cache then never serves. Trust model: docs/operations.md."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from registry import hashing
from registry.hashing import code_version, sha256_json
from registry.stages import STAGES, stage_spec_payload

if TYPE_CHECKING:
    from registry.spec import Spec

TAG_KEY = "rlreg.cache_key"
TAG_OUTPUTS = "rlreg.outputs"
TAG_HEADLINE = "rlreg.headline"
TAG_HIT = "rlreg.cache_hit"
TAG_CORRUPT = "rlreg.corrupt"
"""Set by ``rlreg verify`` on a run whose recorded outputs no longer match their digests."""


def stage_key(
    stage: str,
    spec: "Spec",
    input_digests: dict[str, str],
    project_root: Path | None = None,
    ref_digest: "Callable[[str], str] | None" = None,
) -> tuple[str, dict[str, Any]]:
    """The cache key and the payload it hashes (logged with the run for transparency).

    Files the spec names by path (a convert ``data.source``, an eval dataset…) are hashed by
    content through the runner's optional ``external_inputs(section, project_root)``, so a file
    edited in place is never a stale cache hit."""
    module = STAGES[stage].runner(spec)
    inputs = dict(input_digests)
    if project_root is not None:
        inputs.update(external_digests(stage, spec, project_root))
    if ref_digest is not None:
        # `@spec` references name another spec's output: key on what they point at now, so a
        # rerun of the referenced spec invalidates this stage.
        for ref in sorted(spec_refs(getattr(spec, STAGES[stage].section))):
            inputs[f"ref:{ref}"] = ref_digest(ref)
    payload = {
        "stage": stage,
        "spec": stage_spec_payload(stage, spec),
        "inputs": dict(sorted(inputs.items())),
        "code": {module: code_version(module)},
    }
    return sha256_json(payload), payload


def spec_refs(section: Any) -> set[str]:
    """Every ``@spec[:stage.output]`` string in a stage section."""
    found: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, str) and v.startswith("@"):
            found.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    walk(section.model_dump(mode="json") if section is not None else None)
    return found


def external_digests(stage: str, spec: "Spec", project_root: Path) -> dict[str, str]:
    from registry.digest_memo import memo_digest
    from registry.stages import load_runner
    from registry.store import stage_store_root

    out = {}
    if "reward" in STAGES[stage].reads and getattr(spec.reward, "path", None):
        # a custom reward file decides the scores: key on its bytes (the spec names only its path)
        from runners.reward_file import custom_path

        reward_path = custom_path(spec.reward, project_root)
        out["external:reward.path"] = (memo_digest(reward_path, stage_store_root(project_root) / "fingerprints")
                                       if reward_path.exists() else "missing")
    hook = getattr(load_runner(stage, spec), "external_inputs", None)
    if hook is None:
        return out
    for name, path in hook(getattr(spec, STAGES[stage].section), project_root).items():
        # a missing file is the runner's error to report, with its own message
        out[f"external:{name}"] = memo_digest(path, stage_store_root(project_root) / "fingerprints") if Path(path).exists() else "missing"
    return out


@dataclass
class CachedStage:
    run_id: str
    outputs: dict[str, Path]
    digests: dict[str, str]
    metrics: dict[str, float]
    fingerprints: dict[str, str | None] = field(default_factory=dict)


def find_cached(client: Any, experiment_ids: list[str], key: str) -> CachedStage | None:
    """Newest FINISHED stage run with this key whose outputs are intact, or None."""
    if not experiment_ids:
        return None
    runs = client.search_runs(
        experiment_ids=experiment_ids,
        filter_string=f"tags.`{TAG_KEY}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        hit = _usable(run, client)
        if hit is not None:
            return hit
    return None


def recorded_outputs(run: Any) -> dict[str, dict[str, Any]] | None:
    """``{name: {"path", "digest", "fingerprint"?}}`` from a stage run's tag (None if unreadable)."""
    try:
        recorded = json.loads(run.data.tags.get(TAG_OUTPUTS, ""))
    except json.JSONDecodeError:
        return None
    return recorded if isinstance(recorded, dict) else None


def check_output(path: Path, digest: str, fingerprint: str | None) -> tuple[bool, str | None]:
    """(intact, fingerprint to record). Cheap when the recorded fingerprint still matches; else a
    full re-hash, and a fresh fingerprint (taken before reading) when the content is intact."""
    if fingerprint is not None and hashing.fingerprint_path(path)[0] == fingerprint:
        return True, fingerprint
    actual, fresh = hashing.digest_and_fingerprint(path)
    return (True, fresh) if actual == digest else (False, None)


def verified(run: Any, client: Any = None) -> CachedStage | None:
    """The run's recorded outputs if they all exist unchanged (what a hit or an ``@spec``
    reference may use), else None."""
    return _usable(run, client)


def _usable(run: Any, client: Any = None) -> CachedStage | None:
    tags = run.data.tags
    if tags.get(TAG_CORRUPT):
        return None
    recorded = recorded_outputs(run)
    try:
        metrics = json.loads(tags.get(TAG_HEADLINE, "{}"))
    except json.JSONDecodeError:
        return None
    if recorded is None:
        return None
    outputs, digests, fingerprints = {}, {}, {}
    for name, entry in recorded.items():
        path = Path(entry["path"])
        if not path.exists():
            return None  # produced on another machine or cleaned up: recompute
        try:
            intact, fingerprint = check_output(path, entry["digest"], entry.get("fingerprint"))
        except OSError:  # removed or unreadable while checking
            return None
        if not intact:
            return None
        outputs[name] = path
        digests[name] = entry["digest"]
        fingerprints[name] = fingerprint
    if client is not None and any(fingerprints[n] != recorded[n].get("fingerprint") for n in recorded):
        # re-hashed and intact: record the fresh fingerprint so the next hit is cheap again
        try:
            client.set_tag(run.info.run_id, TAG_OUTPUTS, outputs_tag(outputs, digests, fingerprints))
        except Exception:  # best effort: a store that refuses the write only costs the next hit a re-hash
            pass
    origin = tags.get(TAG_HIT) or run.info.run_id
    return CachedStage(run_id=origin, outputs=outputs, digests=digests, metrics=metrics, fingerprints=fingerprints)


def outputs_tag(outputs: dict[str, Path], digests: dict[str, str],
                fingerprints: dict[str, str | None] | None = None) -> str:
    entries: dict[str, dict[str, Any]] = {}
    for n, p in outputs.items():
        entries[n] = {"path": str(p), "digest": digests[n]}
        if fingerprints and fingerprints.get(n):
            entries[n]["fingerprint"] = fingerprints[n]
    return json.dumps(entries, sort_keys=True)


def host() -> str:
    return socket.gethostname()
