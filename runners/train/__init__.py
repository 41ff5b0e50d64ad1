"""The ``train`` stage, ``backend: builtin``: GRPO / EGPO / EGPO-token on a transformers model.

Modules, in the order a step uses them:

- ``prompts``    parquet → rendered, tokenized prompts (overlong ones filtered)
- ``rollout``    n sampled responses per prompt (HF generate, KV cache), scored by the reward
- ``forward``    per-token log-probs and entropy of the responses (float32, chunked)
- ``runners.common.advantages``  the estimator registry (shared with the verl plugin)
- ``loss``       PPO clipped surrogate, KL penalties, aggregation (verl's formulas)
- ``update``     mini-batches, micro-batches, gradient clipping, optimizer and LR schedule
- ``checkpoint`` verl-layout checkpoints and resume
- ``metrics``    the per-step history that lets a resumed run continue its MLflow curves
- ``loop``       the step loop tying them together
"""

from __future__ import annotations

from registry.context import StageContext, StageResult
from registry.spec.train import TrainSpec


def run(stage_spec: TrainSpec, ctx: StageContext) -> StageResult:
    from runners.modeling import apply_cpu_threads
    from runners.train.loop import train

    apply_cpu_threads(ctx.spec.model)  # model.cpu_threads: tiny models decode faster on 1 thread
    return train(stage_spec, ctx)


def describe(stage_spec: TrainSpec, spec) -> str:
    algo = stage_spec.algorithm
    rollouts = stage_spec.train_batch_size * stage_spec.rollout.n
    steps = stage_spec.total_training_steps or f"{stage_spec.total_epochs} epoch(s)"
    extra = ""
    if algo.adv_estimator != "grpo":
        extra = f" λ={algo.egpo_lambda} α={algo.egpo_alpha} entropy_scope={algo.entropy_scope}"
    return (
        f"builtin {algo.adv_estimator}{extra}: {stage_spec.train_batch_size} prompts × n={stage_spec.rollout.n} "
        f"= {rollouts} responses/step, mini-batch {stage_spec.ppo_mini_batch_size} prompts, "
        f"{stage_spec.ppo_epochs} ppo epoch(s), steps: {steps}, lr {stage_spec.optimizer.lr}, "
        f"checkpoint every {stage_spec.save_freq} steps"
    )
