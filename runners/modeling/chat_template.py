"""The chat template of tiny models, and rendering helpers that work for any HF tokenizer.

The template is Qwen/Hermes style (``<|im_start|>role\\n…<|im_end|>``): tools go into the system
turn, assistant content (``<think>…</think>``, ``<tool_call>…</tool_call>``) is rendered verbatim,
structured OpenAI ``tool_calls`` become ``<tool_call>`` blocks, and consecutive tool turns are
wrapped in ``<tool_response>`` inside one user turn, as Qwen does. Tools are rendered compactly
(``- name(arg: type, opt?: type): description``) because the tools text dominates the prompt
length, and a tiny model's speed is proportional to it; for the same reason there is no
instruction text (a tiny model learns the answer format from SFT, not from instructions).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

CHAT_TEMPLATE = (
    "{%- macro fn_sig(tool) -%}"
    "{%- set fn = tool.function if tool.function is defined else tool -%}"
    "{%- set params = fn.parameters if fn.parameters is defined and fn.parameters else {} -%}"
    "{%- set props = params.properties if params.properties is defined else {} -%}"
    "{%- set required = params.required if params.required is defined else [] -%}"
    "- {{ fn.name }}("
    "{%- for name, schema in props.items() -%}"
    "{{ name }}{{ '' if name in required else '?' }}: {{ schema.type if schema.type is defined else 'any' }}"
    "{%- if schema.enum is defined %} in {{ schema.enum | join('|') }}{% endif -%}"
    "{{ ', ' if not loop.last else '' }}"
    "{%- endfor -%}"
    ")"
    "{%- if fn.description is defined and fn.description %}: {{ fn.description }}{% endif -%}"
    "{%- endmacro -%}"
    "{%- set ns = namespace(system='') -%}"
    "{%- if messages and messages[0].role == 'system' -%}{%- set ns.system = messages[0].content or '' -%}{%- endif -%}"
    "{%- if tools -%}"
    "{{- '<|im_start|>system\\n' -}}"
    "{%- if ns.system -%}{{- ns.system + '\\n' -}}{%- endif -%}"
    "{{- '# Tools\\n' -}}"
    "{%- for tool in tools -%}{{- fn_sig(tool) + ('<|im_end|>\\n' if loop.last else '\\n') -}}{%- endfor -%}"
    "{%- elif ns.system -%}"
    "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = message.content if message.content is string else '' -%}"
    "{%- if message.role == 'system' and loop.first -%}"
    "{%- elif message.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}"
    "{{- '\\n<tool_response>\\n' + content + '\\n</tool_response>' -}}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- elif message.role == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + content -}}"
    "{%- if message.tool_calls is defined and message.tool_calls -%}"
    "{%- for call in message.tool_calls -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{%- if content or not loop.first -%}{{- '\\n' -}}{%- endif -%}"
    "{{- '<tool_call>\\n{\"name\": \"' + fn.name + '\", \"arguments\": ' -}}"
    "{{- fn.arguments if fn.arguments is string else (fn.arguments | tojson) -}}"
    "{{- '}\\n</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- else -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _tools_list(tools: Any) -> list[dict] | None:
    """Tools as a list of dicts; accepts a JSON string (the parquet's ``extra_info.tools``)."""
    if tools is None:
        return None
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else []
    tools = [dict(t) for t in tools]
    return tools or None


def _messages_list(messages: Sequence[Any]) -> list[dict]:
    # Parquet rows arrive as numpy arrays of dicts; templates want plain lists of plain dicts.
    return [dict(m) for m in messages]


def render_prompt(tokenizer: Any, messages: Sequence[Any], tools: Any = None) -> str:
    """The prompt text for generating the next assistant turn (``add_generation_prompt``)."""
    return tokenizer.apply_chat_template(
        _messages_list(messages), tools=_tools_list(tools), tokenize=False, add_generation_prompt=True
    )


def render_text(tokenizer: Any, messages: Sequence[Any], tools: Any = None) -> str:
    """The whole conversation as text (no generation prompt)."""
    return tokenizer.apply_chat_template(
        _messages_list(messages), tools=_tools_list(tools), tokenize=False, add_generation_prompt=False
    )


def render_conversation(
    tokenizer: Any, messages: Sequence[Any], tools: Any = None, *, max_length: int | None = None,
    train_on: str = "all_assistant",
) -> tuple[list[int], list[int]]:
    """Token ids of a conversation and a 0/1 mask that is 1 on assistant tokens (content and the
    closing ``<|im_end|>``), for SFT.

    Each segment is tokenized on its own, so the prompt tokens equal ``render_prompt``'s tokens
    and the assistant tokens equal what the model would generate after it (BPE merges never
    cross the prompt/response boundary, as in generation). ``train_on``: ``all_assistant`` or
    ``last_assistant`` (only the final turn counts in the loss). ``max_length`` truncates from
    the right.
    """
    msgs = _messages_list(messages)
    tool_list = _tools_list(tools)
    full = tokenizer.apply_chat_template(msgs, tools=tool_list, tokenize=False)
    assistant_idx = [i for i, m in enumerate(msgs) if m.get("role") == "assistant"]
    if train_on == "last_assistant":
        assistant_idx = assistant_idx[-1:]
    # Character spans of the trained assistant turns in the full text, found by rendering prefixes.
    spans: list[tuple[int, int]] = []
    for i in assistant_idx:
        start = len(tokenizer.apply_chat_template(msgs[:i], tools=tool_list, tokenize=False, add_generation_prompt=True))
        through = tokenizer.apply_chat_template(msgs[: i + 1], tools=tool_list, tokenize=False)
        end = len(through)
        if through.endswith("\n"):  # the newline after <|im_end|> belongs to the scaffold
            end -= 1
        if not full.startswith(through[:end]) or start > end:
            raise ValueError("chat template is not prefix-consistent; cannot locate assistant turns")
        spans.append((start, end))
    ids: list[int] = []
    mask: list[int] = []
    pos = 0
    for start, end in spans:
        for text, flag in ((full[pos:start], 0), (full[start:end], 1)):
            if text:
                piece = tokenizer(text, add_special_tokens=False)["input_ids"]
                ids.extend(piece)
                mask.extend([flag] * len(piece))
        pos = end
    if pos < len(full):
        piece = tokenizer(full[pos:], add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        mask.extend([0] * len(piece))
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask
