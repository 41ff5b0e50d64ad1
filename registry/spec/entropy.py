"""``entropy``: entropy of the first k tokens after each tool round (ARPO finding, seeds 000/001)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import SpecModel


class EntropySpec(SpecModel):
    models: list[str] = Field(
        default_factory=list,
        description="Models to profile: paths or @spec references; empty = this spec's merged model.",
    )
    dataset: str | None = Field(None, description="JSONL of messages with `tools`; default = convert's test split.")
    tool_source: Literal["replay", "tools_config"] = Field("replay", description="Where tool results come from.")
    tools_config: str | None = Field(None, description="YAML naming Python callables per tool (tool_source: tools_config).")
    num_samples: int = Field(32, ge=1, description="Conversations to roll out.")
    batch_size: int = Field(8, ge=1, description="Conversations per generation batch.")
    max_prompt_length: int = Field(1024, ge=8, description="Prompt tokens kept.")
    max_response_length: int = Field(256, ge=1, description="New tokens per round.")
    max_rounds: int = Field(5, ge=1, description="Tool rounds per conversation.")
    k: int = Field(20, ge=1, description="Tokens after each round whose entropy is averaged.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature (entropy is on scaled logits).")
    seed: int = Field(0, description="Sampling seed.")
