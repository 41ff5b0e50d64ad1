"""Tool answers inside verl's agent-loop workers, worded as rlreg's builtin rollouts word them.

Imported by the files ``runners/verl/multi_turn.py`` generates (a ``@function_tool`` file) and by
``runners/verl/replay_tool.py``; standard library only, so it loads in the verl venv without
rlreg's own dependencies. The answer texts follow ``runners/entropy/tools.py`` (the entropy
stage's answerer, which the builtin trainer shares): a tool that raises is answered
``Error: <name> raised <Type>: <message>``, a non-string result is JSON. verl's own wording for
those cases (``Error executing tool …``) is never reached, because these functions do not raise.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def load_callable(target: str) -> Callable[..., Any]:
    """``module:function`` or ``/absolute/file.py:function`` (rlreg resolves relative file paths
    against the tools config before it writes them into a generated file)."""
    module_name, _, attr = target.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        spec = importlib.util.spec_from_file_location(f"_rlreg_tool_{path.stem}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ImportError(f"tool file {path} not found")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ImportError(f"{module_name} has no callable {attr!r}")
    return fn


def execute(name: str, fn: Callable[..., Any], arguments: Any) -> str:
    """The answer text of one executed call (never raises: a failure is the model's feedback)."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return f"Error: arguments of '{name}' must be a JSON object, got {type(arguments).__name__}"
    try:
        result = fn(**arguments)
    except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's feedback, not the run's
        return f"Error: {name} raised {type(exc).__name__}: {exc}"
    return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)


def recorded_answer(recorded: list[dict[str, Any]], round_idx: int, name: str) -> str | None:
    """The dataset's answer for a call to ``name`` in tool round ``round_idx`` (1-based), or None.

    ``recorded[r - 1]`` = ``{"calls": [tool names or null], "answers": [texts]}`` (written by
    ``runners/verl/multi_turn_data.py``). The first answer of that round whose recorded call has
    this name, or whose recorded name is unknown, is replayed — the builtin rule for one call per
    round (verl's ``max_parallel_calls`` is 1); a call to a different tool is not replayed."""
    if not 1 <= round_idx <= len(recorded):
        return None
    entry = recorded[round_idx - 1]
    calls, answers = entry.get("calls") or [], entry.get("answers") or []
    for j, answer in enumerate(answers):
        recorded_name = calls[j] if j < len(calls) else None
        if recorded_name is None or recorded_name == name:
            return answer
    return None


def unavailable(name: str, round_idx: int, known: list[str]) -> str:
    """No recorded answer and no executable tool (the builtin replay's message)."""
    return (f"Error: no recorded result for '{name}' at round {round_idx} and no executable tool "
            f"(available tools: {', '.join(sorted(known)) or 'none'})")


def answering(name: str, target: str | None, known: list[str]) -> Callable[..., str]:
    """A keyword-only callable for verl's ``@function_tool``: runs ``target`` (``module:function``)
    and words the answer like rlreg; without a target, an unknown-tool error (as the builtin
    answers a dataset tool that ``tools_config`` does not implement)."""
    fn = load_callable(target) if target else None

    def call(**arguments: Any) -> str:
        if fn is None:
            return f"Error: unknown tool '{name}' (available tools: {', '.join(sorted(known)) or 'none'})"
        return execute(name, fn, arguments)

    call.__name__ = name
    return call
