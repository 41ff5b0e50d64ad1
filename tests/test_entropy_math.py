"""Chunked entropy equals the direct formula; the trainer's log-probs/entropy agree with it."""

from __future__ import annotations

import math

import pytest
import torch

from runners.common.entropy import entropy_from_logits, normalized_entropy


def direct_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """H = logsumexp(z) − Σ softmax(z)·z (domain.md §4), in float64, unchunked."""
    z = logits.double() / temperature
    return torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)


@pytest.mark.parametrize("chunk", [1, 7, 64, 2048])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.5])
def test_chunked_matches_direct(chunk, temperature):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 37, 501, generator=g) * 4
    got = entropy_from_logits(logits, temperature, chunk_size=chunk)
    assert got.shape == (3, 37) and got.dtype == torch.float32
    assert torch.allclose(got.double(), direct_entropy(logits, temperature), atol=1e-5)


def test_low_precision_input_is_computed_in_float32():
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(1)) * 3
    got = entropy_from_logits(logits.bfloat16(), chunk_size=16)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), direct_entropy(logits.bfloat16().float()), atol=1e-5)


def test_extremes_and_normalisation():
    V = 128
    uniform = torch.zeros(2, V)
    peaked = torch.full((2, V), -1e4)
    peaked[:, 3] = 0
    assert torch.allclose(entropy_from_logits(uniform), torch.full((2,), math.log(V)))
    assert torch.allclose(entropy_from_logits(peaked), torch.zeros(2), atol=1e-6)
    norm = normalized_entropy(torch.randn(10, V) * 5)
    assert torch.all((norm >= 0) & (norm <= 1 + 1e-6))
    assert torch.allclose(normalized_entropy(uniform), torch.ones(2))


def test_trainer_token_stats_match_formula():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from runners.train.forward import token_stats

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64))
    ids = torch.randint(1, 64, (3, 10))
    attn = torch.ones_like(ids)
    attn[0, :3] = 0  # left padding in the prompt
    R, tau = 4, 0.8
    full = model(input_ids=ids, attention_mask=attn, position_ids=(attn.cumsum(-1) - 1).clamp(min=0)).logits
    z = full[:, -R - 1 : -1].double() / tau
    want_lp = torch.log_softmax(z, -1).gather(-1, ids[:, -R:].unsqueeze(-1)).squeeze(-1)
    detached = token_stats(model, ids, attn, R, tau)
    with_grad = token_stats(model, ids, attn, R, tau, entropy_grad=True)
    assert torch.allclose(detached.log_prob.double(), want_lp, atol=1e-5)
    assert torch.allclose(detached.entropy.double(), direct_entropy(full[:, -R - 1 : -1], tau), atol=1e-5)
    assert torch.allclose(with_grad.entropy, detached.entropy, atol=1e-5)
    assert with_grad.entropy.requires_grad and not detached.entropy.requires_grad
    assert detached.log_prob.requires_grad  # the policy gradient flows through log-probs


def test_callers_logits_are_not_modified():
    logits = torch.randn(5, 50)
    before = logits.clone()
    entropy_from_logits(logits, chunk_size=2)
    entropy_from_logits(logits, temperature=0.5, chunk_size=2)
    assert torch.equal(logits, before)
