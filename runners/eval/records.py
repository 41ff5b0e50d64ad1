"""One evaluation record, whichever set it came from, and loading the convert stage's test split."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from registry.errors import InputDataError
from runners.common.verl_parquet import read_verl_parquet


@dataclass
class EvalRecord:
    id: str
    """Prompt id: ``extra_info.index`` of the convert split, or the BFCL record id."""
    messages: list[dict[str, Any]]
    """The prompt turns ({role, content}) handed to the chat template."""
    tools: list[dict[str, Any]]
    """OpenAI-style tool schemas rendered into the prompt."""
    kind: Literal["reward", "bfcl"]
    """How to score: the spec's reward against a ground-truth string, or BFCL's AST matcher."""
    ground_truth: Any
    """The expected assistant text (``reward``) or BFCL's ``[{fn: {param: [allowed]}}]`` (``bfcl``)."""
    functions: list[dict[str, Any]] = field(default_factory=list)
    """BFCL's raw function docs (the matcher needs their types and required params)."""
    category: str = ""


def load_convert_split(path: Path, limit: int | None = None) -> list[EvalRecord]:
    """Records of the convert stage's ``test.parquet`` (verl columns; tools in ``extra_info.tools``)."""
    df = read_verl_parquet(path, "the eval stage", limit)
    records: list[EvalRecord] = []
    for row_no, row in enumerate(df.itertuples(index=False)):
        where = f"{path}: row {row_no}"
        prompt = [dict(m) for m in row.prompt]
        reward_model = row.reward_model if isinstance(row.reward_model, dict) else {}
        if "ground_truth" not in reward_model:
            raise InputDataError(f"{where}: reward_model has no ground_truth (rerun the convert stage)")
        extra = getattr(row, "extra_info", None) or {}
        tools = extra.get("tools") or "[]"
        try:
            tools = json.loads(tools) if isinstance(tools, str) else list(tools)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{where}: extra_info.tools is not valid JSON ({exc.msg})") from exc
        index = extra.get("index", row_no)
        records.append(EvalRecord(id=str(index), messages=prompt, tools=tools, kind="reward",
                                  ground_truth=reward_model["ground_truth"]))
    if not records:
        raise InputDataError(f"{path}: the test split is empty (raise data.test_size or max_samples)")
    return records
