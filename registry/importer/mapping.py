"""hardtry experiment files -> spec fields: the tables, and the pass that makes the spec's verl
config equal the composed Hydra config on every key verl reads.

Every verl key the user's files set is mapped to the spec field that writes it (``VERL_TO_SPEC``),
or kept as a ``train.verl.verl_overrides`` entry, or reported: a key verl's ``ppo_trainer`` does
not have is ignored by verl (``trainer.max_checkpoint_limit``), and ``DELIBERATE`` keys are the
ones rlreg sets on purpose (its data files, MLflow logging, the reward key main_ppo reads).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# verl key -> spec field (dotted path into the spec document)
VERL_TO_SPEC: dict[str, str] = {
    "algorithm.adv_estimator": "train.algorithm.adv_estimator",
    "algorithm.norm_adv_by_std_in_grpo": "train.algorithm.norm_adv_by_std_in_grpo",
    "data.train_batch_size": "train.train_batch_size",
    "data.max_prompt_length": "train.rollout.max_prompt_length",
    "data.max_response_length": "train.rollout.max_response_length",
    "data.truncation": "train.verl.truncation",
    "data.filter_overlong_prompts": "train.verl.filter_overlong_prompts",
    "actor_rollout_ref.model.path": "model.path",
    "actor_rollout_ref.model.trust_remote_code": "model.trust_remote_code",
    "actor_rollout_ref.model.use_remove_padding": "train.verl.use_remove_padding",
    "actor_rollout_ref.model.enable_gradient_checkpointing": "train.verl.gradient_checkpointing",
    # LoRA: a section (verl's lora_rank 0 = off, so the import keeps the section only for rank > 0)
    "actor_rollout_ref.model.lora_rank": "train.verl.lora.rank",
    "actor_rollout_ref.model.lora_alpha": "train.verl.lora.alpha",
    "actor_rollout_ref.model.target_modules": "train.verl.lora.target_modules",
    "actor_rollout_ref.actor.ppo_mini_batch_size": "train.ppo_mini_batch_size",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": "train.verl.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.ppo_epochs": "train.ppo_epochs",
    "actor_rollout_ref.actor.use_kl_loss": "train.algorithm.use_kl_loss",
    "actor_rollout_ref.actor.kl_loss_coef": "train.algorithm.kl_loss_coef",
    "actor_rollout_ref.actor.kl_loss_type": "train.algorithm.kl_loss_type",
    "actor_rollout_ref.actor.entropy_coeff": "train.algorithm.entropy_coeff",
    "actor_rollout_ref.actor.clip_ratio_low": "train.algorithm.clip_ratio_low",
    "actor_rollout_ref.actor.clip_ratio_high": "train.algorithm.clip_ratio_high",
    "actor_rollout_ref.actor.loss_agg_mode": "train.algorithm.loss_agg_mode",
    "actor_rollout_ref.actor.optim.lr": "train.optimizer.lr",
    "actor_rollout_ref.actor.optim.weight_decay": "train.optimizer.weight_decay",
    "actor_rollout_ref.actor.optim.lr_warmup_steps": "train.optimizer.warmup_steps",
    "actor_rollout_ref.actor.optim.lr_scheduler_type": "train.optimizer.schedule",
    "actor_rollout_ref.actor.optim.clip_grad": "train.optimizer.grad_clip",
    "actor_rollout_ref.actor.fsdp_config.param_offload": "train.verl.param_offload",
    "actor_rollout_ref.actor.fsdp_config.optimizer_offload": "train.verl.optimizer_offload",
    "actor_rollout_ref.rollout.name": "train.verl.rollout_engine",
    "actor_rollout_ref.rollout.n": "train.rollout.n",
    "actor_rollout_ref.rollout.temperature": "train.rollout.temperature",
    "actor_rollout_ref.rollout.top_p": "train.rollout.top_p",
    "actor_rollout_ref.rollout.gpu_memory_utilization": "train.verl.gpu_memory_utilization",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": "train.verl.tensor_model_parallel_size",
    "actor_rollout_ref.rollout.dtype": "train.verl.rollout_dtype",
    "trainer.project_name": "train.verl.project_name",
    "trainer.nnodes": "train.verl.nnodes",
    "trainer.n_gpus_per_node": "train.verl.n_gpus_per_node",
    "trainer.total_epochs": "train.total_epochs",
    "trainer.total_training_steps": "train.total_training_steps",
    "trainer.save_freq": "train.save_freq",
    "trainer.test_freq": "train.test_freq",
    "trainer.val_before_train": "train.verl.val_before_train",
    "trainer.resume_mode": "train.verl.resume_mode",
    "trainer.max_actor_ckpt_to_keep": "train.verl.max_actor_ckpt_to_keep",
    "trainer.default_local_dir": "train.verl.checkpoint_dir",
    # hardtry's verl fork read these; rlreg's EGPO plugin reads algorithm.egpo.{lambda, alpha}
    "algorithm.egpo_lambda": "train.algorithm.egpo_lambda",
    "algorithm.egpo_alpha": "train.algorithm.egpo_alpha",
}

# keys (and subtrees) where rlreg's verl config differs on purpose, with the reason
DELIBERATE: dict[str, str] = {
    "data.train_files": "rlreg trains on the convert stage's train.parquet",
    "data.val_files": "rlreg validates on the convert stage's test.parquet",
    "trainer.logger": "rlreg logs verl's metrics to MLflow (console + mlflow)",
    "trainer.experiment_name": "rlreg names verl's experiment after the spec",
    "trainer.default_local_dir": "rlreg keeps checkpoints in the train stage's work dir unless train.verl.checkpoint_dir is set (the import sets it when the experiment does)",
    "reward.custom_reward_function": "rlreg writes the reward at reward.custom_reward_function, the key verl 0.9.1's main_ppo reads",
    "custom_reward_function": "a top-level custom_reward_function is not migrated by verl 0.9.1's main_ppo (mapped to `reward`)",
    "ray_kwargs.ray_init.runtime_env.env_vars": "rlreg passes its MLflow and PYTHONPATH environment to the Ray workers",
    "algorithm.egpo": "rlreg's EGPO plugin reads algorithm.egpo.{lambda, alpha, entropy_scope}",
    "algorithm.egpo_lambda": "hardtry's fork key; rlreg writes algorithm.egpo.lambda",
    "algorithm.egpo_alpha": "hardtry's fork key; rlreg writes algorithm.egpo.alpha",
}

# hardtry reward file -> shipped reward that reproduces it (tests/test_reward_hardtry.py)
SHIPPED_REWARDS = {"reward_fn_egpo.py": "think_tool_call", "reward_fn_grpo.py": "tool_call", "reward_fn.py": "graded_tool_call"}


def deliberate_reason(key: str) -> str | None:
    for prefix, reason in DELIBERATE.items():
        if key == prefix or key.startswith(prefix + "."):
            return reason
    return None


def set_path(doc: dict, dotted: str, value: Any) -> None:
    node = doc
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def get_path(doc: dict, dotted: str, default: Any = None) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def reward_section(path: str | None, name: str | None) -> tuple[dict[str, Any], str | None]:
    """``reward:`` for the user's reward file, and a note when it is not one rlreg ships."""
    if not path:
        return {}, None
    file_name = Path(path).name
    if file_name in SHIPPED_REWARDS and (name or "compute_score") == "compute_score":
        return {"function": SHIPPED_REWARDS[file_name]}, None
    return ({"path": path, "name": name or "compute_score"},
            f"reward file {path} is not one of hardtry's src/hardtry/rl/ files: imported as a custom reward file")


