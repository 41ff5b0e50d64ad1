"""Flatten nested specs into MLflow params: dotted keys, secrets redacted (registry/redact.py),
values truncated."""

from __future__ import annotations

import json
from typing import Any, Iterator

from registry.redact import REDACTED, is_secret_key, redact_obj, redact_text

MAX_PARAM_CHARS = 6000
__all__ = ["REDACTED", "flatten", "format_value", "is_secret_key", "param_items"]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``. Lists stay values (JSON-encoded later)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.update(flatten(v, key))
    else:
        out[prefix] = obj
    return out


def format_value(value: Any) -> str:
    if isinstance(value, str):
        s = value
    elif value is None:
        s = "null"
    elif isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, (int, float)):
        s = repr(value)
    else:
        s = json.dumps(redact_obj(value), ensure_ascii=False, sort_keys=True, default=str)
    return s if len(s) <= MAX_PARAM_CHARS else s[: MAX_PARAM_CHARS - 3] + "..."


def param_items(flat: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in flat.items():
        safe_key = "".join(c if (c.isalnum() or c in "_-. :/") else "_" for c in key)[:250]
        secret = is_secret_key(key) and value not in (None, "", {}, [])
        yield safe_key, (REDACTED if secret else redact_text(format_value(value)))
