"""``sft``: supervised warm start on the convert stage's data (assistant turns only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import SpecModel


class SFTSpec(SpecModel):
    """Masked next-token loss on assistant turns, AdamW, checkpoints, eval loss on the test split."""

    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    batch_size: int = Field(32, ge=1, description="Sequences per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="LR schedule after warmup.")
    warmup_steps: int = Field(10, ge=0, description="Linear warmup steps.")
    max_length: int = Field(512, ge=16, description="Truncate rendered conversations to this many tokens.")
    grad_clip: float = Field(1.0, gt=0, description="Max gradient norm.")
    eval_every: int = Field(50, ge=1, description="Evaluate test loss every N steps.")
    save_every: int = Field(100, ge=1, description="Checkpoint every N steps.")
    seed: int = Field(0, description="Data order and dropout seed.")
