"""Tool-call rewards (domain.md §2, §9), usable three ways:

* by the builtin trainer / eval: ``REWARD_FUNCTIONS[spec.reward.function](response, ground_truth)``;
* by verl as a standalone file: ``reward.custom_reward_function.path=runners/reward.py``,
  ``reward.custom_reward_function.name=compute_score`` (verl 0.9 keys). The variant is chosen by
  the keyword ``reward_function`` (verl merges ``reward_kwargs`` into each call:
  ``+reward.custom_reward_function.reward_kwargs.reward_function=tool_call``), else by
  ``extra_info["reward_function"]``, else by ``DEFAULT_FUNCTION`` (``think_tool_call``);
* by anything that must record which reward ran: ``reward_source_hash()``.

This file is loaded by path inside verl's workers, so it uses the standard library only and no
package-relative imports.

The user's rewards (hardtry ``src/hardtry/rl/``), reproduced rule for rule (tests/fixtures/
hardtry_rewards.jsonl holds scores computed by running their files):

``think_tool_call`` (``reward_fn_egpo``), 1.0 or 0.0
    The response contains ``"</think>\n\n"``; the text after its LAST occurrence contains both
    ``<tool_call>`` and ``</tool_call>``; the calls found there match the ground truth's.
``tool_call`` (``reward_fn_grpo``), 1.0 or 0.0
    The same on the whole response (calls drafted inside the thinking count).
``graded_tool_call`` (``reward_fn.py``), 0 / 0.1 / 1.1
    0.1 when the response contains both tags anywhere, plus 1.0 when its calls match. (Their
    description says 0 / 0.1 / 1.0 / 1.1; 1.0 cannot occur: a match needs a tag pair, which earns
    the 0.1.)

Their match: every non-overlapping ``<tool_call>(.*?)</tool_call>`` body, in the response and in the
WHOLE ground truth string (its think part included), is parsed as JSON, or kept as the raw body
text when it is not JSON; the response needs at least one body; the two lists compare as a
multiset in which a JSON object is the set of its (key, value) pairs and a JSON list the SET of its
items: order-insensitive, duplicates in a list collapse (``[1, 1] == [1]``), ``{} == []``, and
Python equality decides scalars (``true == 1 == 1.0``). ``arguments`` given as a JSON string stays a
string. A trailing unclosed ``<tool_call>`` is ignored; text around the blocks is ignored. A
ground truth that is not a string scores 0.

Stricter variants (rlreg's rules, never the default of a hardtry spec):

``think_tool_call_strict``
    Exactly one think block closed by ``"</think>\n\n"``, at the start of the response (the
    opening ``<think>`` is optional because thinking chat templates put it in the prompt); the text
    after it holds at least one ``<tool_call>`` block, every block is a JSON object with a string
    ``name``, no tag is left unbalanced, and the calls equal the ground truth's as a multiset in
    which lists are multisets (``[1, 1] != [1]``), ``true != 1`` but ``1 == 1.0``, and
    ``arguments`` given as a JSON string is decoded first. Only the ground truth's calls after its
    think block count.
``tool_call_strict``
    The same match after the last ``</think>`` (or on the whole response), no think block needed.
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


def think_tool_call_strict_reward(response: str, ground_truth: Any) -> float:
    """1.0 iff the response is one think block closed by ``"</think>\\n\\n"`` followed by
    well-formed tool calls equal to the ground truth's (rlreg's strict rules); else 0.0."""
    parts = split_think(response)
    if parts is None:
        return 0.0
    return _score_calls(parts[1], ground_truth)


def tool_call_strict_reward(response: str, ground_truth: Any) -> float:
    """1.0 iff the well-formed tool calls after the last ``</think>`` (or in the whole response)
    equal the ground truth's (rlreg's strict rules, no think block needed); else 0.0."""
    if not isinstance(response, str):
        return 0.0
    if THINK_CLOSE in response:  # a think block may still be there: its text is not a call
        response = response.rsplit(THINK_CLOSE, 1)[1]
    return _score_calls(response, ground_truth)


# -- the user's rules (hardtry src/hardtry/rl/reward_fn*.py) ----------------------------------

def loose_tool_calls(text: str) -> list[Any]:
    """Each ``<tool_call>…</tool_call>`` body as hardtry reads it: its JSON value, or the raw body
    text when it does not parse. An unclosed trailing tag yields nothing."""
    values: list[Any] = []
    for body in _TOOL_CALL_RE.findall(text):
        try:
            values.append(json.loads(body))
        except Exception:  # ValueError, and RecursionError on absurd nesting: keep the text
            values.append(body)
    return values


def _as_set(value: Any) -> Any:
    # hardtry's equality: objects are sets of (key, value) pairs, lists are sets of items
    if isinstance(value, dict):
        return frozenset((key, _as_set(item)) for key, item in value.items())
    if isinstance(value, list):
        return frozenset(_as_set(item) for item in value)
    return value


def _loose_match(response: str, ground_truth: Any) -> bool:
    """hardtry's correctness test: the response holds at least one block and the two lists of
    block values are equal as multisets of :func:`_as_set` values."""
    if not isinstance(ground_truth, str):
        return False  # their regex raises on a non-string and the exception scores 0
    try:
        predicted = loose_tool_calls(response)
        if not predicted:
            return False
        expected = loose_tool_calls(ground_truth)
        return Counter(map(_as_set, predicted)) == Counter(map(_as_set, expected))
    except RecursionError:
        return False


def _has_tag_pair(text: str) -> bool:
    return TOOL_CALL_OPEN in text and TOOL_CALL_CLOSE in text


def tool_call_reward(response: str, ground_truth: Any) -> float:
    """hardtry ``reward_fn_grpo``: 1.0 iff the whole response has a ``<tool_call>`` and a
    ``</tool_call>`` and its calls match the ground truth's (hardtry's match); else 0.0."""
    if not isinstance(response, str) or not _has_tag_pair(response):
        return 0.0
    return 1.0 if _loose_match(response, ground_truth) else 0.0


def think_tool_call_reward(response: str, ground_truth: Any) -> float:
    """hardtry ``reward_fn_egpo``: :func:`tool_call_reward` on the text after the last
    ``"</think>\\n\\n"``; 0.0 when the response has none."""
    if not isinstance(response, str) or THINK_DELIMITER not in response:
        return 0.0
    return tool_call_reward(response.rsplit(THINK_DELIMITER, 1)[1], ground_truth)


def graded_tool_call_reward(response: str, ground_truth: Any) -> float:
    """hardtry ``reward_fn.py``: 0.1 for a ``<tool_call>``/``</tool_call>`` pair anywhere in the
    response (format), plus 1.0 when its calls match the ground truth's (correctness)."""
    if not isinstance(response, str):
        return 0.0
    fmt = 0.1 if _has_tag_pair(response) else 0.0
    return fmt + (1.0 if _loose_match(response, ground_truth) else 0.0)


REWARD_FUNCTIONS: dict[str, Callable[[str, Any], float]] = {
    "think_tool_call": think_tool_call_reward,
    "tool_call": tool_call_reward,
    "graded_tool_call": graded_tool_call_reward,
    "think_tool_call_strict": think_tool_call_strict_reward,
    "tool_call_strict": tool_call_strict_reward,
}
THINK_REWARDS = frozenset({"think_tool_call", "think_tool_call_strict"})
"""The variants that require a think block (the eval's format check follows them)."""


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
