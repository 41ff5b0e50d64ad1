"""The builtin training loop: rollout → reward → log-probs/entropy → advantages → update, per step,
with checkpoints, resume and batched MLflow metrics.

Sizes follow verl: a step takes ``train_batch_size`` prompts (× ``rollout.n`` samples); the data
order is a seeded permutation per epoch (incomplete last batch dropped), so step N always sees the
same prompts, which is what lets a resumed run continue exactly where the crashed one stopped.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from registry.context import StageContext, StageResult
from registry.errors import InputDataError, UsageError
from registry.spec.train import TrainSpec
from runners.common.advantages import get_estimator, think_span_mask, think_token_ids
from runners.modeling import load_model, pick_device, render_prompt, resolve_base_model
from runners.reward_file import load_reward
from runners.train.checkpoint import (
    apply_trainer_state,
    copy_tree,
    resume_point,
    save_checkpoint,
    step_dir,
)
from runners.train.dynamic_sampling import sample_step
from runners.train.forward import autocast, batched_token_stats
from runners.train.loss import agg_loss
from runners.train.metrics import ENTROPY_KEY, MetricsHistory, masked_stats
from runners.train.multi_turn import build as build_multi_turn
from runners.train.multi_turn import render_cut_prompt
from runners.train.prompts import Prompt, load_prompts
from runners.train.rollout import generate_rollouts, score
from runners.train.round_entropy import record_step
from runners.train.update import UpdateBatch, build_optimizer, update_policy

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Plan:
    prompts: list[Prompt]
    steps_per_epoch: int
    total_steps: int
    filtered: int
    val_prompts: list[Prompt] = field(default_factory=list)

    def batch(self, step: int, spec: TrainSpec) -> list[Prompt]:
        """The prompts of (1-based) ``step`` without dynamic sampling."""
        return self.gen_batch(step - 1, spec)

    def gen_batch(self, index: int, spec: TrainSpec) -> list[Prompt]:
        """Generation batch ``index`` (0-based) of the prompt stream: a seeded permutation per epoch.
        Without dynamic sampling step N uses batch N−1; with it a step may draw several."""
        epoch, position = divmod(index, self.steps_per_epoch)
        gen = torch.Generator().manual_seed(spec.seed + epoch)
        order = torch.randperm(len(self.prompts), generator=gen).tolist()
        start = position * spec.train_batch_size
        return [self.prompts[i] for i in order[start : start + spec.train_batch_size]]


def train(spec: TrainSpec, ctx: StageContext) -> StageResult:
    model_spec = ctx.spec.model
    if model_spec is None:
        raise UsageError("the train stage needs a `model` section (path or tiny)")
    device = pick_device(model_spec.device)
    compute_dtype = DTYPES[model_spec.dtype]
    # The trained policy keeps float32 master weights; bf16/fp16 run as autocast (verl's FSDP
    # mixed precision does the same). On CPU everything stays float32.
    autocast_dtype = compute_dtype if (device.startswith("cuda") and compute_dtype != torch.float32) else None

    train_parquet = ctx.input("convert.train")
    source = ctx.inputs.get("sft.model") or resolve_base_model(
        model_spec, train_parquet=train_parquet, cache_dir=ctx.work_dir / "base_model", resolve_path=ctx.resolve_path
    )
    ckpt_root = ctx.work_dir / "checkpoints"
    history = MetricsHistory(ctx.work_dir / "metrics_history.jsonl")
    resume_step, resume_state, discarded = resume_point(ckpt_root, history.digest)
    if discarded:
        print(f"train: discarding checkpoints, starting over: {discarded}", file=sys.stderr)
        ctx.tracker.set_tags({"rlreg.resume_discarded": discarded[:5000]})
    policy_path = step_dir(ckpt_root, resume_step) / "model" if resume_step else source
    model, tokenizer = load_model(policy_path, "float32", device, trust_remote_code=model_spec.trust_remote_code)
    ref_model = None
    if spec.algorithm.use_kl_loss:
        # Always the starting policy, also on resume (never the checkpoint).
        ref_model, _ = load_model(source, "float32" if device == "cpu" else model_spec.dtype, device,
                                  trust_remote_code=model_spec.trust_remote_code)
        ref_model.requires_grad_(False)

    mt = spec.rollout.multi_turn
    plan = _plan(spec, ctx, tokenizer, train_parquet, render_cut_prompt if mt.enable else render_prompt)
    generate = build_multi_turn(mt, tokenizer, ctx, plan.prompts) if mt.enable else generate_rollouts
    entropy_dir = ctx.work_dir / "entropy_steps"  # multi-turn: entropy_step_N.json per step
    reward_fn = load_reward(ctx.spec.reward, ctx.project_root, _data_source(ctx))
    estimator = get_estimator(spec.algorithm.adv_estimator)
    think_ids = _think_ids(spec, tokenizer)
    optimizer, scheduler = build_optimizer(model, spec, plan.total_steps)

    ctx.tracker.log_params(
        {"train.builtin": {"source_model": str(source), "device": device, "prompts": len(plan.prompts),
                           "filtered_overlong_prompts": plan.filtered, "total_steps": plan.total_steps}}
    )
    start_step = cursor = 0
    if resume_step:
        apply_trainer_state(resume_state, optimizer, scheduler)
        start_step = resume_step
        cursor = int(resume_state.get("extra", {}).get("gen_cursor", resume_step))  # generation batches drawn so far
        rows = history.load(resume_step)
        for row in rows:  # re-log the curves so far into this run; the tracker sends them as log_batch
            ctx.tracker.log_metrics({k: v for k, v in row["metrics"].items() if v is not None}, row["step"])
        ctx.tracker.flush()
        ctx.tracker.set_tags({"rlreg.resumed_from_step": resume_step})
    else:
        torch.manual_seed(spec.seed)
        # unused by training, but saved in checkpoints: seeded so a rerun's checkpoints are byte-equal
        random.seed(spec.seed)
        np.random.seed(spec.seed)
        history.reset()
        shutil.rmtree(entropy_dir, ignore_errors=True)

    progress = _progress(plan.total_steps, start_step)
    fg = spec.algorithm.filter_groups
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def rollout(prompts: list[Prompt]):
        ro = spec.rollout
        with autocast(device, autocast_dtype):
            batch = generate(
                model, tokenizer, prompts, n=ro.n, temperature=ro.temperature, top_p=ro.top_p,
                max_response_length=ro.max_response_length, generation_batch_size=spec.generation_batch_size,
                device=device,
            )
        score(batch, reward_fn)
        return batch

    for step in range(start_step + 1, plan.total_steps + 1):
        started = time.perf_counter()
        sampled = sample_step(
            lambda i: plan.gen_batch(i, spec), rollout, cursor, groups_wanted=spec.train_batch_size,
            enable=fg.enable, max_num_gen_batches=fg.max_num_gen_batches or plan.steps_per_epoch, pad_id=pad_id,
        )
        cursor = sampled.cursor
        on_entropy = functools.partial(
            record_step, k=mt.entropy_k, vocab_size=model.get_output_embeddings().weight.shape[0], step=step,
            directory=entropy_dir) if mt.enable else None
        metrics = _train_step(
            sampled.batch, model, ref_model, optimizer, spec, estimator=estimator, think_ids=think_ids,
            device=device, autocast_dtype=autocast_dtype, started=started, on_entropy=on_entropy,
        )
        metrics.update(sampled.metrics)
        metrics["actor/lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
        metrics["train/epoch"] = (cursor - 1) // plan.steps_per_epoch
        if plan.val_prompts and spec.test_freq > 0 and (step % spec.test_freq == 0 or step == plan.total_steps):
            metrics.update(_validate(model, tokenizer, plan.val_prompts, spec, reward_fn, device, generate))
        ctx.tracker.log_metrics(metrics, step)
        history.append(step, metrics)
        if spec.save_freq > 0 and (step % spec.save_freq == 0 or step == plan.total_steps):
            save_checkpoint(ckpt_root, step, model, tokenizer, optimizer, scheduler,
                            {"epoch": metrics["train/epoch"], "gen_cursor": cursor}, history_digest=history.digest())
        if progress is not None:
            progress.set_postfix(reward=f"{metrics['train/reward_mean']:.3f}", entropy=f"{metrics[ENTROPY_KEY]:.3f}")
            progress.update(1)
    if progress is not None:
        progress.close()
    ctx.tracker.flush()
    return _finish(ctx, model, tokenizer, history, ckpt_root, plan, resume_step, entropy_dir if mt.enable else None)


def _plan(spec: TrainSpec, ctx: StageContext, tokenizer: Any, train_parquet: Path, render=render_prompt) -> Plan:
    prompts, filtered = load_prompts(train_parquet, tokenizer, render, spec.rollout.max_prompt_length,
                                     spec.train_max_samples, spec.seed)
    if len(prompts) < spec.train_batch_size:
        raise InputDataError(
            f"{train_parquet}: {len(prompts)} prompts fit max_prompt_length={spec.rollout.max_prompt_length} "
            f"({filtered} longer ones dropped), fewer than train_batch_size={spec.train_batch_size} "
            + (f" (train_max_samples={spec.train_max_samples} kept that many rows before the length filter)"
               if spec.train_max_samples > 0 else "")
            + " (lower train.train_batch_size, raise train.rollout.max_prompt_length, or add data)"
        )
    steps_per_epoch = len(prompts) // spec.train_batch_size
    total = spec.total_training_steps or steps_per_epoch * spec.total_epochs
    val: list[Prompt] = []
    test_parquet = ctx.inputs.get("convert.test")
    if test_parquet is not None and spec.test_freq > 0:
        val = load_prompts(test_parquet, tokenizer, render, spec.rollout.max_prompt_length)[0][: spec.val_max_prompts]
    return Plan(prompts, steps_per_epoch, total, filtered, val)


def _think_ids(spec: TrainSpec, tokenizer: Any) -> tuple[int, int] | None:
    if spec.algorithm.adv_estimator == "grpo" or spec.algorithm.entropy_scope != "think":
        return None
    try:
        return think_token_ids(tokenizer)
    except ValueError as exc:
        raise UsageError(f"train.algorithm.entropy_scope: think: {exc}") from exc


def _train_step(batch, model, ref_model, optimizer, spec: TrainSpec, *, estimator, think_ids, device, autocast_dtype,
                started: float, on_entropy=None) -> dict[str, float]:
    """Log-probs, advantages and the policy update on a scored rollout batch. ``on_entropy(entropy,
    batch) -> metrics``: multi-turn's per-round entropy, from the old-policy pass."""
    ro = spec.rollout
    scores = batch.scores
    micro = spec.micro_batch_size or spec.ppo_mini_batch_size * ro.n
    R = batch.response_length
    ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
    model.eval()
    old = batched_token_stats(model, ids, attn, R, ro.temperature, micro, with_entropy=True, autocast_dtype=autocast_dtype)
    ref = batched_token_stats(ref_model, ids, attn, R, ro.temperature, micro, with_entropy=False) if ref_model else None
    mask = batch.response_mask
    entropy = old.entropy.cpu()
    extra = on_entropy(entropy, batch) if on_entropy is not None else {}
    scope = mask if think_ids is None else think_span_mask(
        batch.response_ids, mask, *think_ids, prompt_ids=batch.input_ids[:, : batch.prompt_length]
    )
    advantages, _, adv_stats = estimator(
        batch.token_level_rewards(), mask, batch.group_ids, config=spec.algorithm, entropy=entropy, scope_mask=scope
    )
    update_started = time.perf_counter()
    actor = update_policy(
        model, optimizer,
        UpdateBatch(batch.input_ids, batch.attention_mask, mask, advantages, old.log_prob.cpu(),
                    None if ref is None else ref.log_prob.cpu()),
        spec, device=device, autocast_dtype=autocast_dtype,
    )
    seconds = time.perf_counter() - started
    lengths = mask.sum(-1)
    total_tokens = float(lengths.sum() + batch.prompt_tokens.sum())
    return {
        "train/reward_mean": float(scores.mean()),
        "critic/score/mean": float(scores.mean()),
        "critic/score/max": float(scores.max()),
        "critic/score/min": float(scores.min()),
        **masked_stats(advantages, mask, "critic/advantages"),
        **adv_stats,
        **actor,
        # verl: agg_loss(entropys, response_mask, loss_agg_mode) — the token mean by default
        ENTROPY_KEY: float(agg_loss(entropy, mask, spec.algorithm.loss_agg_mode)),
        "response_length/mean": float(lengths.mean()),
        "response_length/max": float(lengths.max()),
        "response_length/min": float(lengths.min()),
        "response_length/clip_ratio": float(batch.truncated.float().mean()),
        "prompt_length/mean": float(batch.prompt_tokens.float().mean()),
        "perf/throughput": total_tokens / seconds,
        "perf/gen_tokens_per_s": float(lengths.sum()) / max(batch.generate_seconds, 1e-9),
        "timing_s/gen": batch.generate_seconds,
        "timing_s/update": time.perf_counter() - update_started,
        "timing_s/step": seconds,
        **extra,
    }


