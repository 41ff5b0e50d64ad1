"""Which models the entropy stage profiles, and the label each profile carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.context import StageContext
from registry.errors import UsageError
from registry.spec.entropy import EntropySpec

# Model outputs of earlier stages, most trained first.
MODEL_INPUTS = ("merge.model", "train.model", "sft.model")


@dataclass(frozen=True)
class ModelRef:
    label: str
    path: Path
    ref: str
    """What the spec said (a path or an ``@spec`` reference)."""


def resolve_models(stage_spec: EntropySpec, ctx: StageContext) -> list[ModelRef]:
    if not stage_spec.models:
        return [_own_model(ctx)]
    refs = []
    for i, ref in enumerate(stage_spec.models):
        path = ctx.resolve_ref(ref) if ref.startswith("@") else ctx.resolve_path(ref)
        label = stage_spec.labels[i] if stage_spec.labels else default_label(ref, path)
        refs.append(ModelRef(label, Path(path), ref))
    return _dedupe(refs)


def _own_model(ctx: StageContext) -> ModelRef:
    for name in MODEL_INPUTS:
        if name in ctx.inputs:
            return ModelRef(ctx.spec.name, ctx.inputs[name], name)
    model = ctx.spec.model
    if model is not None and model.path:
        return ModelRef(ctx.spec.name, ctx.resolve_path(model.path), model.path)
    raise UsageError(
        "the entropy stage has no model to profile: set entropy.models (paths or @spec references), "
        "set model.path, or put an sft/train/merge stage before entropy in the pipeline"
    )


def default_label(ref: str, path: Path) -> str:
    """``@demo-egpo:merge.model`` → ``demo-egpo``; a path → its directory name."""
    if ref.startswith("@"):
        return ref[1:].split(":", 1)[0]
    return Path(path).name or str(path)


def _dedupe(refs: list[ModelRef]) -> list[ModelRef]:
    seen: dict[str, int] = {}
    out = []
    for ref in refs:
        n = seen.get(ref.label, 0)
        seen[ref.label] = n + 1
        out.append(ref if n == 0 else ModelRef(f"{ref.label}-{n + 1}", ref.path, ref.ref))
    return out
