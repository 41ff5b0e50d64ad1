"""``generate``: q* optimal-sampling data generation (seed 003, domain.md §5).

Per token, q*(v) ∝ π_θ(v)^(1−α) · π_t(v)^α (α weights the target π_t), with α fixed, solved for
KL symmetry, or approximated from the two entropies. See docs/generate.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from registry.spec.base import MAX_BATCH, MAX_RECORDS, MAX_TEMPERATURE, MAX_TOKENS, SEED_MAX, SpecModel


class PerturbSpec(SpecModel):
    """Derive π_t from π_θ by adding seeded Gaussian noise to every weight: two genuinely different
    models that share one tokenizer (the CPU demo and tests; also a cheap ablation on real models)."""

    seed: int = Field(1, ge=0, le=SEED_MAX, description="Noise seed (a different seed gives a different π_t).")
    scale: float = Field(
        0.5, le=100.0, gt=0, description="Noise std as a multiple of each weight tensor's own std."
    )


class GenerateSpec(SpecModel):
    """Sample responses token by token from q* mixing two models, with per-token α and diagnostics.
    Output: JSONL of ``{"messages": [...prompt, assistant], "sample_idx", ...original fields}`` plus
    ``.diagnostics.jsonl``; written incrementally and resumed after the last complete sample."""

    # -- models
    model_theta: str | None = Field(
        None,
        description="Policy π_θ: local HF dir, $VAR path or @spec[:stage.output] ref. Null = this "
        "run's merged/SFT model if an earlier stage made one, else the spec's `model`.",
    )
    model_t: str | None = Field(
        None,
        description="Target π_t (same forms). Null = same as model_theta, then q* = π_θ and α is "
        "irrelevant (only one model runs) — unless `perturb_target` derives one.",
    )
    perturb_target: PerturbSpec | None = Field(
        None, description="Build π_t as a seeded noisy copy of π_θ (only when model_t is null)."
    )
    # -- data
    dataset: str | None = Field(
        None,
        description="Prompts: a JSON/JSONL/parquet file, a datasets save_to_disk directory or a local "
        "dataset directory (path or @spec:stage.output; Hub ids are refused). Null = the convert stage's train split.",
    )
    messages_field: str | None = Field(
        None, description="Field holding OpenAI-style messages; auto-detected (`messages`, `prompt` as a list)."
    )
    prompt_field: str | None = Field(
        None, description="Prompt text field; auto-detected (prompt, question, instruction, problem, input, query, text)."
    )
    response_field: str | None = Field(
        None, description="Reference response field, kept as `reference_response`; auto-detected (response, answer, …)."
    )
    adapter: str = Field(
        "auto",
        description="How a record becomes a prompt: `auto` (detect the fields), `generic` (prompt_field or "
        "messages_field must be set, no detection) or a dotted path package.module.Class to a subclass of "
        "runners.generate.adapters.DatasetAdapter.",
    )
    adapter_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for a custom adapter's constructor."
    )
    split: str | None = Field(
        None, description="Split of a dataset directory (a datasets save_to_disk DatasetDict, or a local dir with "
        "train/test files). Not for single files.",
    )
    num_samples: int | None = Field(None, le=MAX_RECORDS, ge=1, description="Prompts to generate for, from the start index; null = all.")
    start_idx: int | None = Field(
        None, le=MAX_RECORDS, ge=0,
        description="First dataset row to generate for (default 0). A rerun of the same spec always "
        "resumes after the last complete sample already written.",
    )
    # -- q*
    alpha_method: Literal["fixed", "kl_symmetry", "entropy"] = Field(
        "kl_symmetry",
        description="`fixed`: α = fixed_alpha. `kl_symmetry`: root of KL(q‖π_θ) = KL(q‖π_t) per "
        "token (safeguarded Newton). `entropy`: α ≈ H(π_t)/(H(π_θ)+H(π_t)).",
    )
    fixed_alpha: float = Field(0.5, ge=0, le=1, description="α for alpha_method: fixed (weight on π_t).")
    alpha_tol: float = Field(1e-6, gt=0, le=0.1, description="Tolerance on α of the KL-symmetry root.")
    alpha_support_eps: float = Field(
        1e-5, ge=0, lt=1,
        description="CPU fast path: solve on tokens with π_θ or π_t above this, lumping the rest "
        "into one tail outcome. 0 = always the exact full-vocabulary solve.",
    )
    alpha_max_tail: float = Field(
        0.02, gt=0, le=1,
        description="Rows whose lumped tail mass exceeds this are re-solved exactly on the full vocabulary.",
    )
    alpha_gap_rtol: float = Field(
        5e-3, gt=0, le=1,
        description="Certificate of the compact solve: a row whose exact |KL(q‖π_θ) − KL(q‖π_t)| exceeds "
        "this × the larger KL (+ 1e-6) is re-solved exactly on the full vocabulary.",
    )
    # -- decoding
    batch_size: int = Field(8, le=MAX_BATCH, ge=1, description="Prompts decoded together (one output flush per batch).")
    max_new_tokens: int = Field(256, le=MAX_TOKENS, ge=1, description="Generation cap per response.")
    temperature: float = Field(1.0, le=MAX_TEMPERATURE, gt=0, description="Applied to both models' logits before mixing.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling on q* (1 = off).")
    top_k: int = Field(0, le=10_000_000, ge=0, description="Top-k on q* (0 = off).")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Sampling seed (per batch: seed + first sample_idx, so resume is reproducible).")
    max_prompt_tokens: int | None = Field(
        None, le=MAX_TOKENS, ge=1, description="Keep only the last N prompt tokens (null = no limit)."
    )
    # -- outputs
    token_diagnostics: bool = Field(
        True, description="Also store per-token α/ESS/KL arrays in the .diagnostics.jsonl records."
    )
    log_examples: int = Field(5, le=10_000, ge=0, description="Generated samples logged to MLflow as a table.")

    @model_validator(mode="after")
    def _perturb_needs_no_target(self) -> GenerateSpec:
        if self.perturb_target is not None and self.model_t is not None:
            raise ValueError(
                "set either `model_t` (a second model) or `perturb_target` (derive π_t from π_θ), not both"
            )
        return self
