"""``train.verl``: settings used only when ``train.backend: verl`` (launch on Ray/GPUs)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from registry.spec.base import SpecModel


class VerlSpec(SpecModel):
    """How to launch ``python -m verl.trainer.main_ppo`` for this spec."""

    python: str = Field(
        "python",
        description="Python interpreter of the environment where verl is installed "
        "(e.g. .venv-verl/bin/python). $VAR is expanded at run time.",
    )
    nnodes: int = Field(1, ge=1, description="trainer.nnodes")
    n_gpus_per_node: int = Field(4, ge=1, description="trainer.n_gpus_per_node")
    ray_address: str | None = Field(None, description="Existing Ray cluster address; null = start a local one.")
    rollout_engine: str = Field("vllm", description="actor_rollout_ref.rollout.name")
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1, description="Rollout engine GPU memory share.")
    tensor_model_parallel_size: int = Field(1, ge=1, description="Rollout tensor parallel size.")
    ppo_micro_batch_size_per_gpu: int = Field(1, ge=1, description="Micro batch per GPU (actor/ref/rollout log-prob).")
    checkpoint_dir: str | None = Field(
        None, description="trainer.default_local_dir; default = the stage's output directory."
    )
    resume_mode: str = Field("auto", description="trainer.resume_mode; `auto` continues from the newest checkpoint.")
    verl_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted verl keys passed through as-is (prefix a key with `+` to add a new one), "
        "for anything the spec does not model.",
    )
