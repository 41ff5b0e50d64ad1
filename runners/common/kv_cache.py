"""The KV-cache argument of a Hugging Face causal LM's forward, across transformers versions.

transformers 5.x renamed ``past_key_values`` to ``cache`` (forward argument and output field;
5.24 warns that the old name goes in 5.40). Hand-written decode loops (the entropy stage's exact
decoder, q* two-model decoding) use these two helpers so they work, silently, on both."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def _cache_name(forward_cls: type) -> str:
    try:
        params = inspect.signature(forward_cls.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{<the model's KV-cache argument>: cache}``: ``cache`` where forward takes it, else ``past_key_values``."""
    return {_cache_name(type(model)): cache}


def output_cache(output: Any) -> Any:
    """The KV cache a forward returned (``output.cache`` in transformers 5.x, ``past_key_values`` before)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
