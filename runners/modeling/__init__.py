"""Models shared by the sft, train, merge, eval, entropy and generate stages.

- ``build_tiny_model``: a tiny Qwen2/Llama model + BPE tokenizer built locally and deterministically.
- ``load_model``: ``(model, tokenizer)`` from an HF dir on a device/dtype (left padding).
- ``render_prompt`` / ``render_conversation``: the chat template (tools, think, tool calls) and
  the assistant-token mask for SFT.
- ``resolve_base_model``: the spec's ``model`` section → a local HF directory.
"""

from runners.modeling.builder import (
    CONTROL_TOKENS,
    FORMAT_TOKENS,
    IM_END,
    IM_START,
    PAD_TOKEN,
    THINK_END,
    THINK_START,
    TOOL_CALL_END,
    TOOL_CALL_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
    build_tiny_model,
)
from runners.modeling.chat_template import CHAT_TEMPLATE, render_conversation, render_prompt, render_text
from runners.modeling.loading import (
    apply_cpu_threads,
    iter_parquet_records,
    load_model,
    pick_device,
    render_record_text,
    resolve_base_model,
    texts_from_parquet,
    validate_model_dir,
)

__all__ = [
    "CHAT_TEMPLATE",
    "CONTROL_TOKENS",
    "FORMAT_TOKENS",
    "IM_END",
    "IM_START",
    "PAD_TOKEN",
    "THINK_END",
    "THINK_START",
    "TOOL_CALL_END",
    "TOOL_CALL_START",
    "TOOL_RESPONSE_END",
    "TOOL_RESPONSE_START",
    "apply_cpu_threads",
    "build_tiny_model",
    "iter_parquet_records",
    "load_model",
    "pick_device",
    "render_conversation",
    "render_prompt",
    "render_record_text",
    "render_text",
    "resolve_base_model",
    "texts_from_parquet",
    "validate_model_dir",
]
