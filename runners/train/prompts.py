"""Training prompts from the convert stage's parquet (verl's columns), rendered and tokenized.

A row: ``prompt`` (list of ``{role, content}``), ``reward_model.ground_truth``, optional
``extra_info.tools`` (JSON string of the tool schemas). Prompts longer than
``max_prompt_length`` tokens are dropped, as verl's ``filter_overlong_prompts`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InputDataError
from runners.common.verl_parquet import read_verl_parquet


@dataclass
class Prompt:
    uid: int
    """Row number in the parquet: the GRPO group id of its samples."""
    input_ids: list[int]
    ground_truth: Any
    messages: list[dict]
    tools: Any


def _field(row: dict, column: str, key: str, path: Path, i: int) -> Any:
    value = row.get(column)
    if not isinstance(value, dict) or key not in value:
        raise InputDataError(
            f"{path}: row {i}: `{column}.{key}` is missing (rows need verl's columns; "
            "regenerate the file with the convert stage)"
        )
    return value[key]


def select_max_samples(total: int, max_samples: int, seed: int) -> list[int]:
    """The rows verl 0.9.1 keeps for ``data.train_max_samples`` (``RLHFDataset``, with
    ``data.shuffle: true``, its default): ``numpy.random.default_rng(seed).choice(total,
    max_samples, replace=False)``, in that order, before the overlong-prompt filter. ``-1`` or
    ``max_samples >= total`` keeps every row."""
    if max_samples <= 0 or max_samples >= total:
        return list(range(total))
    import numpy as np

    return [int(i) for i in np.random.default_rng(seed).choice(total, size=max_samples, replace=False)]


def load_prompts(
    path: Path, tokenizer: Any, render: Callable[[Any, list, Any], str], max_prompt_length: int,
    max_samples: int = -1, seed: int = 0,
) -> tuple[list[Prompt], int]:
    """(prompts that fit, number filtered for length); ``max_samples``: see ``select_max_samples``."""
    frame = read_verl_parquet(path, "the train stage")
    records = frame.to_dict("records")
    prompts: list[Prompt] = []
    filtered = 0
    for i in select_max_samples(len(records), max_samples, seed):
        row = records[i]
        messages = row["prompt"]
        if messages is None or len(messages) == 0:
            raise InputDataError(f"{path}: row {i}: `prompt` is empty (each row needs at least one message)")
        messages = [dict(m) for m in messages]
        for j, m in enumerate(messages):
            if "role" not in m or "content" not in m:
                raise InputDataError(f"{path}: row {i}: prompt[{j}] needs `role` and `content` keys")
        ground_truth = _field(row, "reward_model", "ground_truth", path, i)
        extra = row.get("extra_info")
        tools = extra.get("tools") if isinstance(extra, dict) else None
        try:
            text = render(tokenizer, messages, tools)
        except ValueError as exc:  # e.g. tools that are not valid JSON
            raise InputDataError(f"{path}: row {i}: cannot render the prompt ({exc}); check extra_info.tools") from exc
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_prompt_length:
            filtered += 1
            continue
        prompts.append(Prompt(i, ids, ground_truth, messages, tools))
    return prompts, filtered
