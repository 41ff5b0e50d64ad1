"""Rollouts: ``rollout.n`` sampled responses per prompt with HF ``generate`` (KV cache, batched),
scored by the spec's reward function.

Layout of a batch (N = prompts × n, rows of one prompt adjacent, as verl's ``repeat(interleave)``):
``input_ids`` = [left-padded prompt (P) | right-padded response (R)]; ``response_mask`` is 1 on
the response tokens up to and including the first EOS. A response without EOS is truncated.

Multi-turn rollouts (``runners/train/multi_turn.py``) use the same layout; their response holds
model and tool tokens, ``attention_mask`` is 1 on both and ``response_mask`` only on the model's
(so it is not contiguous): every consumer reads the mask, never a length.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from runners.train.prompts import Prompt


@dataclass
class RolloutBatch:
    input_ids: torch.Tensor  # [N, P+R]
    attention_mask: torch.Tensor  # [N, P+R]
    response_mask: torch.Tensor  # [N, R] float
    prompt_length: int  # P
    group_ids: list[int]  # prompt uid per row
    ground_truths: list[Any]
    texts: list[str]
    truncated: torch.Tensor  # [N] bool
    prompt_tokens: torch.Tensor  # [N] real (unpadded) prompt lengths
    generate_seconds: float
    scores: torch.Tensor | None = None  # [N] reward per response
    extra_infos: list[dict] | None = None
    """Multi-turn: the reward's ``extra_info`` per row (the whole trajectory, turns, tool rounds)."""
    turns: list[Any] | None = None
    """Multi-turn: per row, where each round's model tokens start (``multi_turn.TurnInfo``)."""

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_length :]

    @property
    def response_length(self) -> int:
        return self.input_ids.shape[1] - self.prompt_length

    def token_level_rewards(self) -> torch.Tensor:
        """The score on each response's last model token, zeros elsewhere (verl's reward layout;
        the last position where the mask is 1, so holes for tool tokens do not move it)."""
        assert self.scores is not None
        rewards = torch.zeros_like(self.response_mask)
        positions = torch.arange(self.response_mask.shape[1]).expand_as(self.response_mask)
        last = torch.where(self.response_mask.bool(), positions, torch.zeros_like(positions)).max(-1).values
        rewards[torch.arange(rewards.shape[0]), last] = self.scores.to(rewards.dtype)
        return rewards * self.response_mask


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


def response_mask_from(responses: torch.Tensor, eos_ids: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask up to and including the first EOS, truncated flags) for right-padded responses."""
    is_eos = torch.zeros_like(responses, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= responses == eos
    # positions strictly after the first EOS: cumulative count of EOS before them > 0
    eos_before = torch.cumsum(is_eos.long(), dim=-1) - is_eos.long()
    mask = (eos_before == 0).float()
    truncated = ~is_eos.any(dim=-1)
    return mask, truncated


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), model.config):
        eos = getattr(source, "eos_token_id", None)
        if eos is not None:
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.no_grad()
def generate_rollouts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    n: int,
    temperature: float,
    top_p: float,
    max_response_length: int,
    do_sample: bool = True,
    generation_batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> RolloutBatch:
    """Sample ``n`` responses per prompt; returns the padded batch (not yet scored)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_ids = _eos_ids(model, tokenizer)
    rows = [p for p in prompts for _ in range(n)]
    prompt_ids, prompt_mask = left_pad([p.input_ids for p in rows], pad_id)
    chunk = generation_batch_size or len(rows)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    pieces = []
    for start in range(0, len(rows), chunk):
        ids = prompt_ids[start : start + chunk].to(device)
        mask = prompt_mask[start : start + chunk].to(device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=top_p if do_sample else None,
            top_k=0 if do_sample else None,  # HF's default top_k=50 would differ from verl/vLLM (off)
            max_new_tokens=max_response_length,
            pad_token_id=pad_id,
            eos_token_id=sorted(eos_ids),
            use_cache=True,
        )
        pieces.append(out[:, ids.shape[1] :].cpu())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    model.train(was_training)

    width = max(1, max(p.shape[1] for p in pieces))
    responses = torch.full((len(rows), width), pad_id, dtype=torch.long)
    offset = 0
    for piece in pieces:
        responses[offset : offset + piece.shape[0], : piece.shape[1]] = piece
        offset += piece.shape[0]
    response_mask, truncated = response_mask_from(responses, eos_ids)
    responses = torch.where(response_mask.bool(), responses, torch.full_like(responses, pad_id))
    texts = [
        tokenizer.decode(r[: int(m.sum())].tolist(), skip_special_tokens=True) for r, m in zip(responses, response_mask)
    ]
    return RolloutBatch(
        input_ids=torch.cat([prompt_ids, responses], dim=1),
        attention_mask=torch.cat([prompt_mask, response_mask.long()], dim=1),
        response_mask=response_mask,
        prompt_length=prompt_ids.shape[1],
        group_ids=[p.uid for p in rows],
        ground_truths=[p.ground_truth for p in rows],
        texts=texts,
        truncated=truncated,
        prompt_tokens=prompt_mask.sum(-1),
        generate_seconds=seconds,
    )


def score(batch: RolloutBatch, reward_fn: Callable[..., float]) -> torch.Tensor:
    """Rewards of ``batch.texts`` (multi-turn: the last assistant turn, with the whole trajectory
    in ``extra_info``)."""
    if batch.extra_infos is None:
        values = [reward_fn(t, gt) for t, gt in zip(batch.texts, batch.ground_truths)]
    else:
        values = [reward_fn(t, gt, extra) for t, gt, extra in zip(batch.texts, batch.ground_truths, batch.extra_infos)]
    batch.scores = torch.tensor([float(v) for v in values])
    return batch.scores
