"""Strict binary tool-call reward (domain.md §2), usable three ways:

* by the builtin trainer / eval: ``REWARD_FUNCTIONS[spec.reward.function](response, ground_truth)``;
* by verl as a standalone file: ``reward.custom_reward_function.path=runners/reward.py``,
  ``reward.custom_reward_function.name=compute_score`` (verl 0.9 keys). The variant is chosen by
  the keyword ``reward_function`` (verl merges ``reward_kwargs`` into each call:
  ``+reward.custom_reward_function.reward_kwargs.reward_function=tool_call``), else by
  ``extra_info["reward_function"]``, else by ``DEFAULT_FUNCTION`` (``think_tool_call``);
* by anything that must record which reward ran: ``reward_source_hash()``.

This file is loaded by path inside verl's workers, so it uses the standard library only and no
package-relative imports.

Rules (score 1.0 only if all hold, else 0.0):

``think_tool_call`` (the user's ``reward_fn_egpo``)
    The response has a think block closed by ``"</think>\\n\\n"``; the opening ``<think>`` is
    optional because thinking chat templates (Qwen3-Thinking) put it in the prompt. The text after
    the block holds at least one ``<tool_call>…</tool_call>``, every block is valid JSON, and the
    multiset of calls equals the ground truth's.
``tool_call`` (the user's ``reward_fn_grpo``)
    The same match on the whole response, no think block required.

Matching: each call is the JSON object inside the tags; calls are compared as an order-insensitive
multiset, and inside each call dict keys and list items are order-insensitive too (the user's
reward compared nested lists as sets; here they are multisets, so ``[1, 1]`` ≠ ``[1]``). Numbers
compare by value (``1 == 1.0``) but ``true`` is not ``1``. ``"arguments"`` given as a JSON string
(OpenAI's wire format) is decoded before comparing, so ``"{\\"city\\": \\"Paris\\"}"`` equals
``{"city": "Paris"}``. Text around the tool calls is ignored. The ground truth is the last
assistant message's content; only its tool calls (after its think block, if any) count.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_DELIMITER = "</think>\n\n"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
DEFAULT_FUNCTION = "think_tool_call"

_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict] | None:
    """The JSON objects inside each ``<tool_call>…</tool_call>`` block, in order.

    ``[]`` when there is no block; ``None`` when any block is malformed: invalid JSON, not an
    object with a string ``name``, or an unbalanced/unclosed tag."""
    if not isinstance(text, str):
        return None
    bodies = _TOOL_CALL_RE.findall(text)
    if text.count(TOOL_CALL_OPEN) != len(bodies) or text.count(TOOL_CALL_CLOSE) != len(bodies):
        return None
    calls = []
    for body in bodies:
        try:
            call = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return None
        calls.append(_decode_arguments(call))
    return calls


def _decode_arguments(call: dict) -> dict:
    # OpenAI's wire format carries arguments as a JSON string; Hermes-style templates as an object.
    args = call.get("arguments")
    if isinstance(args, str):
        try:
            decoded = json.loads(args)
        except (ValueError, RecursionError):
            return call
        if isinstance(decoded, dict):
            return {**call, "arguments": decoded}
    return call


def split_think(text: str) -> tuple[str, str] | None:
    """``(think, rest)`` when ``text`` has exactly one think block closed by ``"</think>\\n\\n"``.

    ``think`` is the reasoning without tags; ``rest`` is everything after the delimiter. The
    opening ``<think>`` may be absent (the chat template opened it in the prompt) but may appear at
    most once, before the close. ``None`` when the format is wrong."""
    if not isinstance(text, str) or text.count(THINK_CLOSE) != 1 or THINK_DELIMITER not in text:
        return None
    head, rest = text.split(THINK_DELIMITER, 1)
    opens = head.count(THINK_OPEN)
    if opens > 1 or THINK_OPEN in rest:
        return None
    if opens == 1:
        before, head = head.split(THINK_OPEN, 1)
        if before.strip():
            return None  # text before <think> means the block is not the response's start
    return head, rest


def _canonical(value: Any) -> str:
    """A string that is equal for two JSON values iff they match (order-insensitive)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = sorted(json.dumps(str(k), ensure_ascii=False) + ":" + _canonical(v) for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(sorted(_canonical(v) for v in value)) + "]"
    return json.dumps(repr(value))


def tool_calls_match(a: list, b: list) -> bool:
    """True iff ``a`` and ``b`` hold the same calls as a multiset (order-insensitive, nested)."""
    if a is None or b is None:
        return False
    norm = lambda calls: Counter(_canonical(_decode_arguments(c) if isinstance(c, dict) else c) for c in calls)
    return norm(a) == norm(b)


def ground_truth_calls(ground_truth: Any) -> list[dict] | None:
    """The tool calls a ground truth asks for: a content string (its part after the think block
    when it has one) or an already parsed list of calls."""
    if isinstance(ground_truth, (list, tuple)):
        return list(ground_truth)
    if not isinstance(ground_truth, str):
        return None
    if THINK_CLOSE in ground_truth:
        ground_truth = ground_truth.rsplit(THINK_CLOSE, 1)[1]
    return parse_tool_calls(ground_truth)


def _score_calls(text: str, ground_truth: Any) -> float:
    predicted = parse_tool_calls(text)
    if not predicted:  # None (malformed) or [] (no tool call)
        return 0.0
    expected = ground_truth_calls(ground_truth)
    if not expected:
        return 0.0
    return 1.0 if tool_calls_match(predicted, expected) else 0.0


def think_tool_call_reward(response: str, ground_truth: Any) -> float:
    """1.0 iff the response has a think block closed by ``"</think>\\n\\n"`` and its tool calls
    after it equal the ground truth's; else 0.0 (the user's ``reward_fn_egpo``)."""
    parts = split_think(response)
    if parts is None:
        return 0.0
    return _score_calls(parts[1], ground_truth)


def tool_call_reward(response: str, ground_truth: Any) -> float:
    """1.0 iff the response's tool calls equal the ground truth's; no think block needed (the
    user's ``reward_fn_grpo``, for non-thinking models)."""
    if not isinstance(response, str):
        return 0.0
    if THINK_CLOSE in response:  # a think block may still be there: its text is not a call
        response = response.rsplit(THINK_CLOSE, 1)[1]
    return _score_calls(response, ground_truth)


REWARD_FUNCTIONS: dict[str, Callable[[str, Any], float]] = {
    "think_tool_call": think_tool_call_reward,
    "tool_call": tool_call_reward,
}


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, **kwargs: Any) -> float:
    """verl's custom reward interface. Variant: keyword ``reward_function`` (verl's
    ``custom_reward_function.reward_kwargs``), else ``extra_info["reward_function"]``, else
    ``DEFAULT_FUNCTION``. An unknown name raises ``ValueError`` (a typo must not score 0 silently)."""
    name = kwargs.get("reward_function") or (extra_info or {}).get("reward_function") or DEFAULT_FUNCTION
    if name not in REWARD_FUNCTIONS:
        raise ValueError(f"unknown reward_function {name!r}; use one of {sorted(REWARD_FUNCTIONS)}")
    return REWARD_FUNCTIONS[name](solution_str, ground_truth)


def reward_source_hash() -> str:
    """sha256 of this file: tag runs with it and hash it into cache keys."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
