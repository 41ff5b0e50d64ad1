"""Batched token-by-token decoding that measures the entropy of the first k generated tokens.

Why a hand-written loop instead of ``generate(output_logits=True)``: generate keeps the logits of
every step (batch × steps × vocab; 20 GB for 8 rows × 4096 steps × Qwen's 151k vocabulary in
float32), while only the first k steps are needed. Here the entropy of step t < k is computed
from the step's logits as they come and the logits are dropped.

The loop talks to a ``StepModel``: ``prefill(prompts) -> logits (B, V)`` for the first new token
and ``step(tokens) -> logits (B, V)`` after feeding one token per row. ``HFStepModel`` wraps a
transformers causal LM with a KV cache; tests pass a scripted model with known logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from runners.common.entropy import normalized_entropy
from runners.common.kv_cache import cache_kwargs, output_cache

TAIL_TOKENS = 16
"""Tokens decoded at the end of a row to look for a stop string (covers multi-token strings)."""


class StepModel(Protocol):
    vocab_size: int

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor: ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    entropies: list[float] = field(default_factory=list)
    """Normalised entropy (÷ log V) of each of the first k generated tokens."""
    finish: str = "length"
    """``tool_call`` (a stop string such as ``</tool_call>``), ``end`` (an end token) or ``length``."""
    topk_mass: list[float] = field(default_factory=list)
    """vLLM backend only: probability mass covered by the returned top-k logprobs, per token."""


def decode_batch(
    model: StepModel,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: Sequence[int],
    decode: Callable[[list[int]], str],
    end_ids: set[int],
    stop_strings: Sequence[str] = ("</tool_call>",),
    k: int = 20,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> list[Generation]:
    """Generate for each prompt until an end token, a stop string, or its ``max_new_tokens``.

    The returned text excludes the end token and stops right after the stop string's token.
    Sampling is from the full temperature-scaled distribution (no top-k/top-p), the same
    distribution whose entropy is recorded."""
    n = len(prompts)
    ids: list[list[int]] = [[] for _ in range(n)]
    ents: list[list[float]] = [[] for _ in range(n)]
    finish = ["length"] * n
    active = [m > 0 for m in max_new_tokens]
    if not any(active):
        return [Generation("", [], [], "length") for _ in range(n)]
    logits = model.prefill(prompts)
    pad = next(iter(end_ids), 0)
    for t in range(max(max_new_tokens)):
        if t < k:
            rows = [i for i in range(n) if active[i]]
            h = normalized_entropy(logits[rows], temperature).tolist()
            for i, value in zip(rows, h):
                ents[i].append(value)
        tokens = _choose(logits, temperature, greedy, generator)
        step_tokens = tokens.tolist()
        for i in range(n):
            if not active[i]:
                step_tokens[i] = pad
                continue
            tok = step_tokens[i]
            ids[i].append(tok)
            if tok in end_ids:
                finish[i], active[i] = "end", False
            elif stop_strings and any(s in decode(ids[i][-TAIL_TOKENS:]) for s in stop_strings):
                finish[i], active[i] = "tool_call", False
            elif len(ids[i]) >= max_new_tokens[i]:
                active[i] = False
        if not any(active):
            break
        logits = model.step(torch.tensor(step_tokens, device=logits.device))
    out = []
    for i in range(n):
        text_ids = ids[i][:-1] if finish[i] == "end" else ids[i]
        out.append(Generation(decode(text_ids), ids[i], ents[i], finish[i]))
    return out


def _choose(logits: torch.Tensor, temperature: float, greedy: bool, generator: torch.Generator | None) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class HFStepModel:
    """A transformers causal LM behind the ``StepModel`` protocol: left padding, explicit
    position ids (so padded rows see the same positions as unpadded ones) and a KV cache."""

    def __init__(self, model, pad_id: int):
        self.model = model
        self.pad_id = pad_id
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.device = next(model.parameters()).device
        self._past = None
        self._mask: torch.Tensor | None = None
        self._next_pos: torch.Tensor | None = None

    @torch.no_grad()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(input_ids, mask, positions, past=None)
        self._mask, self._next_pos = mask, positions[:, -1] + 1
        return out

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self._mask is not None and self._next_pos is not None, "prefill first"
        self._mask = torch.cat([self._mask, self._mask.new_ones((self._mask.shape[0], 1))], dim=1)
        out = self._forward(tokens.view(-1, 1).to(self.device), self._mask, self._next_pos.view(-1, 1), self._past)
        self._next_pos = self._next_pos + 1
        return out

    def _forward(self, input_ids, mask, positions, past) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions,
                  **cache_kwargs(self.model, past), "use_cache": True}
        try:  # only the last position's logits: a (B, L, V) prefill tensor can be gigabytes
            out = self.model(**kwargs, logits_to_keep=1)
        except TypeError:  # transformers < 4.50 has no logits_to_keep
            out = self.model(**kwargs)
        self._past = output_cache(out)
        return out.logits[:, -1, :]
