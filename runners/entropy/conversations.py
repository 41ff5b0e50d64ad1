"""Tool-using conversations to roll out: read from the convert stage's parquet or a JSONL file.

A conversation is cut at its first assistant turn: what comes before (system, user) is the
prompt the model continues. The tool turns that follow later in the record are kept per round,
so ``replay`` can answer the model's r-th tool call with the dataset's own r-th tool answer.

Each conversation also gets a ``record_type`` from the record's structure, so entropy can be read
by kind of record: ``with_tool_turn`` (the record has a tool turn before its final answer: the
model was trained to read one), else by the tool calls of the reference answer (the parquet's
ground truth, or a JSON record's last assistant turn): ``single_call``, ``multi_call``
(several calls in one turn, no tool turn between them), ``no_call``; ``unknown`` when the record
holds no reference answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import InputDataError
from runners.common.tools import RecordedRound, call_names, recorded_rounds

ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class Conversation:
    sample_idx: int
    prompt: list[dict]
    """Messages before the first assistant turn (what the model continues)."""
    tools: list[dict] | None
    recorded: list[RecordedRound] = field(default_factory=list)
    """``recorded[r - 1]`` = the dataset's tool round r (for ``replay``)."""
    record_type: str = "unknown"
    """``with_tool_turn``, ``single_call``, ``multi_call``, ``no_call`` or ``unknown`` (module doc)."""

    def recorded_round(self, round_idx: int) -> RecordedRound | None:
        return self.recorded[round_idx - 1] if 1 <= round_idx <= len(self.recorded) else None


def load_conversations(path: Path, limit: int | None = None) -> list[Conversation]:
    """Read up to ``limit`` conversations, in file order, from a verl parquet or a JSON/JSONL file
    of ``{"messages": [...], "tools": [...]}`` records."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: entropy dataset not found (set entropy.dataset to a JSONL/parquet file, "
                             "or add the convert stage to the pipeline)")
    if path.suffix == ".parquet":
        rows = _parquet_rows(path, limit)
    else:
        rows = _json_rows(path, limit)
    convs = [_conversation(path, where, i, messages, tools, reference)
             for i, (where, messages, tools, reference) in enumerate(rows)]
    if not convs:
        raise InputDataError(f"{path}: no conversations in the file (it must hold at least one record)")
    return convs


def _parquet_rows(path: Path, limit: int | None):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "prompt" not in table.column_names:
        raise InputDataError(
            f"{path}: no `prompt` column (expected the convert stage's verl parquet with columns "
            f"prompt, reward_model, extra_info; found {table.column_names})"
        )
    if limit is not None:
        table = table.slice(0, limit)
    prompts = table.column("prompt").to_pylist()
    extras = table.column("extra_info").to_pylist() if "extra_info" in table.column_names else [None] * len(prompts)
    rewards = table.column("reward_model").to_pylist() if "reward_model" in table.column_names else [None] * len(prompts)
    for i, (prompt, extra, reward) in enumerate(zip(prompts, extras, rewards)):
        tools = (extra or {}).get("tools") if isinstance(extra, dict) else None
        reference = reward.get("ground_truth") if isinstance(reward, dict) else None
        yield f"row {i}", prompt, tools, {"role": "assistant", "content": reference} if reference else None


def _json_rows(path: Path, limit: int | None):
    with path.open(encoding="utf-8") as fh:
        head = fh.read(1024).lstrip()
    if head.startswith("["):  # a JSON list of records
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: not valid JSON ({exc}); use a JSON list or JSONL of records") from exc
        for i, rec in enumerate(records[:limit] if limit is not None else records):
            yield _record(path, f"record {i}", rec)
        return
    count = 0
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if limit is not None and count >= limit:
                return
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputDataError(f"{path}: line {lineno}: not valid JSON ({exc.msg}); each line must be one "
                                     '{"messages": [...], "tools": [...]} object') from exc
            count += 1
            yield _record(path, f"line {lineno}", rec)


def _record(path: Path, where: str, rec: Any) -> tuple[str, Any, Any, None]:
    if not isinstance(rec, dict) or "messages" not in rec:
        raise InputDataError(f"{path}: {where}: expected an object with a `messages` list (and optional `tools`)")
    return where, rec["messages"], rec.get("tools"), None  # the reference is the last assistant turn


def _conversation(path: Path, where: str, idx: int, messages: Sequence[Any], tools: Any,
                  reference: dict | None = None) -> Conversation:
    if messages is None or isinstance(messages, (str, bytes)) or not len(messages):
        raise InputDataError(f"{path}: {where}: `messages` must be a non-empty list of {{role, content}} turns")
    msgs = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise InputDataError(
                f"{path}: {where}: messages[{j}]: each turn needs a role in {sorted(ROLES)} (got {m!r:.80})"
            )
        msgs.append({k: v for k, v in m.items() if v is not None})
    first_assistant = next((j for j, m in enumerate(msgs) if m["role"] == "assistant"), len(msgs))
    prompt = msgs[:first_assistant]
    if not any(m["role"] == "user" for m in prompt):
        raise InputDataError(f"{path}: {where}: no user turn before the first assistant turn (nothing to answer)")
    recorded = recorded_rounds(msgs[first_assistant:])
    if reference is None:
        reference = next((m for m in reversed(msgs[first_assistant:]) if m["role"] == "assistant"), None)
    return Conversation(sample_idx=idx, prompt=prompt, tools=_tools(path, where, tools), recorded=recorded,
                        record_type=record_type(recorded, reference))


def record_type(recorded: list[RecordedRound], reference: dict | None) -> str:
    """The record's kind (module doc): a tool turn before the answer wins, else the reference's calls."""
    if recorded:
        return "with_tool_turn"
    if reference is None:
        return "unknown"
    calls = len(call_names(reference))
    return "no_call" if calls == 0 else "single_call" if calls == 1 else "multi_call"


def _tools(path: Path, where: str, tools: Any) -> list[dict] | None:
    if tools is None:
        return None
    if isinstance(tools, str):
        if not tools.strip():
            return None
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: {where}: `tools` is not valid JSON ({exc.msg})") from exc
    if not isinstance(tools, (list, tuple)) and not hasattr(tools, "tolist"):
        raise InputDataError(f"{path}: {where}: `tools` must be a list of tool schemas")
    return [dict(t) for t in tools] or None