def _validate(model, tokenizer, prompts, spec: TrainSpec, reward_fn, device, generate=generate_rollouts) -> dict[str, float]:
    """Greedy responses on test-split prompts (verl's default val_kwargs: do_sample false)."""
    rng = torch.get_rng_state()  # greedy uses no randomness, but keep the training stream untouched
    batch = generate(
        model, tokenizer, prompts, n=1, temperature=1.0, top_p=1.0, do_sample=False,
        max_response_length=spec.rollout.max_response_length, generation_batch_size=spec.generation_batch_size, device=device,
    )
    torch.set_rng_state(rng)
    scores = score(batch, reward_fn)
    return {"val/reward_mean": float(scores.mean()), "val/response_length/mean": float(batch.response_mask.sum(-1).float().mean())}


def _progress(total: int, initial: int) -> Any:
    from registry.progress import progress  # a bar on a terminal, a line every 10 % in a log

    return progress(total, initial, desc="train", unit="step")


def _finish(ctx: StageContext, model, tokenizer, history: MetricsHistory, ckpt_root: Path, plan: Plan,
            resume_step: int | None, entropy_dir: Path | None = None) -> StageResult:
    out_model = ctx.out_dir / "model"
    model.save_pretrained(out_model, safe_serialization=True)
    tokenizer.save_pretrained(out_model)
    out_ckpt = ctx.out_dir / "checkpoints"
    out_ckpt.mkdir(parents=True, exist_ok=True)
    if ckpt_root.is_dir():
        copy_tree(ckpt_root, out_ckpt)
    entropy_history = history.entropy_history()
    (ctx.out_dir / "entropy_history.json").write_text(json.dumps(entropy_history, indent=1))
    shutil.copy2(history.path, ctx.out_dir / "metrics_history.jsonl")
    ctx.tracker.log_artifact(ctx.out_dir / "entropy_history.json")
    ctx.tracker.log_artifact(ctx.out_dir / "metrics_history.jsonl")
    rewards = history.series("train/reward_mean")
    entropies = history.series(ENTROPY_KEY)
    metrics = {
        "train/reward_mean_first": rewards[0] if rewards else float("nan"),
        "train/reward_mean_last": rewards[-1] if rewards else float("nan"),
        "actor/entropy_last": entropies[-1] if entropies else float("nan"),
        "train/steps": float(plan.total_steps),
    }
    # The policy's own solve rate and entropy at the start and the end, 5-step means: one step's
    # value is noisy, and under dynamic sampling train/reward_mean is over the kept (mixed) groups,
    # so it sits near 0.5 whatever the policy learns.
    for key, name in (("rollout/reward_mean_generated", "train/reward_generated"), (ENTROPY_KEY, "actor/entropy")):
        series = history.series(key)
        if series:
            metrics[f"{name}_first5"] = sum(series[:5]) / len(series[:5])
            metrics[f"{name}_last5"] = sum(series[-5:]) / len(series[-5:])
    val = history.series("val/reward_mean")
    if val:
        metrics["val/reward_mean_last"] = val[-1]
    outputs = {"model": out_model, "checkpoints": out_ckpt}
    if entropy_dir is not None and entropy_dir.is_dir():  # multi-turn: entropy_step_N.json per step
        outputs["entropy_steps"] = ctx.out_dir / "entropy_steps"
        copy_tree(entropy_dir, outputs["entropy_steps"])
        ctx.tracker.log_artifacts(outputs["entropy_steps"], "entropy_steps")
    return StageResult(
        outputs=outputs,
        metrics=metrics,
        info={"steps": plan.total_steps, "prompts": len(plan.prompts), "filtered_overlong": plan.filtered,
              "resumed_from_step": resume_step or 0},
    )


def _data_source(ctx: StageContext) -> str:
    """What verl passes a reward as ``data_source``: the convert stage's column value."""
    return ctx.spec.data.data_source if ctx.spec.data is not None else ""
