"""Per-position entropy of a categorical distribution given by logits (domain.md §4).

H = logsumexp(z) − Σ softmax(z)·z on temperature-scaled logits z/τ, computed in float32 over row
chunks so a (tokens × vocab) float32 copy of the whole batch is never materialised at once —
the same approach as verl's ``entropy_from_logits_with_chunking`` (chunk 2048).
"""

from __future__ import annotations

import math

import torch

DEFAULT_CHUNK = 2048


def entropy_from_logits(
    logits: torch.Tensor, temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Entropy (nats) per position. ``logits``: (..., V) any float dtype -> (...) float32.

    Not differentiable on purpose (``no_grad``): entropy is a diagnostic / a detached bonus.
    """
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    with torch.no_grad():
        for start in range(0, flat.shape[0], chunk_size):
            rows = flat[start : start + chunk_size]
            # Our own float32 copy (never the caller's tensor: it is modified in place below).
            if temperature != 1.0:
                z = rows.float() / temperature
            else:
                z = rows.float().clone() if rows.dtype == torch.float32 else rows.float()
            # −Σ p·log p with log p = z − logsumexp(z) written in place: two (rows × V) float32
            # temporaries per chunk (log p, p) instead of four, and the accuracy of log_softmax
            # (logsumexp(z) − Σ p·z loses ~5e-5 to cancellation at V = 32k).
            z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))
            p = z.exp()
            out[start : start + chunk_size] = -p.mul_(z).sum(-1)
    return out.reshape(shape)


def normalized_entropy(logits: torch.Tensor, temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Entropy divided by log V, in [0, 1] (ARPO / seeds 000-001 convention)."""
    return entropy_from_logits(logits, temperature, chunk_size) / math.log(logits.shape[-1])
