"""Score one response against one record: strict accuracy plus the diagnostics that say WHY it failed.

Per sample (all 0/1):
- ``score`` (strict accuracy): 1 when the spec's reward (domain.md §2) gives its full score (≥ 1:
  1.0 for the binary rewards, 1.1 for ``graded_tool_call``) on convert-split records; for BFCL
  records, ``format_valid`` and BFCL's AST match.
- ``format_valid``: the response has the shape the reward demands — a think block closed by
  ``</think>\\n\\n`` when the reward requires thinking (``think_tool_call[_strict]``) — and at least one well-formed
  ``<tool_call>`` JSON block (``{"name": str, "arguments": object}``).
- ``tool_name_correct``: the multiset of called function names equals the expected one.
- ``args_correct``: the calls equal the expected calls (names and arguments; reward's
  order-insensitive multiset match, or BFCL's matcher) regardless of the think format.
So ``score ≤ args_correct ≤ tool_name_correct`` per sample, and the three rates nest the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runners.eval.bfcl_match import ast_check, calls_to_bfcl
from runners.eval.records import EvalRecord
from runners.reward import (
    THINK_CLOSE,
    ground_truth_calls,
    parse_tool_calls,
    split_think,
    tool_calls_match,
)


@dataclass
class SampleScore:
    score: float
    format_valid: float
    tool_name_correct: float
    args_correct: float
    calls: list[dict] | None
    expected: Any
    error: str = ""


def _answer_part(response: str) -> str:
    """Where tool calls are looked for: after the last ``</think>`` if there is one."""
    return response.rsplit(THINK_CLOSE, 1)[1] if THINK_CLOSE in response else response


def _expected_names(record: EvalRecord) -> Counter | None:
    if record.kind == "bfcl":
        return Counter(next(iter(call)) for call in record.ground_truth)
    calls = ground_truth_calls(record.ground_truth)
    return None if calls is None else Counter(c.get("name") for c in calls)


def score_sample(record: EvalRecord, response: str, reward_fn: Callable[[str, Any], float],
                 require_think: bool) -> SampleScore:
    calls = parse_tool_calls(_answer_part(response))
    shape_ok = bool(calls) and all(isinstance(c.get("arguments", {}), dict) for c in calls)
    think_ok = split_think(response) is not None if require_think else True
    format_valid = float(shape_ok and think_ok)
    expected_names = _expected_names(record)
    names_ok = float(bool(calls) and expected_names is not None
                     and Counter(c.get("name") for c in calls) == expected_names)
    error = ""
    if record.kind == "bfcl":
        expected = record.ground_truth
        if shape_ok:
            result = ast_check(record.functions, calls_to_bfcl(calls), record.ground_truth, record.category)
            args_ok, error = float(result.valid), result.error_type
        else:
            args_ok, error = 0.0, "no well-formed tool call"
        score = float(format_valid and args_ok)
    else:
        expected = ground_truth_calls(record.ground_truth)
        args_ok = float(bool(calls) and bool(expected) and tool_calls_match(calls, expected))
        reward = float(reward_fn(response, record.ground_truth))
        # correct = the reward's full score (1.0 binary, 1.1 graded); the reward's own match may be
        # looser than the diagnostics' strict parse (hardtry: true == 1, lists as sets), so a
        # response it accepts counts as right in the diagnostics too and the rates keep nesting
        score = float(reward >= 1.0)
        args_ok = max(args_ok, score)
        names_ok = max(names_ok, args_ok)
    if not think_ok and not error:
        error = "think block missing or not closed by '</think>\\n\\n'"
    elif calls is None:
        error = error or "malformed <tool_call> block"
    return SampleScore(score, format_valid, names_ok, args_ok, calls, expected, error)
