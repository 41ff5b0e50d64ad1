"""Does the model emit the think + tool-call format? Greedy answers to a few test prompts, scored
with the shared reward module (runners.reward)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from runners.modeling import render_prompt
from runners.reward import parse_tool_calls, split_think


def has_format(response: str) -> bool:
    """``<think>…</think>\\n\\n`` followed by at least one well-formed ``<tool_call>`` block."""
    parts = split_think(response)
    return parts is not None and bool(parse_tool_calls(parts[1]))


@torch.no_grad()
def greedy_answers(model: Any, tokenizer: Any, prompts: Sequence[tuple[list[dict], Any]], *,
                   max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions (special control tokens stripped, ``<think>``/``<tool_call>`` kept)."""
    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [render_prompt(tokenizer, msgs, tools) for msgs, tools in prompts[start : start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
            )
            new = out[:, batch["input_ids"].shape[1] :]
            answers.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return answers


def format_report(model: Any, tokenizer: Any, examples: Sequence[Any], reward_fn: Callable[[str, Any], float], *,
                  max_new_tokens: int, batch_size: int) -> tuple[dict[str, float], list[dict]]:
    """``({"format_rate", "reward_rate"}, rows)`` over ``examples`` (objects with ``prompt``,
    ``tools``, ``ground_truth``); rows hold each prompt's answer for an artifact table."""
    answers = greedy_answers(model, tokenizer, [(e.prompt, e.tools) for e in examples],
                             max_new_tokens=max_new_tokens, batch_size=batch_size)
    rows = [
        {"response": a, "ground_truth": e.ground_truth, "format": has_format(a), "reward": reward_fn(a, e.ground_truth)}
        for a, e in zip(answers, examples)
    ]
    n = max(1, len(rows))
    return {
        "format_rate": sum(r["format"] for r in rows) / n,
        "reward_rate": sum(r["reward"] for r in rows) / n,
    }, rows
