"""Flatten nested specs into MLflow params: dotted keys, secrets redacted, values truncated."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

MAX_PARAM_CHARS = 6000
SECRET_RE = re.compile(r"(token|api[_-]?key|password|passwd|secret|credential)", re.IGNORECASE)
REDACTED = "***"


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


def is_secret_key(key: str) -> bool:
    # Only the last component: `max_new_tokens` is not a secret, `hf_token` is.
    last = key.rsplit(".", 1)[-1]
    return bool(SECRET_RE.search(last)) and not last.endswith(("tokens", "_length", "_len"))


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
        s = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return s if len(s) <= MAX_PARAM_CHARS else s[: MAX_PARAM_CHARS - 3] + "..."


def param_items(flat: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for key, value in flat.items():
        safe_key = "".join(c if (c.isalnum() or c in "_-. :/") else "_" for c in key)[:250]
        yield safe_key, (REDACTED if is_secret_key(key) and value not in (None, "") else format_value(value))
