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
# Which tokens' entropy feeds the bonus when the config names no scope: each paper's own choice —
# Hao et al. average over the chain of thought, Cheng et al. shape every response token.
# registry/spec/train.py applies the same defaults to the spec (a test keeps them equal).
DEFAULT_ENTROPY_SCOPE = {"egpo": "think", "egpo_token": "response"}


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


def prompt_opens_think(prompt_ids: torch.Tensor, think_open_id: int, think_close_id: int) -> torch.Tensor:
    """[B] bool: the prompt ends inside an open think block — its last think tag is ``<think>``.

    Qwen3-4B-Thinking-2507's chat template ends the generation prompt with ``<think>\\n``, so its
    responses hold only ``</think>``; a template in non-thinking mode writes ``<think>\\n\\n</think>``
    (last tag: closed). Positions are compared, not the tail, so left padding (the builtin trainer,
    verl's legacy batch) and right padding (verl's v1 TransferQueue pads jagged prompts at the end)
    both work: padding is never a think tag."""
    if prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids must be [B, P], got shape {tuple(prompt_ids.shape)}")
    if prompt_ids.shape[1] == 0:
        return torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
    pos = torch.arange(prompt_ids.shape[1], device=prompt_ids.device).expand_as(prompt_ids)
    none = torch.full_like(pos, -1)
    last_open = torch.where(prompt_ids == think_open_id, pos, none).max(dim=-1).values
    last_close = torch.where(prompt_ids == think_close_id, pos, none).max(dim=-1).values
    return last_open > last_close


def think_span_mask(
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    think_open_id: int,
    think_close_id: int,
    prompt_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """1 on the chain-of-thought tokens of each response, 0 elsewhere (tags themselves excluded).

    Per model turn (a maximal run of response-mask 1 tokens; a single-turn response is one turn,
    multi-turn rollouts mask tool output between turns): the span runs from after the last
    ``<think>`` before the turn's first ``</think>`` up to that ``</think>``, or to the turn's end
    when it has no ``</think>`` (truncated at max_response_length). A turn with no ``<think>`` of
    its own starts inside the span at its first token when

    * the context before it ends inside an open think block: the last think tag before the turn is
      ``<think>`` — in the prompt (``prompt_ids``, see :func:`prompt_opens_think`; Qwen3-Thinking's
      template opens the block there) or in the masked tokens / earlier turns before it; or
    * it contains ``</think>`` (a close with no open means the block was open already — what
      rlreg inferred before the prompt was consulted, kept for callers without ``prompt_ids``).

    Otherwise (no tags, context not inside a block) the turn has no span. ``<think></think>`` gives
    an empty span. Masked positions are never in the span, so holes inside it stay excluded.
    """
    mask = torch.zeros_like(response_mask, dtype=torch.float32)
    valid = response_mask.bool()
    if prompt_ids is not None:
        if prompt_ids.shape[0] != response_ids.shape[0]:
            raise ValueError(f"prompt_ids has {prompt_ids.shape[0]} rows for {response_ids.shape[0]} responses")
        opened = prompt_opens_think(prompt_ids, think_open_id, think_close_id).tolist()
    else:
        opened = [False] * response_ids.shape[0]
    for row in range(response_ids.shape[0]):
        ids = response_ids[row]
        edges = torch.diff(valid[row].to(torch.int8), prepend=torch.zeros(1, dtype=torch.int8),
                           append=torch.zeros(1, dtype=torch.int8))
        starts = (edges == 1).nonzero().flatten().tolist()
        ends = (edges == -1).nonzero().flatten().tolist()
        if not starts:
            continue
        opens = (ids == think_open_id).nonzero().flatten().tolist()
        closes = (ids == think_close_id).nonzero().flatten().tolist()
        tags = sorted([(p, True) for p in opens] + [(p, False) for p in closes])
        for s, e in zip(starts, ends):
            before = [is_open for p, is_open in tags if p < s]
            inside = before[-1] if before else opened[row]
            close = next((p for p in closes if s <= p < e), None)
            end = close if close is not None else e
            own_opens = [p for p in opens if s <= p < end]
            if own_opens:
                start = own_opens[-1] + 1
            elif close is not None or inside:
                start = s
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
