"""The actor loss, written to agree with verl's ``core_algos`` (vanilla policy loss, dual-clip,
``kl_penalty``, ``agg_loss``) so the builtin and verl backends optimise the same objective.

    loss = pg_loss − entropy_coeff · entropy + kl_loss_coef · kl_loss      (each aggregated)

Aggregation is over a whole mini-batch even when it is processed in micro-batches: each micro
batch contributes ``masked_sum / denominator`` where the denominator is the mini-batch's total
(token count for ``token-mean``, sequence count for ``seq-mean-token-mean``), so the gradient
equals that of one big batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# verl's defaults: log-ratio clamp before exp, dual-clip bound for negative advantages,
# and the low_var_kl clamp.
LOG_RATIO_CLAMP = 20.0
CLIP_RATIO_C = 3.0
LOW_VAR_KL_CLAMP = 10.0


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def agg_loss(values: torch.Tensor, mask: torch.Tensor, mode: str, denominator: float | None = None) -> torch.Tensor:
    """Aggregate a per-token loss. ``denominator``: the mini-batch's token count (token-mean) or
    sequence count (seq-mean-token-mean) when ``values`` is one micro-batch of it."""
    mask = mask.to(values.dtype)
    if mode == "token-mean":
        denom = mask.sum().clamp(min=1) if denominator is None else denominator
        return (values * mask).sum() / denom
    if mode == "seq-mean-token-mean":
        per_seq = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        denom = per_seq.shape[0] if denominator is None else denominator
        return per_seq.sum() / denom
    raise ValueError(f"unknown loss_agg_mode '{mode}' (use token-mean or seq-mean-token-mean)")


@dataclass
class PolicyLoss:
    pg_losses: torch.Tensor
    """Per-token clipped surrogate loss (to aggregate)."""
    pg_clipfrac: torch.Tensor
    """Share of response tokens where the clip was active (upper bound)."""
    pg_clipfrac_lower: torch.Tensor
    """Share of tokens where the dual-clip bound (negative advantages) was active."""
    ppo_kl: torch.Tensor
    """Mean of log π_old − log π over response tokens."""


def policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float,
    clip_ratio_high: float,
    clip_ratio_c: float = CLIP_RATIO_C,
) -> PolicyLoss:
    """PPO clipped surrogate with clip-higher and dual clip (verl ``compute_policy_loss_vanilla``)."""
    mask = response_mask.to(log_prob.dtype)
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = masked_mean(-negative_approx_kl.detach(), mask)

    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_ratio_low, 1 + clip_ratio_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), mask)

    pg_losses3 = -advantages * clip_ratio_c
    clip_pg_losses2 = torch.minimum(pg_losses3, clip_pg_losses1)
    pg_clipfrac_lower = masked_mean((torch.gt(clip_pg_losses1, pg_losses3) & (advantages < 0)).float(), mask)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1)
    return PolicyLoss(pg_losses, pg_clipfrac.detach(), pg_clipfrac_lower.detach(), ppo_kl)


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference (verl ``kl_penalty``).

    ``low_var_kl`` is Schulman's k3 estimator exp(r) − r − 1 with r = log π_ref − log π, clamped to
    ±10; ``kl`` is k1 (log π − log π_ref); ``mse`` is k2 ½(log π − log π_ref)²."""
    if kind == "kl":
        return log_prob - ref_log_prob
    if kind == "mse":
        return 0.5 * (log_prob - ref_log_prob).square()
    if kind == "low_var_kl":
        kl = torch.clamp(ref_log_prob - log_prob, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        kld = torch.exp(kl) - kl - 1
        return torch.clamp(kld, -LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)
    raise ValueError(f"unknown kl_loss_type '{kind}' (use low_var_kl, kl or mse)")
