"""One input record → one verl row, and the rules a record must meet (domain.md §1).

Row: ``{data_source, prompt: messages[:-1] as {role, content}, ability,
reward_model: {style: "rule", ground_truth: messages[-1].content},
extra_info: {split, index, source_index, tools}}``.

``extra_info.tools`` is the record's OpenAI tool list as one JSON string (``null`` when the record
has none). Why a string: each tool's ``parameters`` schema has different keys and value types, and
Arrow needs one struct type per column, so a nested column would add every key of every tool to
every row as nulls (and fails outright on mixed types such as an ``enum`` of ints in one tool and
strings in another). A string round-trips exactly; readers ``json.loads`` it to render the prompt
with ``apply_chat_template(prompt, tools=…)``.
"""

from __future__ import annotations

import json
from typing import Any

ROLES = ("system", "user", "assistant", "tool")


class BadRecord(ValueError):
    """A record that breaks a rule; the message says which and where inside the record."""


def _text(content: Any, where: str) -> str:
    """Message content as text: a string, or OpenAI content parts of type ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise BadRecord(f"{where}.content must be a string (got {type(content).__name__})")


def _tool_calls_text(tool_calls: Any, where: str) -> str:
    # OpenAI structured calls → the Hermes text the reward and chat templates use
    if not isinstance(tool_calls, list) or not tool_calls:
        raise BadRecord(f"{where} has no content and no tool_calls")
    blocks = []
    for i, tc in enumerate(tool_calls):
        fn = tc.get("function", tc) if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise BadRecord(f"{where}.tool_calls[{i}] needs a function name")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                raise BadRecord(f"{where}.tool_calls[{i}].arguments is not valid JSON") from None
        blocks.append("<tool_call>\n" + json.dumps({"name": fn["name"], "arguments": args}, ensure_ascii=False)
                      + "\n</tool_call>")
    return "\n".join(blocks)


def _message(msg: Any, i: int) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise BadRecord(f"{where} is not an object with role and content")
    role = msg.get("role")
    if role not in ROLES:
        raise BadRecord(f"{where}.role is {role!r}; use one of {', '.join(ROLES)}")
    content = msg.get("content")
    if content is None or (content == "" and msg.get("tool_calls")):
        text = _tool_calls_text(msg.get("tool_calls"), where)
    else:
        text = _text(content, where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord(f"{where}.content holds an invalid character (a lone surrogate escape)") from None
    return {"role": role, "content": text}


def _tools_json(tools: Any) -> str | None:
    if tools is None:
        return None
    if isinstance(tools, str):  # some exports store the tool list as a JSON string already
        try:
            tools = json.loads(tools)
        except ValueError:
            raise BadRecord("`tools` is a string but not valid JSON") from None
        if isinstance(tools, dict):
            tools = [tools]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRecord("`tools` must be a list of OpenAI function schemas")
    try:
        return json.dumps(tools, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        raise BadRecord("`tools` is not JSON-serialisable") from None


def normalize(record: Any) -> tuple[list[dict[str, str]], str, str | None]:
    """``(prompt messages, ground truth, tools JSON)`` or ``BadRecord``."""
    if not isinstance(record, dict):
        raise BadRecord(f"the record is a {type(record).__name__}, not an object with `messages`")
    messages = record.get("messages")
    if messages is None:
        raise BadRecord("the record has no `messages`")
    if not isinstance(messages, list) or not messages:
        raise BadRecord("`messages` must be a non-empty list")
    turns = [_message(m, i) for i, m in enumerate(messages)]
    last = turns[-1]
    if last["role"] != "assistant":
        raise BadRecord(f"the last message must be the assistant answer, but its role is {last['role']!r}")
    if not last["content"].strip():
        raise BadRecord("the last (assistant) message is empty")
    if len(turns) < 2:
        raise BadRecord("there is no prompt before the assistant answer (need at least one user turn)")
    return turns[:-1], last["content"], _tools_json(record.get("tools"))


TOOLS_HEADER = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


def with_tools_in_system(prompt: list[dict[str, str]], tools: str | None) -> list[dict[str, str]]:
    """The prompt with the tools block (Qwen2.5/Qwen3 chat-template wording) appended to the
    system message, or prepended as a system message when the prompt has none."""
    if not tools:
        return prompt
    block = TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in json.loads(tools)) + TOOLS_FOOTER
    if prompt and prompt[0]["role"] == "system":
        return [{"role": "system", "content": prompt[0]["content"] + block}, *prompt[1:]]
    return [{"role": "system", "content": block.lstrip("\n")}, *prompt]


def to_row(prompt: list[dict[str, str]], ground_truth: str, tools: str | None, *, data_source: str,
           ability: str, split: str, index: int, source_index: int) -> dict[str, Any]:
    return {
        "data_source": data_source,
        "prompt": prompt,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"split": split, "index": index, "source_index": source_index, "tools": tools},
    }
