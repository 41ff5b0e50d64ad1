"""The ``generate`` stage: q* optimal-sampling data generation (seed 003, domain.md §5).

For each prompt, sample a response token by token from q*(v) ∝ π_θ(v)^(1−α)·π_t(v)^α with α per
token (``fixed`` / ``kl_symmetry`` / ``entropy``), recording α, ESS_θ, ESS_t, their ratio and both KLs.

Outputs (in ``ctx.work_dir`` while running, so a rerun resumes; copied into ``ctx.out_dir`` at the end):

- ``data``: ``generated.jsonl`` — ``{"messages": [...prompt, assistant], "sample_idx", ...original}``;
- ``diagnostics``: ``generated.diagnostics.jsonl`` — per sample ``alpha_mean/std``,
  ``ess_ratio_mean/std``, ``ess_theta_mean``, ``ess_t_mean``, ``kl_theta_mean``, ``kl_t_mean``
  (+ per-token arrays under ``tokens`` when ``token_diagnostics``).

MLflow (``ctx.tracker``): per batch ``generate/batch/*`` (step = batches done), run-level
``generate/*`` headline metrics, α/ESS/KL histograms (``generate_histograms.png``), both files and an
example table (``generate_examples.json``).
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from registry.context import StageContext, StageResult
from registry.errors import UsageError
from registry.spec.generate import GenerateSpec
from runners.generate.adapters import adapt
from runners.generate.datasets import PromptRecord
from runners.generate.decode import decode, sample_generators, tune_cpu_malloc
from runners.generate.mixer import DIAGNOSTIC_NAMES, QStarMixer
from runners.generate.models import ModelPair, load_pair
from runners.generate.report import log_run_summary, sample_summary
from runners.generate.sources import check_not_hub_id, load_source
from runners.generate.writer import SampleWriter

DATA_FILE = "generated.jsonl"
DIAGNOSTICS_FILE = "generated.diagnostics.jsonl"


def run(stage_spec: GenerateSpec, ctx: StageContext) -> StageResult:
    from runners.modeling import apply_cpu_threads

    apply_cpu_threads(ctx.spec.model)  # model.cpu_threads (tiny models: 1 thread is faster)
    spec = stage_spec
    dataset_path = _dataset_path(spec, ctx)
    if spec.dataset:
        check_not_hub_id(spec.dataset, dataset_path)
    prompts = adapt(load_source(dataset_path, spec.split), dataset_path, spec)
    start = spec.start_idx or 0
    if start >= len(prompts):
        raise UsageError(f"generate.start_idx={start} but {dataset_path} has only {len(prompts)} records")
    end = len(prompts) if spec.num_samples is None else min(len(prompts), start + spec.num_samples)
    writer = SampleWriter(ctx.work_dir / DATA_FILE, ctx.work_dir / DIAGNOSTICS_FILE)
    todo = [p for p in prompts[start:end] if p.index not in writer.done]
    resumed = len(writer.done & set(range(start, end)))

    pair = load_pair(spec, ctx)
    if next(pair.theta.parameters()).device.type == "cpu":
        tune_cpu_malloc()
    mixer = QStarMixer(
        spec.alpha_method, fixed_alpha=spec.fixed_alpha, tol=spec.alpha_tol, temperature=spec.temperature,
        support_eps=spec.alpha_support_eps, max_tail=spec.alpha_max_tail, gap_rtol=spec.alpha_gap_rtol,
    )
    ctx.tracker.log_params({"resolved": {
        "dataset": str(dataset_path), "model_theta": str(pair.theta_path), "model_t": pair.target_desc,
        "range": f"[{start}, {end})", "vocab_size": pair.vocab_size,
    }})
    ctx.tracker.set_tags({"rlreg.generate.resumed_samples": resumed})

    token_values: dict[str, list[float]] = {name: [] for name in DIAGNOSTIC_NAMES}
    started, new_tokens = time.monotonic(), 0
    for batches, offset in enumerate(range(0, len(todo), spec.batch_size), 1):
        batch = todo[offset : offset + spec.batch_size]
        records, diags, n_tokens = _generate_batch(batch, pair, mixer, spec)
        writer.write_batch(records, diags)
        new_tokens += n_tokens
        for d in diags:
            for name in DIAGNOSTIC_NAMES:
                token_values[name].extend(d.get("tokens", {}).get(name, []))
        ctx.tracker.log_metrics(_batch_metrics(diags, n_tokens, time.monotonic() - started, new_tokens), step=batches)
    elapsed = time.monotonic() - started

    out_data = ctx.out_dir / DATA_FILE
    out_diag = ctx.out_dir / DIAGNOSTICS_FILE
    shutil.copyfile(writer.data_path, out_data)  # a copy: the work dir may be appended to later
    shutil.copyfile(writer.diagnostics_path, out_diag)
    stats = mixer.stats
    metrics = log_run_summary(ctx.tracker, out_data, out_diag, token_values, spec.log_examples)
    metrics.update({
        "generate/new_samples": float(len(todo)), "generate/resumed_samples": float(resumed),
        "generate/tokens_per_s": new_tokens / elapsed if elapsed > 0 else 0.0,
        "generate/alpha_solve_ms_per_position": 1e3 * stats.solve_seconds / max(stats.positions, 1),
        "generate/alpha_exact_fraction": stats.exact_rows / max(stats.positions, 1),
        "generate/alpha_max_tail_mass": stats.max_tail,
        "generate/alpha_gap_fallbacks": float(stats.gap_fallback_rows),
        "generate/alpha_max_rel_kl_gap": stats.max_rel_gap,
    })
    ctx.tracker.log_metrics(metrics)
    info = {"samples": int(metrics.get("generate/samples", 0)), "new": len(todo), "resumed": resumed,
            "alpha_method": spec.alpha_method, "model_t": pair.target_desc}
    return StageResult(outputs={"data": out_data, "diagnostics": out_diag}, metrics=metrics, info=info)


def describe(stage_spec: GenerateSpec, spec: Any) -> str:
    target = stage_spec.model_t or ("perturbed copy of π_θ" if stage_spec.perturb_target else "π_θ (q* = π_θ)")
    return (f"q* sampling, alpha_method={stage_spec.alpha_method}, π_t={target}, "
            f"batch {stage_spec.batch_size}, max_new_tokens {stage_spec.max_new_tokens}")


def _dataset_path(spec: GenerateSpec, ctx: StageContext):
    if spec.dataset:
        return ctx.resolve_ref(spec.dataset)
    if "convert.train" in ctx.inputs:
        return ctx.inputs["convert.train"]
    raise UsageError("generate needs prompts: set generate.dataset (JSON/JSONL/parquet) or add a `data` section")


def _generate_batch(
    batch: list[PromptRecord], pair: ModelPair, mixer: QStarMixer, spec: GenerateSpec,
) -> tuple[list[dict], list[dict], int]:
    from runners.modeling import render_prompt

    tok = pair.tokenizer
    ids = []
    for p in batch:
        prompt_ids = tok(render_prompt(tok, p.messages, p.tools), add_special_tokens=False)["input_ids"]
        ids.append(prompt_ids[-spec.max_prompt_tokens:] if spec.max_prompt_tokens else prompt_ids)
    # per-sample streams: a resumed run that re-batches the missing samples draws what an
    # uninterrupted run drew
    generators = sample_generators(spec.seed, [p.index for p in batch])
    models = [pair.theta] if pair.target is None else [pair.theta, pair.target]
    result = decode(
        models, ids, mixer, pad_id=tok.pad_token_id, eos_ids=_eos_ids(pair), max_new_tokens=spec.max_new_tokens,
        top_k=spec.top_k, top_p=spec.top_p, generators=generators, vocab_size=pair.vocab_size,
    )
    records, diags, n_tokens = [], [], 0
    for p, tokens, eos, token_diags in zip(batch, result.tokens, result.stopped_on_eos, result.diagnostics):
        text = tok.decode(tokens, skip_special_tokens=False)
        n_tokens += len(tokens) + int(eos)
        original = {k: v for k, v in p.original.items() if k not in ("messages", "sample_idx")}
        if "messages" in p.original:
            original["original_messages"] = p.original["messages"]
        record = {"messages": p.messages + [{"role": "assistant", "content": text}], "sample_idx": p.index,
                  **original}
        if p.reference is not None:
            record["reference_response"] = p.reference
        if p.tools:
            record.setdefault("tools", p.tools)
        records.append(record)
        diag = {"sample_idx": p.index, "num_tokens": len(tokens), "stopped_on_eos": eos,
                **sample_summary(token_diags)}
        if spec.token_diagnostics:
            diag["tokens"] = {k: [round(v, 6) for v in vals] for k, vals in token_diags.items()}
        diags.append(diag)
    return records, diags, n_tokens


def _eos_ids(pair: ModelPair) -> set[int]:
    ids = {pair.tokenizer.eos_token_id}
    configured = getattr(getattr(pair.theta, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}


def _batch_metrics(diags: list[dict], n_tokens: int, elapsed: float, total_tokens: int) -> dict[str, float]:
    out: dict[str, float] = {"generate/batch/tokens": float(n_tokens),
                             "generate/batch/tokens_per_s": total_tokens / elapsed if elapsed > 0 else 0.0}
    for key in ("alpha_mean", "ess_ratio_mean", "kl_theta_mean", "kl_t_mean"):
        vals = [d[key] for d in diags if d.get(key) is not None]
        if vals:
            out[f"generate/batch/{key}"] = sum(vals) / len(vals)
    return out
