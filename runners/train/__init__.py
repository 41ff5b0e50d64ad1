"""The ``train`` stage, ``backend: builtin``: GRPO / EGPO / EGPO-token on a transformers model.

Modules, in the order a step uses them:

- ``prompts``    parquet → rendered, tokenized prompts (overlong ones filtered)
- ``rollout``    n sampled responses per prompt (HF generate, KV cache), scored by the reward
- ``multi_turn`` the same with tools run between turns (``rollout.multi_turn``); ``round_entropy``
  its per-step entropy after each tool answer (``entropy_step_N.json``)
- ``forward``    per-token log-probs and entropy of the responses (float32, chunked)
- ``runners.common.advantages``  the estimator registry (shared with the verl plugin)
- ``loss``       PPO clipped surrogate, KL penalties, aggregation (verl's formulas)
- ``update``     mini-batches, micro-batches, gradient clipping, optimizer and LR schedule
- ``checkpoint`` verl-layout checkpoints and resume
- ``metrics``    the per-step history that lets a resumed run continue its MLflow curves
- ``loop``       the step loop tying them together
"""

from __future__ import annotations

import os
from pathlib import Path

from registry.context import StageContext, StageResult
from registry.spec.train import TrainSpec


def external_inputs(stage_spec: TrainSpec, project_root: Path) -> dict[str, Path]:
    """Files whose content decides the result but that the spec names only by path: the
    multi-turn tools config and the ``file.py`` modules it points at (the cache key hashes them)."""
    mt = stage_spec.rollout.multi_turn
    if not (mt.enable and mt.tools_config):
        return {}
    raw = Path(os.path.expanduser(os.path.expandvars(mt.tools_config)))
    config = raw if raw.is_absolute() else project_root / raw
    out = {"train.rollout.multi_turn.tools_config": config}
    import yaml

    try:
        tools = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("tools") or {}
    except (OSError, yaml.YAMLError, AttributeError):  # the runner reports a bad config with its own message
        return out
    for name, target in tools.items() if isinstance(tools, dict) else ():
        target = target.get("callable") if isinstance(target, dict) else target
        module = str(target).rpartition(":")[0]
        if module.endswith(".py"):
            out[f"train.rollout.multi_turn.tools.{name}"] = (config.parent / module).resolve()
    return out


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
    mt = stage_spec.rollout.multi_turn
    if mt.enable:
        extra += f", multi-turn: ≤{mt.max_tool_rounds} tool rounds ({mt.tool_source})"
    return (
        f"builtin {algo.adv_estimator}{extra}: {stage_spec.train_batch_size} prompts × n={stage_spec.rollout.n} "
        f"= {rollouts} responses/step, mini-batch {stage_spec.ppo_mini_batch_size} prompts, "
        f"{stage_spec.ppo_epochs} ppo epoch(s), steps: {steps}, lr {stage_spec.optimizer.lr}, "
        f"checkpoint every {stage_spec.save_freq} steps"
    )
