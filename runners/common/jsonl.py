"""Parse JSON Lines text with errors that name the source and line."""

from __future__ import annotations

import json
from typing import Any

from registry.errors import InputDataError


def parse_jsonl(text: str, source: str, fix: str = "fix or remove the line") -> list[Any]:
    """One JSON value per non-blank line; a bad line raises InputDataError naming it and ``fix``."""
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{source}: line {line_no}: not valid JSON ({exc.msg}); {fix}") from exc
    return rows
