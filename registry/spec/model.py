"""``model``: the policy being trained (a local HF directory or a tiny model built on the spot)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from registry.spec.base import MAX_THREADS, MAX_TOKENS, SEED_MAX, SpecModel, check_cpu_threads

Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda"]


class TinyModelSpec(SpecModel):
    """A small Qwen2/Llama-architecture model with a BPE tokenizer trained on the stage's data.
    Built deterministically from ``seed``; no hub download."""

    architecture: Literal["qwen2", "llama"] = Field("qwen2", description="Transformers architecture.")
    hidden_size: int = Field(128, ge=16, le=4096, description="Model width.")
    num_layers: int = Field(2, ge=1, le=64, description="Decoder layers.")
    num_heads: int = Field(4, ge=1, le=64, description="Attention heads (must divide hidden_size).")
    num_kv_heads: int | None = Field(None, le=64, ge=1, description="KV heads (GQA); default = num_heads.")
    intermediate_size: int | None = Field(
        None, le=65_536, ge=16, description="MLP width; default 2 x hidden_size (a tiny model's step time is mostly its MLP)."
    )
    vocab_size: int = Field(800, ge=300, le=200_000, description="BPE vocabulary size to train.")
    max_position_embeddings: int = Field(2048, le=MAX_TOKENS, ge=64, description="Context length.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Weight-init seed; same spec + same training texts -> byte-identical model files.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "TinyModelSpec":
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class ModelSpec(SpecModel):
    """The policy model. Exactly one of ``path`` or ``tiny``."""

    path: str | None = Field(
        None,
        description="Local Hugging Face model directory (config, weights, tokenizer). $VAR is "
        "expanded at run time, so GPU-server paths can live in the environment.",
    )
    tiny: TinyModelSpec | None = Field(None, description="Build a tiny model locally (CPU demo, tests).")
    dtype: Dtype = Field("float32", description="Parameter dtype for training/inference.")
    device: Device = Field("auto", description="`auto` = cuda when available, else cpu.")
    trust_remote_code: bool = Field(False, description="Passed to transformers when loading `path`.")
    cpu_threads: int | None = Field(
        None, le=MAX_THREADS, ge=1,
        description="torch intra-op threads when running on CPU (null = torch's default). A tiny "
        "model's matrices are too small to split: on a shared 2-core box 1 thread ran SFT ~3x "
        "faster than 2 (docs/models.md).",
    )

    @field_validator("cpu_threads")
    @classmethod
    def _cpu_threads_fit(cls, value: int | None) -> int | None:
        return check_cpu_threads(value)

    @model_validator(mode="after")
    def _one_model(self) -> "ModelSpec":
        if (self.path is None) == (self.tiny is None):
            raise ValueError("set exactly one of `path` (a local HF model dir) or `tiny` (build one)")
        return self
