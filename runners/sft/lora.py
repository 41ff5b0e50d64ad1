"""LoRA for the builtin SFT loop through peft: wrap, train the adapters, merge into a full model.

peft is optional (extra ``lora``) and imported only when ``sft.lora`` is set. The adapters are
injected into the model's own modules, so the loop keeps training ``get_base_model()`` (the
masked loss reaches into the decoder by its usual attribute) and checkpoints hold adapter and
base weights under peft's key names; ``merge`` folds the adapters in and returns the plain model.
"""

from __future__ import annotations

from typing import Any

from registry.errors import MissingExtra
from registry.spec.sft import LoraSpec


def _peft() -> Any:
    try:
        import peft
    except ModuleNotFoundError as exc:
        raise MissingExtra("'peft' (needed by sft.lora)", "pip install 'rl-registry[lora]'  # or: pip install peft==0.21.2") from exc
    return peft


def wrap(model: Any, lora: LoraSpec) -> Any:
    """``model`` with LoRA adapters (a ``PeftModel``; only adapter weights require grad)."""
    peft = _peft()
    config = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
        target_modules=lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules),
    )
    return peft.get_peft_model(model, config)


def trainable_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def merge(peft_model: Any) -> Any:
    """The full model with the adapters merged in (``merge_and_unload``): a plain HF model."""
    return peft_model.merge_and_unload()
