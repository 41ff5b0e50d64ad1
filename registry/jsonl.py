"""Parse JSON Lines text with errors that name the source and line (runners and analysis share it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from registry.errors import InputDataError


def iter_jsonl(text: str, source: str, fix: str = "fix or remove the line") -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line; a bad line raises InputDataError naming it
    and ``fix``."""
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield line_no, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{source}: line {line_no}: not valid JSON ({exc.msg}); {fix}") from exc


def parse_jsonl(text: str, source: str, fix: str = "fix or remove the line") -> list[Any]:
    """One JSON value per non-blank line (see ``iter_jsonl``)."""
    return [value for _, value in iter_jsonl(text, source, fix)]
