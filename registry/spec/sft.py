"""``sft``: supervised warm start on the convert stage's data (assistant turns only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from registry.spec.base import MAX_BATCH, MAX_RECORDS, MAX_STEPS, MAX_TOKENS, SEED_MAX, SpecModel


class LoraSpec(SpecModel):
    """LoRA adapters through peft (builtin) or ms-swift (`--train_type lora`); the stage's output
    is always the merged full model, so later stages read `sft.model` the same way."""

    r: int = Field(8, ge=1, le=4096, description="Adapter rank (peft `r`, swift `--lora_rank`).")
    alpha: float = Field(32, gt=0, le=100_000, description="Scaling numerator (peft `lora_alpha`, swift `--lora_alpha`).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input (peft `lora_dropout`).")
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear", description="Module names to adapt, or `all-linear` (every linear layer but the LM head; the user's LoRA runs)."
    )


class SwiftSpec(SpecModel):
    """How `backend: swift` launches ms-swift (a subprocess of its own venv)."""

    executable: str = Field(".venv-swift/bin/swift", description="The `swift` CLI (relative paths resolve against the project root; scripts/setup-swift-venv.sh builds the default).")
    model_type: str | None = Field(None, description="swift `--model_type` (e.g. `qwen3`); None: swift infers it from the model's config.")
    template: str | None = Field(None, description="swift `--template` (e.g. `qwen3_nothinking`); None: the model type's default.")
    nproc_per_node: int = Field(1, ge=1, le=4096, description="GPUs per node (swift's NPROC_PER_NODE; >1 launches torchrun).")
    extra_args: dict[str, str | int | float | bool | list[str | int | float | bool]] = Field(
        default_factory=dict,
        description="More `swift sft` arguments as `{name: value}` (e.g. `{attn_impl: flash_attention_2, packing: true}`; a list passes several values); they win over generated ones.",
    )


class SFTSpec(SpecModel):
    """Masked next-token loss on assistant turns, AdamW, checkpoints, eval loss on the test split.

    Each example is the row's prompt plus its ground-truth answer as the final assistant turn,
    rendered with the model's chat template. Defaults warm-start the CPU demo's tiny model
    (docs/models.md has the measured format and reward rates)."""

    backend: Literal["builtin", "swift"] = Field("builtin", description="`builtin` torch loop (tiny and Hugging Face models) or ms-swift's `swift sft` (the user's SFT runs).")
    max_steps: int = Field(600, le=MAX_STEPS, ge=1, description="Optimizer steps (for a tiny model, the number of updates matters more than the batch size); ignored when `epochs` is set.")
    epochs: float | None = Field(None, gt=0, le=10_000, description="Passes over the train split; when set, steps = ceil(epochs x train rows / (batch_size x grad_accum)) instead of max_steps.")
    batch_size: int = Field(8, le=MAX_BATCH, ge=1, description="Sequences per micro-batch.")
    grad_accum: int = Field(1, le=100_000, ge=1, description="Micro-batches per optimizer step (effective batch = batch_size x grad_accum).")
    lr: float = Field(3e-3, le=1.0, gt=0, description="Peak learning rate (3e-3 suits a tiny model from scratch; ~1e-5 for a real one).")
    weight_decay: float = Field(0.0, le=10.0, ge=0, description="AdamW weight decay.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="LR schedule after warmup (cosine decays to 0 at max_steps).")
    warmup_steps: int = Field(10, le=MAX_STEPS, ge=0, description="Linear warmup steps.")
    max_length: int = Field(512, le=MAX_TOKENS, ge=16, description="Token limit per conversation; what happens to longer ones is `truncation`.")
    truncation: Literal["delete", "left", "right"] = Field(
        "delete",
        description="Conversations over max_length: `delete` skips them (counted in the stage info), `left`/`right` cut tokens from the start/end (ms-swift's `truncation_strategy` names).",
    )
    grad_clip: float = Field(1.0, le=1e6, gt=0, description="Max gradient norm.")
    train_on: Literal["all_assistant", "last_assistant"] = Field(
        "all_assistant",
        description="Assistant turns in the loss: every one (earlier tool-calling turns too) or only the final answer.",
    )
    group_by_length: bool = Field(
        True, description="Batch examples of similar length together (less padding, same data per epoch)."
    )
    eval_every: int = Field(100, le=MAX_STEPS, ge=1, description="Evaluate test loss every N steps (and at the end).")
    eval_samples: int = Field(64, le=MAX_RECORDS, ge=1, description="Test records used for the eval loss.")
    format_samples: int = Field(32, le=MAX_RECORDS, ge=0, description="Test prompts answered greedily at the end to measure sft/format_rate and sft/reward_rate (0: skip).")
    save_every: int = Field(200, le=MAX_STEPS, ge=1, description="Checkpoint every N steps into the stage's work dir; a rerun resumes from the newest.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Data order and dropout seed.")
    lora: LoraSpec | None = Field(None, description="Train LoRA adapters instead of every weight (None: full fine-tuning); the output is merged.")
    swift: SwiftSpec = Field(default_factory=SwiftSpec, description="ms-swift launch settings (backend: swift).")

    @model_validator(mode="after")
    def _warmup_fits(self) -> "SFTSpec":
        if self.epochs is None and self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be below max_steps ({self.max_steps}); lower warmup_steps"
            )
        return self
