"""Per-token log-probabilities and entropy of the response tokens, in micro-batches.

Sequences are ``[left-padded prompt | right-padded response]`` (the layout ``generate`` returns);
position ids follow the attention mask, as during generation. Logits are temperature-scaled the
way verl's actor does (``logits / rollout.temperature``), so the log-probs are those of the
sampling distribution, and the entropy is that of the same distribution (domain.md §4).
"""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from runners.common.entropy import DEFAULT_CHUNK, entropy_from_logits


@dataclass
class TokenStats:
    log_prob: torch.Tensor
    """[B, R] log π(token) of each response token (differentiable when computed with grad)."""
    entropy: torch.Tensor | None
    """[B, R] entropy of the next-token distribution at each response position (float32)."""


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed precision for the policy's forward passes (None: plain float32). The old-log-prob
    pass and the update must use the same one, or the PPO ratio starts away from 1."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def response_logits(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int) -> torch.Tensor:
    """[B, R, V] logits that predict the R response tokens (the prompt's logits are never built
    when the model supports ``logits_to_keep`` — they dominate memory for long prompts)."""
    kwargs = {}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = response_len + 1
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), use_cache=False, **kwargs)
    logits = out.logits
    return logits[:, -(response_len + 1) : -1, :]


def token_stats(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_len: int,
    temperature: float,
    *,
    with_entropy: bool = True,
    entropy_grad: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
) -> TokenStats:
    """Log-probs (and entropy) of the last ``response_len`` tokens of each sequence.

    Gradients flow into ``log_prob`` when called outside ``no_grad``; the entropy is detached
    (chunked float32, bounded memory) unless ``entropy_grad`` asks for a differentiable one
    (``entropy_coeff`` ≠ 0)."""
    logits = response_logits(model, input_ids, attention_mask, response_len).float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, -response_len:]
    log_norm = torch.logsumexp(logits, dim=-1)
    log_prob = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_norm
    entropy = None
    if with_entropy:
        if entropy_grad:
            entropy = log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)
        else:
            entropy = entropy_from_logits(logits.detach(), 1.0, chunk_size)
    return TokenStats(log_prob, entropy)


@torch.no_grad()
def batched_token_stats(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_len: int,
    temperature: float,
    micro_batch_size: int,
    with_entropy: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> TokenStats:
    """No-grad :func:`token_stats` over micro-batches (old / reference log-probs)."""
    log_probs, entropies = [], []
    for start in range(0, input_ids.shape[0], micro_batch_size):
        part = slice(start, start + micro_batch_size)
        with autocast(input_ids.device, autocast_dtype):
            stats = token_stats(model, input_ids[part], attention_mask[part], response_len, temperature, with_entropy=with_entropy)
        log_probs.append(stats.log_prob)
        if stats.entropy is not None:
            entropies.append(stats.entropy)
    return TokenStats(torch.cat(log_probs), torch.cat(entropies) if entropies else None)
