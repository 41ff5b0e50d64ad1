"""Resolve what `rlreg diff` compares: a spec name/path, or an MLflow run id (its spec.yaml)."""

from __future__ import annotations

import re
from typing import Any

from registry.errors import UsageError

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def resolved_spec_dict(ref: str) -> dict[str, Any]:
    from registry.loader import load_spec, specs_dir

    if RUN_ID_RE.match(ref) and not (specs_dir() / f"{ref}.yaml").exists():
        try:
            from analysis.runs import spec_from_run
        except ImportError as exc:  # analysis is part of this package; only a broken checkout lands here
            raise UsageError(f"cannot read run {ref}: {exc}") from None
        return spec_from_run(ref)
    return load_spec(ref).spec.model_dump(mode="json")
