"""Batched two-model decoding with KV caches: both models see the same tokens, the mixer turns their
next-token logits into the distribution to sample from (q*), and sampling applies top-k / top-p.

Prompts are left-padded (one attention mask and one set of position ids serve both models, since
they share the tokenizer). A row stops at an EOS token or at ``max_new_tokens``; the batch stops
when every row has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from runners.common.kv_cache import cache_kwargs, output_cache
from runners.generate.mixer import StepOutput


@dataclass
class DecodeResult:
    tokens: list[list[int]]
    """Generated ids per row, the stop token excluded."""
    stopped_on_eos: list[bool]
    diagnostics: list[dict[str, list[float]]] = field(default_factory=list)
    """Per row: name -> one value per generated token (the stop token's step included)."""


def decode(
    models: Sequence[Any], prompts: Sequence[Sequence[int]], mixer: Callable[..., StepOutput], *,
    pad_id: int, eos_ids: set[int], max_new_tokens: int, top_k: int = 0, top_p: float = 1.0,
    generator: torch.Generator | None = None, vocab_size: int | None = None,
    generators: Sequence[torch.Generator] | None = None,
) -> DecodeResult:
    """Decode a batch. ``models``: [π_θ] or [π_θ, π_t]; ``vocab_size`` trims padded logit rows
    (models whose embedding matrices were padded differently). ``generators``: one per row (see
    :func:`sample_generators`), so a row's samples do not depend on which rows share its batch;
    else ``generator`` serves the whole batch."""
    device = next(models[0].parameters()).device
    batch = len(prompts)
    width = max(len(p) for p in prompts)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(list(ids), dtype=torch.long)
        attention[row, width - len(ids):] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    positions = (attention.cumsum(-1) - 1).clamp_min(0)

    caches: list[Any] = [None] * len(models)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    diags: list[dict[str, list[float]]] = [{} for _ in range(batch)]
    finished = torch.zeros(batch, dtype=torch.bool)
    stopped = [False] * batch
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long) if eos_ids else torch.empty(0, dtype=torch.long)
    step_ids, step_pos = input_ids, positions
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = []
            for i, model in enumerate(models):
                out = _forward(model, step_ids, attention, step_pos, caches[i])
                caches[i] = output_cache(out)
                step_logits = out.logits[:, -1]
                logits.append(step_logits[:, :vocab_size] if vocab_size else step_logits)
            step = mixer(logits[0], logits[1] if len(logits) > 1 else None)
            next_ids = sample(step.logp, top_k, top_p, generator, generators).cpu()
            live = (~finished).nonzero().flatten().tolist()
            values = {k: v.detach().float().cpu().tolist() for k, v in step.diagnostics.items()}
            is_eos = torch.isin(next_ids, eos)
            for row in live:
                for name, vals in values.items():
                    diags[row].setdefault(name, []).append(vals[row])
                if bool(is_eos[row]):
                    stopped[row] = True
                else:
                    tokens[row].append(int(next_ids[row]))
            finished |= is_eos
            if bool(finished.all()):
                break
            next_ids = torch.where(finished, torch.full_like(next_ids, pad_id), next_ids)
            step_ids = next_ids.unsqueeze(-1).to(device)
            step_pos = step_pos[:, -1:] + 1
            attention = torch.cat([attention, torch.ones((batch, 1), dtype=attention.dtype, device=device)], dim=-1)
    return DecodeResult(tokens, stopped, diags)


def tune_cpu_malloc() -> bool:
    """Keep glibc from mmap-ing and page-faulting every (B × V) temporary afresh at each step.

    With default settings each 1–8 MB tensor freed returns to the OS and the next step faults its
    pages in again; measured here this made the q* step 4–5× slower than its arithmetic (the usual
    advice for PyTorch CPU inference is tcmalloc/jemalloc for the same reason). Process-wide and
    harmless: temporaries up to 32 MB come from the heap, which is no longer trimmed. Returns
    whether glibc accepted the settings (False on other C libraries).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


def _forward(model: Any, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache: Any) -> Any:
    kwargs = {"input_ids": ids, "attention_mask": attention, "position_ids": positions, **cache_kwargs(model, cache),
              "use_cache": True}
    try:  # only the last position's logits: the prompt step would otherwise project every token to V
        return model(**kwargs, logits_to_keep=1)
    except TypeError:  # remote-code models without the argument
        return model(**kwargs)


def sample_generators(seed: int, sample_indices: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from (seed, sample_idx) through numpy's SeedSequence:
    a sample's tokens are then the same whatever batch it lands in — after a resume that re-batches
    the missing samples, or with another batch size."""
    import numpy as np

    return [torch.Generator(device="cpu").manual_seed(
        int(np.random.SeedSequence([int(seed), int(i)]).generate_state(1, np.uint64)[0] >> np.uint64(1)))
        for i in sample_indices]


def sample(logp: torch.Tensor, top_k: int = 0, top_p: float = 1.0, generator: torch.Generator | None = None,
           generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    """One id per row from normalised log-probs, restricted to the top-k / nucleus top-p set.
    ``generators`` (one per row) draws each row from its own stream."""
    if top_k and top_k < logp.shape[-1]:
        kth = torch.topk(logp, top_k, dim=-1).values[:, -1:]
        logp = logp.masked_fill(logp < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logp, order = torch.sort(logp, dim=-1, descending=True)
        probs = sorted_logp.exp()
        # keep a token while the mass before it is < top_p (the top token is always kept)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p * probs.sum(-1, keepdim=True)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logp = logp.masked_fill(drop, float("-inf"))
    probs = torch.softmax(logp.float(), dim=-1)
    if generators is not None:
        probs = probs.cpu()
        return torch.stack([torch.multinomial(probs[row], 1, generator=gen)[0] for row, gen in enumerate(generators)])
    if probs.device.type != "cpu" and generator is not None and generator.device.type == "cpu":
        probs = probs.cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
