"""The eval stage: tool-call accuracy with repeats and a Student-t confidence interval.

- ``backend: builtin`` (runs anywhere): transformers generation on the convert stage's test split or
  a BFCL question/answer pair, scored by the spec's reward / BFCL's AST rules (``builtin.py``).
- ``backend: bfcl`` (the user's GPU path): ``vllm serve`` + ``bfcl generate`` + ``bfcl evaluate``
  repeated in parallel, score CSVs parsed and aggregated (``bfcl_runner.py``).

Accuracies are fractions in [0, 1]. See docs/eval.md.
"""

from __future__ import annotations

from pathlib import Path

from registry.context import StageContext, StageResult
from registry.errors import UsageError
from registry.spec.eval import EvalSpec

MODEL_INPUTS = ("merge.model", "train.model", "sft.model")


def resolve_model(stage_spec: EvalSpec, ctx: StageContext) -> Path:
    """``eval.model``, else this run's merge/train/sft output, else ``model.path`` (or the tiny base)."""
    if stage_spec.model:
        return Path(ctx.resolve_ref(stage_spec.model))
    for name in MODEL_INPUTS:
        if name in ctx.inputs:
            return Path(ctx.inputs[name])
    model_spec = ctx.spec.model
    if model_spec is not None and model_spec.path:
        return ctx.resolve_path(model_spec.path)
    if model_spec is not None and model_spec.tiny is not None and "convert.train" in ctx.inputs:
        from runners.modeling import resolve_base_model

        return resolve_base_model(model_spec, train_parquet=ctx.inputs["convert.train"],
                                  cache_dir=ctx.work_dir, resolve_path=ctx.resolve_path)
    raise UsageError(
        "the eval stage has no model: set eval.model (a path or @spec reference), run a merge/train/sft "
        "stage before it, or set model.path"
    )


def run(stage_spec: EvalSpec, ctx: StageContext) -> StageResult:
    model_path = resolve_model(stage_spec, ctx)
    # the pipeline already logs the eval section as params of this child run
    ctx.tracker.set_tags({"eval.backend": stage_spec.backend})
    if stage_spec.backend == "bfcl":
        from runners.eval.bfcl_runner import run_bfcl

        return run_bfcl(stage_spec, ctx, model_path)
    from runners.eval.builtin import run_builtin

    return run_builtin(stage_spec, ctx, model_path)


def describe(stage_spec: EvalSpec, spec) -> str:
    """What `rlreg run --dry-run` prints for this stage."""
    if stage_spec.backend == "bfcl":
        from runners.eval.bfcl_runner import describe_bfcl

        return describe_bfcl(stage_spec)
    data = stage_spec.bfcl_data
    source = "convert test split" if data is None else f"BFCL {data.category or data.questions}"
    mode = f"sampled (T={stage_spec.temperature}, top_p={stage_spec.top_p})" if stage_spec.do_sample else "greedy"
    return (f"builtin eval on {source}, {stage_spec.max_samples or 'all'} records x {stage_spec.repeats} repeats, "
            f"{mode}, seeds {stage_spec.seed}..{stage_spec.seed + stage_spec.repeats - 1}")
