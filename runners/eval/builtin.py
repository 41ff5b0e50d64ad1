"""The builtin backend: generate with transformers in-process, score, repeat with distinct seeds.

Logged to the eval child run: per repeat ``eval/<metric>`` at step r; the aggregate
``eval/<metric>_mean|_std|_ci95_low|_ci95_high`` and ``eval/repeats`` are returned as
``StageResult.metrics``, which the pipeline logs to this run (and the mean to the parent run); the
per-entry results (entry × repeat) as the MLflow table ``eval/entries.json`` (``runners.eval.entries``:
stable ``entry_id``, correctness, reward, response, parsed calls, prompt text) and the output file
``predictions.jsonl`` (the same rows); ``eval/summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from registry.context import StageContext, StageResult
from registry.spec.eval import EvalSpec
from runners.eval import bfcl_data
from runners.eval.entries import ARTIFACT as ENTRIES_ARTIFACT
from runners.eval.entries import builtin_rows as entry_rows
from runners.eval.generation import cpu_threads_for, generate, prompt_texts
from runners.eval.records import EvalRecord, load_convert_split
from runners.eval.scoring import score_sample
from runners.eval.summary import aggregate, summary_table

METRICS = ("accuracy", "format_valid_rate", "tool_name_accuracy", "arg_accuracy", "response_length")


def load_eval_set(stage_spec: EvalSpec, ctx: StageContext) -> tuple[list[EvalRecord], str]:
    """The records and a label saying where they came from."""
    data = stage_spec.bfcl_data
    if data is None:
        path = ctx.input("convert.test")
        return load_convert_split(path, stage_spec.max_samples), str(path)
    records = bfcl_data.load(data.questions, data.answers, data.category, data.wheel, ctx.project_root,
                             ctx.resolve_path, stage_spec.max_samples)
    return records, f"bfcl:{data.category}" if data.category else str(data.questions)


def log_eval_set(ctx: StageContext, records: list[EvalRecord], source: str) -> str:
    """Record the evaluated prompts as this run's MLflow dataset input (context ``eval``), digest =
    sha256 of the records, so two evals are comparable only when their digests agree."""
    import hashlib
    import warnings

    import mlflow.data
    import pandas as pd

    df = pd.DataFrame([{"prompt_id": r.id, "messages": json.dumps(r.messages, ensure_ascii=False),
                        "expected": json.dumps(r.ground_truth, ensure_ascii=False), "kind": r.kind}
                       for r in records])
    digest = hashlib.sha256(df.to_json(orient="records").encode()).hexdigest()[:32]
    is_file = Path(source).is_file()
    name = Path(source).stem if is_file else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's source-type ambiguity and schema hints are noise here
        # a wheel category ("bfcl:simple_python") is no path MLflow can resolve: name it instead
        dataset = mlflow.data.from_pandas(df, source=source if is_file else None, name=name, digest=digest)
    ctx.tracker.log_input(dataset, "eval")
    return digest


def run_builtin(stage_spec: EvalSpec, ctx: StageContext, model_path: Path) -> StageResult:
    from runners.modeling import load_model
    from runners.reward_file import load_reward

    data_source = ctx.spec.data.data_source if ctx.spec.data is not None else ""
    reward_fn = load_reward(ctx.spec.reward, ctx.project_root, data_source)  # a bad reward file fails before the model loads
    reward_name = reward_fn.label
    records, source = load_eval_set(stage_spec, ctx)
    model_spec = ctx.spec.model
    model, tokenizer = load_model(
        model_path, dtype=model_spec.dtype if model_spec else "float32",
        device=model_spec.device if model_spec else "auto",
        trust_remote_code=bool(model_spec and model_spec.trust_remote_code),
    )
    digest = log_eval_set(ctx, records, source)
    ctx.tracker.log_params({"model_path": str(model_path), "eval_set": source, "num_records": len(records),
                            "reward_function": reward_name, "eval_set_digest": digest})
    prompts = prompt_texts(tokenizer, records)

    per_repeat: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    greedy_cache = None
    started = time.monotonic()
    for r in range(stage_spec.repeats):
        seed = stage_spec.seed + r
        if greedy_cache is None or stage_spec.do_sample:
            with cpu_threads_for(model):
                generations = generate(
                    model, tokenizer, prompts, batch_size=stage_spec.batch_size, do_sample=stage_spec.do_sample,
                    temperature=stage_spec.temperature, top_p=stage_spec.top_p, max_new_tokens=stage_spec.max_new_tokens,
                    max_prompt_length=stage_spec.max_prompt_length, seed=seed,
                )
            greedy_cache = generations
        else:
            generations = greedy_cache  # greedy decoding: every repeat would produce the same text
        scores = [score_sample(rec, g.text, reward_fn, reward_fn.requires_think)
                  for rec, g in zip(records, generations)]
        n = len(scores)
        metrics = {
            "eval/accuracy": sum(s.score for s in scores) / n,
            "eval/format_valid_rate": sum(s.format_valid for s in scores) / n,
            "eval/tool_name_accuracy": sum(s.tool_name_correct for s in scores) / n,
            "eval/arg_accuracy": sum(s.args_correct for s in scores) / n,
            "eval/response_length": sum(g.num_tokens for g in generations) / n,
        }
        ctx.tracker.log_metrics(metrics, step=r)
        per_repeat.append(metrics)
        # reward = the score: the spec's reward for convert-split records, format + AST match for BFCL ones
        rows += entry_rows(records, prompts, generations, scores, [s.score for s in scores], r, seed)
    elapsed = time.monotonic() - started

    agg = aggregate(per_repeat, stage_spec.confidence)
    # the aggregate goes into StageResult.metrics: the pipeline logs it to this run and the parent
    ctx.tracker.log_metrics({"eval/seconds": elapsed}, step=0)
    predictions = ctx.out_dir / "predictions.jsonl"
    with predictions.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    ctx.tracker.log_table(rows, ENTRIES_ARTIFACT)
    ctx.tracker.log_dict(summary_table(per_repeat, stage_spec.confidence), "eval/summary.json")
    ctx.tracker.flush()
    info = {"records": len(records), "repeats": stage_spec.repeats, "eval_set": source,
            "accuracy": f"{agg['eval/accuracy_mean']:.3f}", "seconds": round(elapsed, 1)}
    if not stage_spec.do_sample and stage_spec.repeats > 1:
        info["note"] = "greedy decoding: repeats are identical, so the interval has zero width"
    return StageResult(outputs={"predictions": predictions}, metrics=agg, info=info)