def eval_sections(eval_cfg: dict | None, vllm_cfg: dict | None) -> tuple[dict[str, Any], list[str]]:
    """``eval:`` (backend bfcl) from eval_config*.yaml and vllm_config*.yaml; the keys left over."""
    unmapped: list[str] = []
    if not eval_cfg:
        return {}, unmapped
    bfcl: dict[str, Any] = {}
    section: dict[str, Any] = {"backend": "bfcl", "bfcl": bfcl}
    eval_map = {"model_name": "model_name", "test_category": "test_category", "threads_per_run": "num_threads"}
    for key, value in eval_cfg.items():
        if key in eval_map:
            bfcl[eval_map[key]] = value
        elif key == "num_runs":
            section["repeats"] = value
        else:
            unmapped.append(f"eval config: {key} = {value!r} (rlreg keeps BFCL results in its run store)")
    extra: list[str] = []
    vllm_map = {"tensor_parallel_size": "tensor_parallel_size", "gpu_memory_utilization": "gpu_memory_utilization",
                "max_model_len": "max_model_len", "dtype": "dtype", "tool_call_parser": "tool_call_parser",
                "port": "port"}
    for key, value in (vllm_cfg or {}).items():
        if key in vllm_map:
            bfcl[vllm_map[key]] = value
        elif key in ("max_num_seqs", "swap_space", "max_loras", "max_lora_rank"):
            extra += [f"--{key.replace('_', '-')}", str(value)]
        elif key == "enable_lora" and value:
            extra.append("--enable-lora")
        elif key == "trust_remote_code" and value:
            extra.append("--trust-remote-code")
        elif key == "enable_auto_tool_choice" and value:
            continue  # rlreg always passes --enable-auto-tool-choice
        elif key == "served_model_name" and value == eval_cfg.get("model_name"):
            continue  # rlreg serves the model under bfcl.model_name
        else:
            unmapped.append(f"vllm config: {key} = {value!r} "
                            + {"model": "(rlreg serves the model its merge stage wrote)",
                               "host": "(rlreg's vLLM binds 127.0.0.1)"}.get(key, "(no spec field)"))
    if extra:
        bfcl["extra_vllm_args"] = extra
    return section, unmapped


def convert_section(cfg: dict | None) -> tuple[dict[str, Any], list[str]]:
    """``data:`` from convert_messages_to_verl_config.yaml with hardtry's split and their
    converter's defaults (shuffle false, data_source sloop, test_size 0.05, seed 42)."""
    if not cfg:
        return {}, []
    data: dict[str, Any] = {"split": "hardtry", "shuffle": False, "data_source": "sloop", "max_samples": None}
    unmapped = []
    for key, value in cfg.items():
        if key == "input_path":
            data["source"] = value
        elif key in ("max_samples", "test_size", "seed", "data_source", "ability", "shuffle"):
            data[key] = value
        else:
            why = {"output_dir": "rlreg writes the parquet files into its stage store",
                   "model_path": "their converter only printed token statistics with it (rlreg: data.tokenizer)",
                   "num_proc": "rlreg converts in one streaming process"}.get(key, "no spec field")
            unmapped.append(f"convert config: {key} = {value!r} ({why})")
    if data.get("max_samples") is not None and data["max_samples"] <= 0:
        data["max_samples"] = None  # their converter keeps everything for max_samples <= 0
    return data, unmapped
