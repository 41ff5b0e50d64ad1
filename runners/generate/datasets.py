"""Prompt datasets for the generate stage: JSON (a list, or {"data": [...]}), JSONL or parquet,
local files only. Each record becomes a :class:`PromptRecord` (chat messages to continue, tools, a
reference response if there is one, and the original fields, JSON-safe).

Field detection (unless named in the spec): messages from ``messages`` (or a ``prompt`` that is a
list of messages, as in the convert stage's verl parquet); else a prompt text from the first of
PROMPT_FIELDS; reference response from RESPONSE_FIELDS, a final assistant message, or verl's
``reward_model.ground_truth``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InputDataError
from registry.jsonl import parse_jsonl

PROMPT_FIELDS = ("prompt", "question", "instruction", "problem", "input", "query", "text")
RESPONSE_FIELDS = ("response", "answer", "output", "completion", "solution", "ground_truth")
MESSAGE_FIELDS = ("messages", "conversations", "prompt")


@dataclass
class PromptRecord:
    index: int
    messages: list[dict[str, Any]]
    """The conversation to continue (ends with a user or tool turn)."""
    tools: list[dict] | None
    reference: str | None
    original: dict[str, Any]
    """Every field of the input record (numpy values turned into JSON-able ones)."""


def load_records(path: Path) -> list[dict[str, Any]]:
    """The raw records of a JSON/JSONL/parquet file, as JSON-safe dicts."""
    if not path.is_file():
        raise InputDataError(f"{path}: dataset file does not exist (set generate.dataset to a JSON/JSONL/parquet file)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:
            raise InputDataError(f"{path}: cannot read parquet ({exc})") from exc
        return [_json_safe(r) for r in frame.to_dict(orient="records")]
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl" or (suffix != ".json" and not text.lstrip().startswith(("[", "{\"data\""))):
        return parse_jsonl(text, str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise InputDataError(f"{path}: expected a JSON list of records (or JSONL, one record per line)")
    return data


def to_prompt_records(
    records: list[Any], source: Path, *, messages_field: str | None = None,
    prompt_field: str | None = None, response_field: str | None = None,
) -> list[PromptRecord]:
    return [_one(i, r, source, messages_field, prompt_field, response_field) for i, r in enumerate(records)]


def _one(index, record, source, messages_field, prompt_field, response_field) -> PromptRecord:
    where = f"{source}: record {index}"
    if not isinstance(record, dict):
        raise InputDataError(f"{where}: expected an object with a prompt, got {type(record).__name__}")
    reference = None
    messages = None
    if messages_field or not prompt_field:
        messages = _messages_from(record, messages_field, where)
    if messages is not None and messages and messages[-1].get("role") == "assistant":
        reference = _text(messages[-1].get("content"))
        messages = messages[:-1]
    if messages is None:
        field = prompt_field or next((f for f in PROMPT_FIELDS if isinstance(record.get(f), str)), None)
        if field is None or not isinstance(record.get(field), str):
            named = f"field '{prompt_field}' is missing or not text" if prompt_field else "no prompt field found"
            raise InputDataError(
                f"{where}: {named} (fields: {sorted(record)}); name it with generate.prompt_field or "
                f"generate.messages_field (auto-detected: {', '.join(MESSAGE_FIELDS + PROMPT_FIELDS)})"
            )
        messages = [{"role": "user", "content": record[field]}]
    if not messages:
        raise InputDataError(f"{where}: the conversation is empty once the final assistant answer is removed")
    reference = _reference(record, response_field, where) or reference
    return PromptRecord(index, messages, _tools(record), reference, record)


def _messages_from(record: dict, field: str | None, where: str) -> list[dict] | None:
    candidates = [field] if field else list(MESSAGE_FIELDS)
    for name in candidates:
        value = record.get(name)
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            bad = [i for i, m in enumerate(value) if "role" not in m]
            if bad:
                raise InputDataError(f"{where}: {name}[{bad[0]}] has no 'role' (expected OpenAI-style messages)")
            return [{"role": m["role"], "content": _text(m.get("content")), **_extra_keys(m)} for m in value]
        if field:
            raise InputDataError(f"{where}: field '{field}' is not a list of messages (generate.messages_field)")
    return None


def _extra_keys(message: dict) -> dict:
    return {k: v for k, v in message.items() if k in ("tool_calls", "name", "tool_call_id") and v is not None}


def _reference(record: dict, field: str | None, where: str) -> str | None:
    if field:
        if field not in record:
            raise InputDataError(f"{where}: response field '{field}' is missing (fields: {sorted(record)})")
        return _text(record[field])
    for name in RESPONSE_FIELDS:
        if isinstance(record.get(name), str):
            return record[name]
    reward_model = record.get("reward_model")
    if isinstance(reward_model, dict) and isinstance(reward_model.get("ground_truth"), str):
        return reward_model["ground_truth"]
    return None


def _tools(record: dict) -> list[dict] | None:
    tools = record.get("tools")
    if tools is None and isinstance(record.get("extra_info"), dict):
        tools = record["extra_info"].get("tools")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            return None
    return tools if isinstance(tools, list) and tools else None


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def _json_safe(value: Any) -> Any:
    """numpy arrays/scalars (pandas' parquet rows) → lists/Python scalars, recursively."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):  # a missing parquet cell
        return None
    return value
