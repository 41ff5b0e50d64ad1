"""The convert stage's parquet, rewritten for verl's ``tool_agent`` loop (multi-turn rollouts).

The convert output keeps a record's whole conversation before the answer in ``prompt`` (system,
user, and any recorded ``assistant`` call + ``tool`` turns), so single-turn training reads the
tool's answer from the prompt. A multi-turn rollout must make those calls itself, so each row
becomes (written into the train stage's work dir, the convert output untouched):

* ``prompt``: the messages before the first assistant turn;
* ``agent_name``: ``tool_agent`` (verl's default is ``single_turn_agent``; the config sets
  ``rollout.agent.default_agent_loop`` too);
* ``extra_info.tool_selection``: the record's own tool names, in its order — verl offers these
  schemas in the prompt (its default is every loaded tool, in load order);
* ``extra_info.tools_kwargs`` (replay only): ``{tool: {"create_kwargs": {"recorded": json}}}`` for
  every tool, the same JSON for all: the recorded rounds ``[{"calls": [names], "answers": [texts]}]``
  that ``ReplayTool`` answers from (verl passes ``create_kwargs`` to ``BaseTool.create``).

Everything else (``reward_model.ground_truth`` = the final answer, ``extra_info.tools``) stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runners.verl.multi_turn import TOOL_AGENT


def cut_prompt(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(messages before the first assistant turn, recorded rounds after it)``."""
    from runners.reward import parse_tool_calls

    first = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))
    rounds: list[dict[str, Any]] = []
    pending: list[str | None] | None = None
    rounds_for_turn: dict[str, Any] | None = None
    for turn in messages[first:]:
        if turn.get("role") == "assistant":
            pending = [c.get("name") for c in parse_tool_calls(turn.get("content") or "") or []]
            rounds_for_turn: dict[str, Any] | None = None
        elif turn.get("role") == "tool":
            if pending is None:
                continue
            if rounds_for_turn is None:  # consecutive tool turns answer one assistant turn
                rounds_for_turn = {"calls": pending, "answers": []}
                rounds.append(rounds_for_turn)
            rounds_for_turn["answers"].append(turn.get("content") or "")
    return messages[:first], rounds


def _tool_names(tools_json: str | None) -> list[str]:
    if not tools_json:
        return []
    return [t.get("function", t).get("name") for t in json.loads(tools_json)]


def convert_row(row: dict[str, Any], tool_names: list[str], *, replay: bool) -> dict[str, Any]:
    prompt, rounds = cut_prompt(list(row["prompt"]))
    extra = dict(row.get("extra_info") or {})
    extra["tool_selection"] = _tool_names(extra.get("tools"))
    if replay:
        recorded = json.dumps(rounds, ensure_ascii=False)
        extra["tools_kwargs"] = {name: {"create_kwargs": {"recorded": recorded}} for name in tool_names}
    return {**row, "prompt": prompt, "agent_name": TOOL_AGENT, "extra_info": extra}


def prepare_parquet(src: Path, dst: Path, tool_names: list[str], *, replay: bool) -> dict[str, int]:
    """Rewrite ``src`` into ``dst``; returns counts (rows, rows with recorded rounds, rounds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.read_table(src).to_pylist()
    rounds = [len(cut_prompt(list(r["prompt"]))[1]) for r in source]
    rows = [convert_row(r, tool_names, replay=replay) for r in source]
    dst.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), dst, compression="zstd")
    return {"rows": len(rows), "rows_with_recorded_rounds": sum(n > 0 for n in rounds), "recorded_rounds": sum(rounds)}
