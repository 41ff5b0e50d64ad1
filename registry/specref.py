"""Resolve what `rlreg diff` compares: a spec name/path, or an MLflow run id (its spec.yaml)."""

from __future__ import annotations

import re
from typing import Any, Sequence

from registry.errors import UsageError

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def resolved_spec_dict(ref: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved spec of ``ref`` with command-line ``overrides`` applied (to a run's recorded
    spec too: `rlreg diff RUN RUN seed=2`)."""
    from registry.loader import load_spec, specs_dir
    from registry.runref import looks_like_prefix

    if (RUN_ID_RE.match(ref) or looks_like_prefix(ref)) and not (specs_dir() / f"{ref}.yaml").exists():
        try:
            from analysis.runs import get_client, spec_from_run
        except ImportError as exc:  # analysis is part of this package; only a broken checkout lands here
            raise UsageError(f"cannot read run {ref}: {exc}") from None
        from registry.runref import resolve_run_id

        client = get_client()
        recorded = spec_from_run(resolve_run_id(client, ref), client)
        return _override_recorded(ref, recorded, overrides) if overrides else recorded
    return load_spec(ref, overrides=list(overrides)).spec.model_dump(mode="json")


def _override_recorded(ref: str, recorded: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    from pathlib import Path

    from pydantic import ValidationError

    from registry.errors import SpecError
    from registry.overrides import apply_overrides, parse_overrides
    from registry.spec import Spec
    from registry.validation import format_validation_error

    raw, origins = apply_overrides(recorded, parse_overrides(overrides))
    try:
        return Spec.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        problems = format_validation_error(exc, Path(f"run {ref}"), origins)
        raise SpecError("\n".join(problems), problems) from None
