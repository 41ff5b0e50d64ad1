"""Flatten nested specs into MLflow params: dotted keys, secrets redacted, values truncated."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

MAX_PARAM_CHARS = 6000
SECRET_WORDS = {"token", "password", "passwd", "secret", "credential", "credentials", "apikey"}
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
    """Judged on the words of the last key component: `hf_token`, `OPENAI_API_KEY`, `db.password`
    are secrets; `max_new_tokens` and `tokenizer` are not."""
    last = key.rsplit(".", 1)[-1].lower()
    words = [w for w in re.split(r"[_\-\s]+", last) if w]
    joined = "".join(words)
    return bool(SECRET_WORDS & set(words)) or "apikey" in joined or "secretkey" in joined


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
