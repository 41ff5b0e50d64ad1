"""verl's reward for multi-turn rollouts: the spec's reward, scored on the final assistant turn.

verl's reward managers decode a response's whole token span (``skip_special_tokens=True``), so a
multi-turn ``solution_str`` holds every assistant turn *and* the tool turns between them, e.g.
``<think>…</think>\\n\\n<tool_call>…</tool_call>user\\n<tool_response>\\n…\\n</tool_response>\\nassistant\\n<think>…``
(ChatML's ``<|im_start|>``/``<|im_end|>`` removed, their role words left). The shipped rewards
compare *all* tool calls after ``</think>`` with the ground truth (the final answer), so the whole
text would score 0 whenever the model looked something up. This wrapper keeps what follows the last
``</tool_response>`` (minus the template's ``assistant`` role line) and calls the spec's reward on
it — the answer the record's ground truth describes. A response that never read a tool answer is
scored as it is. Configured by ``runners/verl/config.py`` when ``train.rollout.multi_turn.enable``:
``reward_kwargs`` carry the inner reward's file and function (``rlreg_reward_path``/``_name``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

TOOL_RESPONSE_END = "</tool_response>"
ROLE_LINE = "assistant\n"

_LOADED: dict[tuple[str, str], Callable[..., Any]] = {}


def final_turn(text: str) -> str:
    """The last assistant turn of a decoded multi-turn response (all of it when no tool answered)."""
    if TOOL_RESPONSE_END not in text:
        return text
    tail = text.rsplit(TOOL_RESPONSE_END, 1)[1].lstrip("\n")
    return tail[len(ROLE_LINE):] if tail.startswith(ROLE_LINE) else tail


def _inner(path: str, name: str) -> Callable[..., Any]:
    key = (path, name)
    if key not in _LOADED:
        spec = importlib.util.spec_from_file_location(f"_rlreg_inner_reward_{len(_LOADED)}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the reward file {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _LOADED[key] = getattr(module, name)
    return _LOADED[key]


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                  *, rlreg_reward_path: str, rlreg_reward_name: str = "compute_score", **kwargs: Any) -> Any:
    """verl's custom reward signature; ``kwargs`` go on to the spec's reward function."""
    fn = _inner(rlreg_reward_path, rlreg_reward_name)
    return fn(data_source, final_turn(solution_str), ground_truth, extra_info, **kwargs)
