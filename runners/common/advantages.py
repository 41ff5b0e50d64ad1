"""Advantage estimators by the names users know: ``grpo``, ``egpo``, ``egpo_token`` (domain.md §3).

Shared by the builtin trainer and the verl plugin, so both backends compute the same numbers.
Every estimator has one signature::

    fn(token_level_rewards[B,T], response_mask[B,T], index, *, config,
       entropy[B,T] | None = None, scope_mask[B,T] | None = None)
        -> (advantages[B,T], returns[B,T], stats: dict[str, float])

``index`` holds one group id per row (the prompt's uid; any hashable). ``config`` is anything with
the algorithm keys, as a mapping (verl's DictConfig / AlgoConfig, a dict) or attributes (the spec's
``AlgorithmSpec``): ``norm_adv_by_std_in_grpo``, ``egpo_lambda``, ``egpo_alpha`` (flat, or nested as
``egpo: {lambda, alpha}``). ``entropy`` is the per-token policy entropy of the sampled responses
(detached here whatever the caller passes); ``scope_mask`` marks the tokens whose entropy feeds the
bonus (the ``<think>`` span, see :func:`think_span_mask`, or the response mask).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

GRPO_EPSILON = 1e-6
DEFAULT_EGPO_LAMBDA = 0.4
DEFAULT_EGPO_ALPHA = 2.0


class Estimator(Protocol):
    def __call__(
        self,
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: Sequence[Any],
        *,
        config: Any,
        entropy: torch.Tensor | None = None,
        scope_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]: ...


_ESTIMATORS: dict[str, Estimator] = {}


def register_estimator(name: str) -> Callable[[Estimator], Estimator]:
    """Decorator: make ``fn`` available as ``get_estimator(name)``."""

    def deco(fn: Estimator) -> Estimator:
        if name in _ESTIMATORS and _ESTIMATORS[name] is not fn:
            raise ValueError(f"advantage estimator '{name}' is already registered")
        _ESTIMATORS[name] = fn
        return fn

    return deco


def get_estimator(name: str) -> Estimator:
    if name not in _ESTIMATORS:
        raise KeyError(f"unknown advantage estimator '{name}' (known: {', '.join(sorted(_ESTIMATORS))})")
    return _ESTIMATORS[name]


def estimator_names() -> list[str]:
    return sorted(_ESTIMATORS)


def config_value(config: Any, key: str, default: Any = None) -> Any:
    """``config[key]`` for mappings (dict, OmegaConf) or ``config.key`` for objects, else default.
    ``egpo_lambda``/``egpo_alpha`` are also found nested as ``egpo.lambda``/``egpo.alpha``."""
    value = _lookup(config, key)
    if value is None and key.startswith("egpo_"):
        value = _lookup(_lookup(config, "egpo"), key[len("egpo_") :])
    return default if value is None else value


def _lookup(config: Any, key: str) -> Any:
    if config is None:
        return None
    getter = getattr(config, "get", None)
    if callable(getter):
        try:
            return getter(key)
        except (KeyError, AttributeError, TypeError, ValueError):  # a typed config whose get() rejects unknown keys
            return getattr(config, key, None)
    return getattr(config, key, None)


# -- GRPO ------------------------------------------------------------------------------------


def grpo_scalar_advantages(scores: torch.Tensor, index: Sequence[Any], norm_by_std: bool = True) -> torch.Tensor:
    """Per-response GRPO advantage, written like verl's ``compute_grpo_outcome_advantage`` (same
    loop, same ops) so both give bit-identical numbers: group by ``index``; a singleton group uses
    mean 0 and std 1; std is the unbiased (N−1) ``torch.std``; eps 1e-6."""
    scores = scores.detach().clone()
    id2score: dict[Any, list[torch.Tensor]] = defaultdict(list)
    id2mean: dict[Any, torch.Tensor] = {}
    id2std: dict[Any, torch.Tensor] = {}
    index = list(index)
    if len(index) != scores.shape[0]:
        raise ValueError(f"index has {len(index)} group ids for {scores.shape[0]} responses")
    with torch.no_grad():
        for i in range(scores.shape[0]):
            id2score[index[i]].append(scores[i])
        for idx, group in id2score.items():
            if len(group) == 1:
                id2mean[idx] = torch.tensor(0.0)
                id2std[idx] = torch.tensor(1.0)
            else:
                stacked = torch.stack(group)
                id2mean[idx] = torch.mean(stacked)
                id2std[idx] = torch.std(stacked)
        for i in range(scores.shape[0]):
            if norm_by_std:
                scores[i] = (scores[i] - id2mean[index[i]]) / (id2std[index[i]] + GRPO_EPSILON)
            else:
                scores[i] = scores[i] - id2mean[index[i]]
    return scores


@register_estimator("grpo")
def grpo(token_level_rewards, response_mask, index, *, config=None, entropy=None, scope_mask=None):
    """verl GRPO: score = sum of token rewards, group-normalised, broadcast to response tokens."""
    norm = bool(config_value(config, "norm_adv_by_std_in_grpo", True))
    scores = token_level_rewards.sum(dim=-1)
    scalar = grpo_scalar_advantages(scores, index, norm)
    advantages = scalar.unsqueeze(-1) * response_mask
    return advantages, advantages, {"adv/zero_adv_frac": _frac(scalar == 0)}


# -- EGPO ------------------------------------------------------------------------------------


def _egpo_params(config: Any) -> tuple[float, float]:
    lam = float(config_value(config, "egpo_lambda", DEFAULT_EGPO_LAMBDA))
    alpha = float(config_value(config, "egpo_alpha", DEFAULT_EGPO_ALPHA))
    if lam < 0:
        raise ValueError(f"egpo_lambda must be >= 0 (got {lam})")
    if alpha <= 1:
        raise ValueError(f"egpo_alpha must be > 1 so the bonus never flips a sign (got {alpha})")
    return lam, alpha


def _need_entropy(entropy: torch.Tensor | None, name: str) -> torch.Tensor:
    if entropy is None:
        raise ValueError(f"advantage estimator '{name}' needs the per-token entropy of the responses")
    return entropy.detach().float()


@register_estimator("egpo")
def egpo(token_level_rewards, response_mask, index, *, config=None, entropy=None, scope_mask=None):
    """Sequence-level EGPO (Hao et al. 2025): E_i = mean entropy over ``scope_mask`` tokens of
    response i; A_i' = A_i + min(λ·E_i, |A_i|/α), broadcast to the response tokens. A response
    whose scope is empty (no think span) gets no bonus."""
    lam, alpha = _egpo_params(config)
    norm = bool(config_value(config, "norm_adv_by_std_in_grpo", True))
    ent = _need_entropy(entropy, "egpo")
    mask = response_mask.float()
    scope = mask if scope_mask is None else scope_mask.float() * mask
    with torch.no_grad():
        scalar = grpo_scalar_advantages(token_level_rewards.sum(dim=-1), index, norm)
        n_scope = scope.sum(-1)
        seq_entropy = (ent * scope).sum(-1) / n_scope.clamp(min=1)
        raw = lam * seq_entropy
        cap = scalar.abs() / alpha
        bonus = torch.minimum(raw, cap)
        new_scalar = scalar + bonus
        advantages = new_scalar.unsqueeze(-1).to(token_level_rewards.dtype) * response_mask
    nonzero = scalar != 0
    stats = {
        "adv/zero_adv_frac": _frac(~nonzero),
        "egpo/bonus_mean": float(bonus.mean()) if bonus.numel() else 0.0,
        "egpo/bonus_clip_frac": _frac((raw > cap)[nonzero]),
        "egpo/scope_entropy_mean": float(seq_entropy[n_scope > 0].mean()) if bool((n_scope > 0).any()) else 0.0,
        "egpo/empty_scope_frac": _frac(n_scope == 0),
    }
    return advantages, advantages, stats


@register_estimator("egpo_token")
def egpo_token(token_level_rewards, response_mask, index, *, config=None, entropy=None, scope_mask=None):
    """Token-level EGPO (Cheng et al. 2025): A_t' = A_t + min(λ·H_t, |A_t|/α) on the tokens of
    ``scope_mask`` (default: every response token); other response tokens keep A_t."""
    lam, alpha = _egpo_params(config)
    norm = bool(config_value(config, "norm_adv_by_std_in_grpo", True))
    ent = _need_entropy(entropy, "egpo_token")
    mask = response_mask.float()
    scope = mask if scope_mask is None else scope_mask.float() * mask
    with torch.no_grad():
        scalar = grpo_scalar_advantages(token_level_rewards.sum(dim=-1), index, norm)
        base = scalar.unsqueeze(-1) * mask
        raw = lam * ent
        cap = base.abs() / alpha
        bonus = torch.minimum(raw, cap) * scope
        advantages = ((base + bonus) * mask).to(token_level_rewards.dtype)
    live = (scope > 0) & (base != 0)
    n_scope = scope.sum()
    stats = {
        "adv/zero_adv_frac": _frac(scalar == 0),
        "egpo/bonus_mean": float(bonus.sum() / n_scope) if n_scope > 0 else 0.0,
        "egpo/bonus_clip_frac": _frac((raw > cap)[live]),
        "egpo/scope_entropy_mean": float((ent * scope).sum() / n_scope) if n_scope > 0 else 0.0,
        "egpo/empty_scope_frac": _frac(scope.sum(-1) == 0),
    }
    return advantages, advantages, stats


def _frac(flags: torch.Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else 0.0


# -- the <think> span -----------------------------------------------------------------------


def think_span_mask(
    response_ids: torch.Tensor, response_mask: torch.Tensor, think_open_id: int, think_close_id: int
) -> torch.Tensor:
    """1 on the chain-of-thought tokens of each response, 0 elsewhere (tags themselves excluded).

    The span runs from after the last ``<think>`` before the first ``</think>`` up to that
    ``</think>``. A response with ``</think>`` but no ``<think>`` starts inside the span (chat
    templates such as Qwen3-Thinking put ``<think>\\n`` in the prompt). A ``<think>`` never closed
    (truncated) spans to the end of the response. No tags at all: empty span.
    """
    mask = torch.zeros_like(response_mask, dtype=torch.float32)
    valid = response_mask.bool()
    for row, (ids, ok) in enumerate(zip(response_ids.tolist(), valid.tolist())):
        length = sum(ok)
        ids = ids[:length]  # responses are left-aligned; padding comes after
        close = ids.index(think_close_id) if think_close_id in ids else None
        end = close if close is not None else length
        opens = [i for i in range(end) if ids[i] == think_open_id]
        if opens:
            start = opens[-1] + 1
        elif close is not None:
            start = 0
        else:
            continue
        if end > start:
            mask[row, start:end] = 1.0
    return mask * response_mask.float()


def think_token_ids(tokenizer: Any) -> tuple[int, int]:
    """The ids of ``<think>`` and ``</think>`` in ``tokenizer`` (each must be a single token)."""
    ids = []
    for tag in ("<think>", "</think>"):
        encoded = tokenizer.encode(tag, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(
                f"the tokenizer splits '{tag}' into {len(encoded)} tokens, so the think span cannot be "
                "found by token id (add it as a special token, or set train.algorithm.entropy_scope: response)"
            )
        ids.append(int(encoded[0]))
    return ids[0], ids[1]
