"""The two models of the generate stage: where they come from, and the shared-tokenizer check."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.context import StageContext
from registry.errors import UsageError
from registry.spec.generate import GenerateSpec, PerturbSpec


@dataclass
class ModelPair:
    theta: Any
    target: Any | None
    """None when π_t = π_θ (only one model runs)."""
    tokenizer: Any
    vocab_size: int
    """Logit columns both models share (embedding rows may be padded differently)."""
    theta_path: Path
    target_desc: str


def theta_path(spec: GenerateSpec, ctx: StageContext) -> Path:
    """model_theta, else the model an earlier stage of this run produced, else the spec's model."""
    if spec.model_theta:
        return ctx.resolve_ref(spec.model_theta)
    for name in ("merge.model", "sft.model", "train.model"):
        if name in ctx.inputs:
            return ctx.inputs[name]
    if ctx.spec.model is None:
        raise UsageError("generate needs a model: set generate.model_theta or add a `model` section")
    from runners.modeling import resolve_base_model

    return resolve_base_model(
        ctx.spec.model, train_parquet=ctx.inputs.get("convert.train"), cache_dir=ctx.work_dir,
        resolve_path=ctx.resolve_ref,
    )


def load_pair(spec: GenerateSpec, ctx: StageContext) -> ModelPair:
    from runners.modeling import load_model

    dtype = ctx.spec.model.dtype if ctx.spec.model else "float32"
    device = ctx.spec.model.device if ctx.spec.model else "auto"
    trust = bool(ctx.spec.model and ctx.spec.model.trust_remote_code)
    path_theta = theta_path(spec, ctx)
    theta, tokenizer = load_model(path_theta, dtype, device, trust_remote_code=trust)
    target, desc = None, "same as model_theta"
    if spec.model_t:
        path_t = ctx.resolve_ref(spec.model_t)
        if path_t.resolve() != Path(path_theta).resolve():
            target, tokenizer_t = load_model(path_t, dtype, device, trust_remote_code=trust)
            check_same_tokenizer(tokenizer, tokenizer_t, path_theta, path_t)
            desc = str(path_t)
    elif spec.perturb_target is not None:
        target = perturbed_copy(theta, spec.perturb_target)
        desc = f"perturbed copy of model_theta (seed {spec.perturb_target.seed}, scale {spec.perturb_target.scale})"
    vocab = _logit_width(theta)
    if target is not None:
        vocab = min(vocab, _logit_width(target))
    if vocab < len(tokenizer):
        raise UsageError(
            f"the models produce {vocab} logits but the tokenizer has {len(tokenizer)} tokens "
            "(the two models must share one tokenizer and vocabulary)"
        )
    return ModelPair(theta, target, tokenizer, vocab, Path(path_theta), desc)


def check_same_tokenizer(tok_a: Any, tok_b: Any, path_a: Path, path_b: Path) -> None:
    """q* mixes the two distributions id by id, so id v must be the same string in both models."""
    vocab_a, vocab_b = tok_a.get_vocab(), tok_b.get_vocab()
    if vocab_a != vocab_b:
        only_a = sorted(set(vocab_a) - set(vocab_b))[:3]
        moved = sorted(t for t in set(vocab_a) & set(vocab_b) if vocab_a[t] != vocab_b[t])[:3]
        raise UsageError(
            f"model_theta ({path_a}) and model_t ({path_b}) do not share a tokenizer "
            f"({len(vocab_a)} vs {len(vocab_b)} tokens; e.g. only in model_theta: {only_a}, "
            f"different ids: {moved}); q* mixes per token id, so pick two models of one family "
            "(same tokenizer files)"
        )
    for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
        if getattr(tok_a, name, None) != getattr(tok_b, name, None):
            raise UsageError(
                f"model_theta ({path_a}) and model_t ({path_b}) differ in {name} "
                f"({getattr(tok_a, name, None)} vs {getattr(tok_b, name, None)}); use models with one tokenizer"
            )


def perturbed_copy(model: Any, perturb: PerturbSpec) -> Any:
    """A deep copy with N(0, (scale·std(W))²) noise added to every weight tensor W (seeded)."""
    import torch

    target = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(perturb.seed)
    with torch.no_grad():
        for _, param in sorted(target.named_parameters(), key=lambda kv: kv[0]):
            std = float(param.float().std()) if param.numel() > 1 else 0.0
            if std > 0:
                noise = torch.randn(param.shape, generator=gen, dtype=torch.float32) * (perturb.scale * std)
                param.add_(noise.to(param.device, param.dtype))
    return target


def _logit_width(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])
