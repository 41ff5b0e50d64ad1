"""``generate``: q* optimal-sampling data generation (seed 003, domain.md §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import SpecModel


class GenerateSpec(SpecModel):
    model_theta: str | None = Field(None, description="Policy π_θ: path or @spec ref; default = the spec's model.")
    model_t: str | None = Field(None, description="Target π_t; null = same as model_theta (then q* = π_θ).")
    dataset: str | None = Field(None, description="JSON/JSONL/parquet of prompts; default = convert's train split.")
    prompt_field: str | None = Field(None, description="Prompt field; auto-detected when null.")
    response_field: str | None = Field(None, description="Reference response field; auto-detected when null.")
    alpha_method: Literal["fixed", "kl_symmetry", "entropy"] = Field("kl_symmetry", description="How α is chosen per token.")
    fixed_alpha: float = Field(0.5, ge=0, le=1, description="α for alpha_method: fixed.")
    alpha_tol: float = Field(1e-6, gt=0, description="Tolerance of the KL-symmetry root.")
    num_samples: int | None = Field(None, ge=1, description="Prompts to generate for; null = all.")
    start_idx: int | None = Field(None, ge=0, description="First sample index (default: resume after the last one written).")
    batch_size: int = Field(8, ge=1, description="Prompts decoded together.")
    max_new_tokens: int = Field(256, ge=1, description="Generation cap.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    top_k: int = Field(0, ge=0, description="Top-k (0 = off).")
    seed: int = Field(0, description="Sampling seed.")
