"""Run ids where a run id is accepted (compare, diff, report): the full 32 hex digits or a unique
prefix of at least 6 (``rlreg runs`` prints 8). A prefix matching several runs is an error that
lists them; a spec of the same name wins over a prefix."""

from __future__ import annotations

import re
from typing import Any

from registry.errors import UsageError

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
PREFIX_RE = re.compile(r"^[0-9a-f]{6,31}$")
MIN_PREFIX = 6


def is_run_id(ref: str) -> bool:
    return bool(RUN_ID_RE.match(ref))


def looks_like_prefix(ref: str) -> bool:
    return bool(PREFIX_RE.match(ref))


def resolve_run_id(client: Any, ref: str) -> str:
    """The run id ``ref`` names: itself when complete, else the one run whose id starts with it."""
    if is_run_id(ref):
        return ref
    if not looks_like_prefix(ref):
        raise UsageError(f"'{ref}' is not a run id (32 hex digits, or a unique prefix of at least {MIN_PREFIX})")
    matches = prefix_matches(client, ref)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run id starts with '{ref}' (list runs with `rlreg runs`)")
    shown = ", ".join(m[: len(ref) + 4] + "…" for m in matches[:5]) + (", …" if len(matches) > 5 else "")
    raise UsageError(f"run id prefix '{ref}' is ambiguous: {len(matches)} runs match ({shown}); type more characters")


def prefix_matches(client: Any, prefix: str, limit: int = 50) -> list[str]:
    from mlflow.entities import ViewType

    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL, max_results=50000)]
    if not exp_ids:
        return []
    runs = client.search_runs(exp_ids, filter_string=f"attributes.run_id LIKE '{prefix}%'",
                              run_view_type=ViewType.ALL, max_results=limit)
    return sorted(r.info.run_id for r in runs)


def run_ref(client: Any, ref: str, is_spec_name: Any = None) -> str | None:
    """For commands taking "a spec name or a run id": the run id ``ref`` names, or None when it
    names a spec (``is_spec_name(ref)`` true, or not hex-shaped at all)."""
    if is_run_id(ref):
        return ref
    if not looks_like_prefix(ref) or (is_spec_name is not None and is_spec_name(ref)):
        return None
    return resolve_run_id(client, ref)
