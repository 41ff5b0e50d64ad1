"""Answers to the model's tool calls: replayed from the dataset, executed in-process, or an error.

Shared by the entropy stage (``runners/entropy``) and the builtin trainer's multi-turn rollouts
(``runners/train/multi_turn.py``), so both answer a call the same way.

Every call gets an answer, so a rollout never stalls: a malformed call (unparsable JSON, an
unclosed tag) or a call to a tool nobody provides is answered with an error message the model
reads as its tool turn, the way a real tool server would reply.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import re
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from registry.errors import InputDataError
from runners.reward import parse_tool_calls

_NAME_RE = re.compile(r'"name"\s*:\s*"([^"]+)"')

TOOL_TIMEOUT_S = 30.0
"""A tool callable that runs longer is answered with an error, so a hanging tool cannot hang a
rollout (main thread only: SIGALRM; the stages run their rollouts there)."""


class ToolTimeout(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: float):
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum, frame):
        raise ToolTimeout

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class RecordedRound:
    """What the dataset recorded for one tool round: the call(s) the assistant made (names, when
    they can be read) and the tool turn(s) that answered them."""

    call_names: list[str | None]
    answers: list[str]


class Conversation(Protocol):
    """What answering needs of a conversation: its tool schemas and its recorded rounds."""

    tools: list[dict] | None

    def recorded_round(self, round_idx: int) -> RecordedRound | None: ...


def recorded_rounds(turns: list[dict]) -> list[RecordedRound]:
    """Group the ``assistant (call) → tool …`` pairs of the turns after a prompt into rounds, in order."""
    rounds: list[RecordedRound] = []
    pending_names: list[str | None] = []
    for turn in turns:
        if turn["role"] == "assistant":
            pending_names = call_names(turn)
        elif turn["role"] == "tool":
            content = turn.get("content")
            text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            if rounds and rounds[-1].call_names is pending_names:
                rounds[-1].answers.append(text)  # consecutive tool turns answer one assistant turn
            else:
                rounds.append(RecordedRound(call_names=pending_names, answers=[text]))
    return rounds


def call_names(turn: dict) -> list[str | None]:
    """The tool names an assistant turn calls: OpenAI ``tool_calls`` and ``<tool_call>`` blocks."""
    names: list[str | None] = []
    for call in turn.get("tool_calls") or []:  # OpenAI structured calls
        fn = call.get("function", call) if isinstance(call, dict) else {}
        names.append(fn.get("name"))
    content = turn.get("content")
    if isinstance(content, str):
        for call in parse_tool_calls(content) or []:
            names.append(call.get("name"))
    return names


@dataclass
class ToolAnswer:
    content: str
    tool_name: str | None
    parsed: bool
    """Whether the call parsed (valid JSON object with a string ``name`` inside closed tags)."""
    source: str
    """``replay``, ``tools_config`` or ``error``."""


class ToolAnswerer:
    """Answers the tool calls in one round of model output.

    ``mode="replay"``: the dataset's recorded tool turn for that round when the record has one
    (and the recorded call, when readable, names the same tool); otherwise a ``tools`` callable;
    otherwise an error message. ``mode="tools_config"``: always the callables.
    """

    def __init__(self, mode: str, tools: dict[str, Callable[..., Any]] | None = None,
                 timeout_s: float = TOOL_TIMEOUT_S):
        if mode not in ("replay", "tools_config"):
            raise ValueError(f"unknown tool source {mode!r}")
        self.mode = mode
        self.tools = dict(tools or {})
        self.timeout_s = timeout_s

    def answer(self, conv: Conversation, round_idx: int, text: str) -> list[ToolAnswer]:
        """Answers for the call(s) in ``text`` (the model output that ended round ``round_idx - 1``)."""
        calls = parse_tool_calls(text)
        if not calls:  # None = malformed; [] cannot happen after a </tool_call> stop, treat alike
            name = _guess_name(text)
            return [ToolAnswer(malformed_call_message(text), name, False, "error")]
        recorded = conv.recorded_round(round_idx) if self.mode == "replay" else None
        answers = []
        for j, call in enumerate(calls):
            name = call["name"]
            if recorded is not None and j < len(recorded.answers) and _same_tool(recorded.call_names, j, name):
                answers.append(ToolAnswer(recorded.answers[j], name, True, "replay"))
            elif name in self.tools:
                answers.append(ToolAnswer(self._execute(name, call.get("arguments")), name, True, "tools_config"))
            else:
                answers.append(ToolAnswer(self._unavailable(name, conv, round_idx), name, True, "error"))
        return answers

    def _execute(self, name: str, arguments: Any) -> str:
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            return f"Error: arguments of '{name}' must be a JSON object, got {type(arguments).__name__}"
        try:
            with _deadline(self.timeout_s):
                result = self.tools[name](**arguments)
        except ToolTimeout:
            return f"Error: {name} did not answer within {self.timeout_s:g} s"
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's feedback, not the stage's
            return f"Error: {name} raised {type(exc).__name__}: {exc}"
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)

    def _unavailable(self, name: str, conv: Conversation, round_idx: int) -> str:
        known = sorted({*self.tools, *(t.get("function", t).get("name", "?") for t in conv.tools or [])})
        if self.mode == "replay" and not self.tools:
            return (f"Error: no recorded result for '{name}' at round {round_idx} and no executable tool "
                    f"(available tools: {', '.join(known) or 'none'})")
        return f"Error: unknown tool '{name}' (available tools: {', '.join(known) or 'none'})"


def malformed_call_message(text: str) -> str:
    return ('Error: the tool call could not be parsed; write exactly one JSON object '
            '<tool_call>{"name": "<tool>", "arguments": {...}}</tool_call>')


def _guess_name(text: str) -> str | None:
    tail = text.rsplit("<tool_call>", 1)[-1]
    m = _NAME_RE.search(tail)
    return m.group(1) if m else None


def _same_tool(recorded_names: list[str | None], j: int, name: str) -> bool:
    # Unknown recorded names (unparsable or absent) accept any call: replay is best effort there.
    recorded = recorded_names[j] if j < len(recorded_names) else None
    return recorded is None or recorded == name


# -- tools config ----------------------------------------------------------------------------------


def read_tool_targets(path: Path, field: str = "entropy.tools_config") -> dict[str, str]:
    """``tools: {name: "module:function" | "file.py:function" | {callable: ...}}`` → name → target
    string, validated. ``field``: the spec key that named the file, for the error message."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: tools config not found ({field} must name a YAML file)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputDataError(f"{path}: not valid YAML ({exc})") from exc
    entries = doc.get("tools") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InputDataError(f'{path}: expected a mapping `tools: {{name: "module:function"}}` with at least one tool')
    targets = {}
    for name, target in entries.items():
        if isinstance(target, dict):
            target = target.get("callable")
        if not isinstance(target, str) or ":" not in target:
            raise InputDataError(f'{path}: tools.{name}: expected "module:function" or {{callable: "module:function"}}')
        targets[str(name)] = target
    return targets


def load_tools_config(path: Path, field: str = "entropy.tools_config") -> dict[str, Callable[..., Any]]:
    """The tools config's callables (``read_tool_targets``); a ``file.py`` path is resolved relative
    to the config file."""
    path = Path(path)
    return {name: _import_callable(path, f"tools.{name}", target)
            for name, target in read_tool_targets(path, field).items()}


def _import_callable(config: Path, where: str, target: str) -> Callable[..., Any]:
    module_name, _, attr = target.rpartition(":")
    try:
        if module_name.endswith(".py"):
            file = (config.parent / module_name).resolve()
            spec = importlib.util.spec_from_file_location(file.stem, file)
            if spec is None or not file.is_file():
                raise FileNotFoundError(str(file))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise InputDataError(f"{config}: {where}: cannot import '{module_name}' ({type(exc).__name__}: {exc}); "
                             "name an importable module or a .py file relative to the config") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputDataError(f"{config}: {where}: '{module_name}' has no callable '{attr}'")
    return fn
