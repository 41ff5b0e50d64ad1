"""``entropy``: entropy of the first k tokens after each tool round (ARPO finding, seeds 000/001).

The stage rolls out tool-using conversations turn by turn: the model generates until it emits a
tool call (``</tool_call>``) or ends; the tool's answer is appended as a ``tool`` turn and the model
continues, up to ``max_rounds`` tool rounds. Round 0 is the first generation (before any tool
call); round r ≥ 1 is the generation that reads the r-th tool answer.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from registry.spec.base import (
    MAX_BATCH,
    MAX_RECORDS,
    MAX_TEMPERATURE,
    MAX_THREADS,
    MAX_TOKENS,
    SEED_MAX,
    SpecModel,
    check_cpu_threads,
)


class EntropySpec(SpecModel):
    """Entropy-after-tool-call profile of one or more models (docs/entropy.md)."""

    models: list[str] = Field(
        default_factory=list,
        description="Models to profile, one entropy profile each (overlaid in one figure): local "
        "HF directories ($VAR expanded) or `@spec` / `@spec:stage.output` references to another "
        "spec's latest finished run. Empty = this spec's own model: the merge/train/sft stage "
        "output when the pipeline has one, else `model.path`.",
    )
    labels: list[str] = Field(
        default_factory=list,
        description="Display names for `models`, same order (default: the spec name of an `@spec` "
        "reference, else the directory name).",
    )
    dataset: str | None = Field(
        None,
        description="JSONL of `{\"messages\": [...], \"tools\": [...]}` records, or a verl parquet "
        "(prompt / extra_info.tools columns). Default: the convert stage's test split, else its "
        "train split.",
    )
    split: Literal["test", "train"] = Field(
        "test", description="Which convert split to read when `dataset` is not set."
    )
    tool_source: Literal["replay", "tools_config"] = Field(
        "replay",
        description="Where a tool call's answer comes from. `replay`: the dataset's own tool turn "
        "for that round (falls back to `tools_config` callables when the record has no recorded "
        "answer for the round and a config is set, else an explanatory error message). "
        "`tools_config`: always execute the Python callables named in `tools_config`. A malformed "
        "or unknown call always gets an error message as its answer.",
    )
    tools_config: str | None = Field(
        None,
        description="YAML mapping tool names to Python callables (`tools: {name: module:function}`), "
        "like the seed's --tools_config; e.g. specs/tools/demo_tools.yaml.",
    )
    backend: Literal["builtin", "vllm"] = Field(
        "builtin",
        description="`builtin`: transformers with a KV cache, exact full-vocabulary entropy. "
        "`vllm` (optional extra, GPU): entropy approximated from the top `vllm_logprobs` "
        "log-probabilities per token (a lower bound); the run is tagged with the estimator.",
    )
    vllm_logprobs: int = Field(
        20, ge=1, le=100, description="vllm backend: log-probabilities returned per position."
    )
    num_samples: int = Field(32, le=MAX_RECORDS, ge=1, description="Conversations to roll out (seed: --num_samples).")
    batch_size: int = Field(8, le=MAX_BATCH, ge=1, description="Conversations per generation batch (seed: --batch_size).")
    max_prompt_length: int = Field(
        1024, le=MAX_TOKENS,
        ge=8,
        description="Longest initial prompt in tokens (seed: --max_prompt_length); longer "
        "conversations are skipped and counted, never silently truncated.",
    )
    max_response_length: int = Field(
        256, le=MAX_TOKENS,
        ge=1,
        description="Model-generated tokens per conversation across all rounds (seed: "
        "--max_response_length); each round gets what is left of this budget.",
    )
    max_rounds: int = Field(5, le=1000, ge=1, description="Tool rounds per conversation (tool answers read).")
    k: int = Field(
        20, le=MAX_TOKENS, ge=1, description="Leading tokens of each round whose normalised entropy is averaged."
    )
    temperature: float = Field(
        1.0, le=MAX_TEMPERATURE, gt=0, description="Sampling temperature; entropy is computed on the same scaled logits."
    )
    greedy: bool = Field(
        False,
        description="Pick the argmax token instead of sampling (entropy is still of the "
        "temperature-scaled distribution).",
    )
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Sampling seed.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Model dtype; `auto` = the spec's `model.dtype`, else float32."
    )
    cpu_threads: int | None = Field(
        None, le=MAX_THREADS,
        ge=1,
        description="torch intra-op threads while this stage decodes on CPU (restored afterwards); "
        "null = torch's default. Tiny models decode much faster with 1: their per-token ops are too "
        "small to split, and on a busy machine thread synchronisation dominates.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="`auto` = the spec's `model.device`, else cuda when available."
    )

    @field_validator("cpu_threads")
    @classmethod
    def _cpu_threads_fit(cls, value: int | None) -> int | None:
        return check_cpu_threads(value)

    @model_validator(mode="after")
    def _consistent(self) -> EntropySpec:
        if self.tool_source == "tools_config" and not self.tools_config:
            raise ValueError(
                "tool_source 'tools_config' needs `tools_config` (a YAML naming a Python callable "
                "per tool, e.g. specs/tools/demo_tools.yaml), or use tool_source: replay"
            )
        if self.labels and len(self.labels) != len(self.models):
            raise ValueError(
                f"`labels` has {len(self.labels)} entries but `models` has {len(self.models)} "
                "(give one label per model, or drop `labels`)"
            )
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("`labels` must be distinct (they name the profiles in the figure)")
        return self
