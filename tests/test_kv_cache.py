"""runners/common/kv_cache.py: the KV-cache argument by transformers version, and a cached decode
that matches the uncached forward without the deprecation warning."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import torch

from runners.common.kv_cache import cache_kwargs, output_cache


class _OldModel:
    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=None):  # transformers 4.x
        return None


def test_old_forward_gets_past_key_values_and_either_output_field_is_read():
    assert cache_kwargs(_OldModel(), "kv") == {"past_key_values": "kv"}
    assert output_cache(SimpleNamespace(past_key_values="old")) == "old"
    assert output_cache(SimpleNamespace(cache="new", past_key_values="old")) == "new"
    assert output_cache(SimpleNamespace(logits=1)) is None


def test_cached_steps_equal_the_full_forward_and_warn_nothing(tiny_model_dir):
    from runners.modeling import load_model

    model, _ = load_model(tiny_model_dir, dtype="float32", device="cpu")
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    full = model(input_ids=ids).logits[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers 5.x: past_key_values is deprecated
        out = model(input_ids=ids[:, :4], **cache_kwargs(model, None), use_cache=True)
        cache, steps = output_cache(out), [out.logits[0, -1]]
        assert cache is not None
        for t in range(4, 6):
            out = model(input_ids=ids[:, t:t + 1], position_ids=torch.tensor([[t]]), **cache_kwargs(model, cache),
                        use_cache=True)
            cache = output_cache(out)
            steps.append(out.logits[0, -1])
    for got, want in zip(steps, full[3:]):
        assert torch.allclose(got, want, atol=1e-4)
