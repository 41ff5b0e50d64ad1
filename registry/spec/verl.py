"""``train.verl``: settings used only when ``train.backend: verl`` (launch on Ray/GPUs).

The algorithm, rollout, optimizer and batch settings live in the shared ``train`` sections; this
section holds what only a verl launch needs (where verl lives, the cluster shape, the rollout engine,
FSDP memory settings) plus ``verl_overrides`` for any verl key the spec does not model.
Defaults are the values of the user's verl7/verl8 runs (domain.md §1).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from registry.spec.base import MAX_BATCH, MAX_TIMEOUT_S, SpecModel

# A dotted Hydra key, optionally prefixed with + (add), ++ (add or override) or ~ (delete).
_OVERRIDE_KEY_RE = re.compile(r"^(\+\+|\+|~)?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


class VerlSpec(SpecModel):
    """How to launch ``python -m verl.trainer.main_ppo`` for this spec."""

    python: str = Field(
        ".venv-verl/bin/python",
        description="Python interpreter of the environment where verl is installed (created by "
        "scripts/setup-verl-venv.sh). Relative paths resolve from the project root; $VAR is expanded.",
    )
    nnodes: int = Field(1, le=4096, ge=1, description="trainer.nnodes: machines in the Ray cluster.")
    n_gpus_per_node: int = Field(4, le=64, ge=1, description="trainer.n_gpus_per_node")
    ray_address: str | None = Field(
        None,
        description="Existing Ray cluster address (e.g. `ray://head:10001` or `auto`); "
        "null = verl starts a local Ray instance on this machine.",
    )
    project_name: str = Field(
        "hardtry", description="trainer.project_name (verl's experiment grouping; the MLflow run is given explicitly)."
    )
    rollout_engine: Literal["vllm", "sglang", "trtllm"] = Field("vllm", description="actor_rollout_ref.rollout.name")
    rollout_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="actor_rollout_ref.rollout.dtype"
    )
    gpu_memory_utilization: float = Field(0.6, gt=0, le=1, description="Rollout engine GPU memory share.")
    tensor_model_parallel_size: int = Field(1, le=64, ge=1, description="Rollout tensor parallel size.")
    ppo_micro_batch_size_per_gpu: int = Field(
        1, le=MAX_BATCH, ge=1, description="Micro batch per GPU for the actor update and the ref/rollout log-prob passes."
    )
    param_offload: bool = Field(True, description="FSDP parameter offload (actor and ref).")
    optimizer_offload: bool = Field(True, description="FSDP optimizer-state offload (actor and ref).")
    use_remove_padding: bool = Field(True, description="actor_rollout_ref.model.use_remove_padding")
    gradient_checkpointing: bool = Field(True, description="actor_rollout_ref.model.enable_gradient_checkpointing")
    truncation: Literal["error", "left", "right", "middle"] = Field(
        "left", description="data.truncation: what verl does with a prompt longer than max_prompt_length."
    )
    filter_overlong_prompts: bool = Field(True, description="data.filter_overlong_prompts: drop prompts that are too long.")
    val_before_train: bool = Field(True, description="trainer.val_before_train")
    max_actor_ckpt_to_keep: int | None = Field(
        2, le=10_000, ge=1, description="trainer.max_actor_ckpt_to_keep (older global_step_N dirs are deleted); null = keep all."
    )
    checkpoint_dir: str | None = Field(
        None,
        description="trainer.default_local_dir; null = the train stage's persistent work dir, so a rerun "
        "of the same spec resumes. Set it to shared storage for multi-node runs.",
    )
    resume_mode: Literal["auto", "disable", "resume_path"] = Field(
        "auto", description="trainer.resume_mode; `auto` continues from the newest checkpoint in checkpoint_dir."
    )
    timeout_s: int | None = Field(
        None, le=MAX_TIMEOUT_S, ge=1, description="Kill verl after this many seconds (the stage then fails); null = no limit."
    )
    verl_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Dotted verl keys passed as Hydra command-line overrides after everything else, for "
        "anything the spec does not model (e.g. `actor_rollout_ref.rollout.enforce_eager: true`). "
        "Prefix a key with `+` to add one verl's config lacks. Checked against verl's own config "
        "before launch.",
    )

    @field_validator("verl_overrides")
    @classmethod
    def _override_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 1000:
            raise ValueError(f"verl_overrides has {len(value)} keys (at most 1000; model the rest in the spec)")
        for key in value:
            if len(key) > 200:  # becomes an MLflow param key train.verl.verl_overrides.<key> (≤ 250)
                raise ValueError(f"verl_overrides key '{key[:40]}…' is {len(key)} characters (at most 200; shorten it)")
            if not _OVERRIDE_KEY_RE.match(key):
                raise ValueError(
                    f"verl_overrides key '{key}' is not a dotted verl key "
                    "(write it like `actor_rollout_ref.rollout.enforce_eager`, `+` in front to add a new key)"
                )
        return value
