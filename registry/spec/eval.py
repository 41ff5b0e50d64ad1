"""``eval``: tool-call evaluation with repeats (builtin) or BFCL against a vLLM server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import SpecModel


class BfclSpec(SpecModel):
    """The user's real path: `vllm serve` + `bfcl generate` + `bfcl evaluate`."""

    test_category: str = Field("multi_turn_base", description="BFCL test category.")
    base_url: str | None = Field(None, description="Use an existing OpenAI-compatible endpoint instead of starting vLLM.")
    bfcl_command: str = Field("bfcl", description="The `bfcl` executable (e.g. .venv-bfcl/bin/bfcl).")
    port: int = Field(8000, ge=1, le=65535, description="Port for the vLLM server.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm serve --tensor-parallel-size")
    dtype: str = Field("bfloat16", description="vllm serve --dtype")
    max_model_len: int = Field(16384, ge=256, description="vllm serve --max-model-len")
    startup_timeout_s: int = Field(900, ge=1, description="Seconds to wait for /v1/models.")


class EvalSpec(SpecModel):
    backend: Literal["builtin", "bfcl"] = Field("builtin", description="`builtin` transformers or `bfcl` + vLLM.")
    model: str | None = Field(
        None, description="Model to evaluate; default = the merge stage's output. A path or @spec reference."
    )
    repeats: int = Field(5, ge=1, le=100, description="Independent repeats (distinct seeds) for mean and CI.")
    max_samples: int | None = Field(None, ge=1, description="Evaluate at most this many test records.")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch.")
    do_sample: bool = Field(True, description="Sample (repeats differ) or greedy.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_new_tokens: int = Field(256, ge=1, description="Generation length cap.")
    seed: int = Field(1234, description="Base seed; repeat r uses seed + r.")
    bfcl: BfclSpec = Field(default_factory=BfclSpec, description="Settings for backend: bfcl.")
