"""One policy update on a scored rollout batch: ``ppo_epochs`` passes over mini-batches of
``ppo_mini_batch_size`` prompts (× n responses), each split into micro-batches whose gradients
accumulate, then clipped and applied (verl's ``update_policy``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from registry.spec.train import TrainSpec
from runners.train.forward import autocast, token_stats
from runners.train.loss import agg_loss, kl_penalty, policy_loss
from runners.train.metrics import mean_of


@dataclass
class UpdateBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    advantages: torch.Tensor
    old_log_prob: torch.Tensor
    ref_log_prob: torch.Tensor | None

    def rows(self, index: slice) -> UpdateBatch:
        return UpdateBatch(
            self.input_ids[index], self.attention_mask[index], self.response_mask[index],
            self.advantages[index], self.old_log_prob[index],
            None if self.ref_log_prob is None else self.ref_log_prob[index],
        )


def update_policy(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: UpdateBatch,
    spec: TrainSpec,
    *,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """Runs the update; returns the actor metrics averaged over mini-batches (verl's names)."""
    algo = spec.algorithm
    response_len = batch.response_mask.shape[1]
    rows_per_mini = spec.ppo_mini_batch_size * spec.rollout.n
    micro = spec.micro_batch_size or rows_per_mini
    mode = algo.loss_agg_mode
    entropy_grad = algo.entropy_coeff != 0
    use_kl = algo.use_kl_loss and batch.ref_log_prob is not None
    model.train()
    per_mini: list[dict[str, float]] = []
    for _ in range(spec.ppo_epochs):
        for start in range(0, batch.input_ids.shape[0], rows_per_mini):
            mini = batch.rows(slice(start, start + rows_per_mini))
            mask = mini.response_mask.to(device)
            # Denominator of the whole mini-batch, so micro-batching does not change the loss.
            denominator = float(mask.sum().clamp(min=1)) if mode == "token-mean" else float(mask.shape[0])
            optimizer.zero_grad(set_to_none=True)
            sums = {"actor/pg_loss": 0.0, "actor/kl_loss": 0.0, "actor/entropy_loss": 0.0}
            weighted = {"actor/pg_clipfrac": 0.0, "actor/pg_clipfrac_lower": 0.0, "actor/ppo_kl": 0.0}
            n_tokens = float(mask.sum().clamp(min=1))
            for m_start in range(0, mini.input_ids.shape[0], micro):
                part = mini.rows(slice(m_start, m_start + micro))
                part_mask = part.response_mask.to(device)
                with autocast(device, autocast_dtype):
                    stats = token_stats(
                        model, part.input_ids.to(device), part.attention_mask.to(device), response_len,
                        spec.rollout.temperature, with_entropy=entropy_grad, entropy_grad=entropy_grad,
                    )
                pl = policy_loss(
                    stats.log_prob, part.old_log_prob.to(device), part.advantages.to(device), part_mask,
                    algo.clip_ratio_low, algo.clip_ratio_high,
                )
                pg_loss = agg_loss(pl.pg_losses, part_mask, mode, denominator)
                loss = pg_loss
                if entropy_grad:
                    entropy_loss = agg_loss(stats.entropy, part_mask, mode, denominator)
                    loss = loss - algo.entropy_coeff * entropy_loss
                    sums["actor/entropy_loss"] += float(entropy_loss.detach())
                if use_kl:
                    kld = kl_penalty(stats.log_prob, part.ref_log_prob.to(device), algo.kl_loss_type)
                    kl_loss = agg_loss(kld, part_mask, mode, denominator)
                    loss = loss + algo.kl_loss_coef * kl_loss
                    sums["actor/kl_loss"] += float(kl_loss.detach())
                loss.backward()
                sums["actor/pg_loss"] += float(pg_loss.detach())
                share = float(part_mask.sum()) / n_tokens
                weighted["actor/pg_clipfrac"] += float(pl.pg_clipfrac) * share
                weighted["actor/pg_clipfrac_lower"] += float(pl.pg_clipfrac_lower) * share
                weighted["actor/ppo_kl"] += float(pl.ppo_kl) * share
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optimizer.grad_clip)
            grad_norm = float(grad_norm)
            if math.isfinite(grad_norm):
                optimizer.step()
            else:  # verl skips the step rather than poisoning the weights
                optimizer.zero_grad(set_to_none=True)
            per_mini.append({**sums, **weighted, "actor/grad_norm": grad_norm, "actor/skipped_update": float(not math.isfinite(grad_norm))})
    metrics = mean_of(per_mini)
    if not entropy_grad:
        metrics.pop("actor/entropy_loss", None)
    if not use_kl:
        metrics.pop("actor/kl_loss", None)
    return metrics


def build_optimizer(model: torch.nn.Module, spec: TrainSpec, total_steps: int) -> tuple[Any, Any]:
    """AdamW (verl's betas) and a per-training-step LR schedule: linear warmup, then constant or
    cosine to 0 at ``total_steps``."""
    opt = spec.optimizer
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=opt.lr, weight_decay=opt.weight_decay, betas=(0.9, 0.999)
    )

    def factor(step: int) -> float:
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.schedule == "cosine":
            span = max(1, total_steps - opt.warmup_steps)
            progress = min(1.0, (step - opt.warmup_steps) / span)
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler
