"""The ``entropy`` stage: entropy of the first k tokens after each tool call (ARPO; seeds 000/001).

For each model in ``entropy.models`` (default: this spec's own model), roll out the dataset's
tool-using conversations turn by turn (``rollout.py``), record the normalised entropy of each
round's first k tokens, and write, in the seed's schemas:

- ``responses.jsonl``: ``{"prompt", "response", "sample_idx", "model", …}`` per conversation;
- ``entropy_data.json``: ``[{"sample_idx", "round", "entropy", "is_after_tool_call", "model",
  "tool_name", "parsed", …}]``;
- ``entropy_increase.png``: the figure (``analysis.tool_entropy``), one line per model.

Metrics (one ``log_metrics`` batch): ``entropy/round_{r}/mean|std|count``, the same per record
type (``entropy/type/<record_type>/round_{r}/…``; ``conversations.py``) and the step series
``entropy/mean`` (step = round); with several models each key gets the model's label
(``entropy/<label>/round_{r}/mean``).
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.context import StageContext, StageResult
from registry.errors import UsageError
from registry.spec.entropy import EntropySpec
from runners.common.tools import ToolAnswerer, load_tools_config
from runners.entropy.conversations import load_conversations
from runners.entropy.models import ModelRef, resolve_models
from runners.entropy.rollout import Backend, rollout

FIGURE = "entropy_increase.png"


def run(stage_spec: EntropySpec, ctx: StageContext, backend_factory: Any = None) -> StageResult:
    """``backend_factory(model_ref, stage_spec, ctx) -> Backend`` replaces model loading (tests)."""
    dataset = _dataset_path(stage_spec, ctx)
    conversations = load_conversations(dataset, limit=stage_spec.num_samples)
    tools = load_tools_config(ctx.resolve_path(stage_spec.tools_config)) if stage_spec.tools_config else {}
    answerer = ToolAnswerer(stage_spec.tool_source, tools)
    models = resolve_models(stage_spec, ctx)
    # The section itself is logged by the pipeline (params are immutable: never log it twice);
    # here only what it resolved to.
    ctx.tracker.log_params({"dataset": str(dataset), "profiled_models": {m.label: str(m.path) for m in models}})

    profiles = _Profiles(multi=len(models) > 1)
    with _cpu_threads(stage_spec.cpu_threads):
        for ref in models:
            started = time.monotonic()
            backend = (backend_factory or make_backend)(ref, stage_spec, ctx)
            bar = _progress_bar(len(conversations), ref.label)
            try:
                results, stats = rollout(
                    conversations, backend, answerer, max_rounds=stage_spec.max_rounds,
                    max_prompt_length=stage_spec.max_prompt_length,
                    max_response_length=stage_spec.max_response_length, batch_size=stage_spec.batch_size,
                    model=ref.label, progress=_advance(bar),
                )
            finally:
                bar.close()
                estimator = getattr(backend, "estimator", "unknown")
                _release(backend)
            if not results:
                raise UsageError(
                    f"every conversation's prompt is longer than entropy.max_prompt_length="
                    f"{stage_spec.max_prompt_length} tokens for model '{ref.label}' (raise max_prompt_length)"
                )
            profiles.add(ref.label, results, stats, estimator, time.monotonic() - started)

    tracker = ctx.tracker
    tracker.log_params({f"entropy_estimator.{label}": e for label, e in profiles.estimators.items()})
    # One tag says how every profile's entropy was measured (exact vs a vLLM approximation).
    tracker.set_tags({"rlreg.entropy.estimator": ",".join(sorted(set(profiles.estimators.values())))})
    if profiles.multi:
        tracker.set_tags({f"rlreg.entropy.estimator.{label}": e for label, e in profiles.estimators.items()})
    tracker.log_metrics(profiles.metrics, step=0)
    _log_round_series(profiles.records, models, profiles.multi, ctx)
    out = ctx.out_dir
    responses_path = _write_jsonl(out / "responses.jsonl", profiles.responses)
    entropy_path = out / "entropy_data.json"
    entropy_path.write_text(json.dumps(profiles.records, indent=1, ensure_ascii=False), encoding="utf-8")
    figure_path = _figure(profiles.records, out / FIGURE, ctx)
    tracker.log_artifact(responses_path)
    tracker.log_artifact(entropy_path)
    tracker.flush()
    info = {"dataset": str(dataset), "conversations": len(conversations), **profiles.info}
    return StageResult(
        outputs={"responses": responses_path, "entropy_data": entropy_path, "figure": figure_path},
        metrics=profiles.headline, info=info,
    )


@dataclass
class _Profiles:
    """Everything the stage writes, gathered model by model."""

    multi: bool
    records: list[dict] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    headline: dict[str, float] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    estimators: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, results: list, stats: Any, estimator: str, seconds: float) -> None:
        records = [rec.to_json() for res in results for rec in res.rounds]
        self.records += records
        self.responses += [res.response_json(label) for res in results]
        prefix = f"entropy/{label}" if self.multi else "entropy"
        self.metrics.update(_round_metrics(records, prefix))
        self.metrics.update(_type_metrics(records, prefix))
        self.metrics.update({f"{prefix}/{k}": float(v) for k, v in vars(stats).items()})
        self.metrics[f"{prefix}/seconds"] = seconds
        masses = [r["topk_mass"] for r in records if r.get("topk_mass") is not None]
        if masses:  # vLLM: how much of the distribution the top-k estimate saw
            self.metrics[f"{prefix}/topk_mass_mean"] = sum(masses) / len(masses)
        self.headline.update(_headline(records, prefix))
        self.estimators[label] = estimator
        self.info[label] = (f"{estimator}: {stats.conversations} conversations, {stats.rounds} rounds, "
                            f"{stats.tool_calls} tool calls ({stats.malformed_calls} malformed), {seconds:.1f}s")


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (restored even on error)."""
    if threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def describe(stage_spec: EntropySpec, spec: Any) -> str:
    """What ``rlreg run --dry-run`` prints for this stage."""
    models = ", ".join(stage_spec.models) or f"this spec's own model ({spec.name}: merge/train/sft output or model.path)"
    data = stage_spec.dataset or f"the convert stage's {stage_spec.split} split"
    tools = {"replay": "replay the dataset's tool turns" + (f", else {stage_spec.tools_config}" if stage_spec.tools_config else ""),
             "tools_config": f"execute {stage_spec.tools_config}"}[stage_spec.tool_source]
    estimator = ("exact full-vocabulary entropy (transformers)" if stage_spec.backend == "builtin"
                 else f"vLLM top-{stage_spec.vllm_logprobs} logprob lower bound")
    return (f"entropy: {stage_spec.num_samples} conversations from {data}; models: {models}\n"
            f"  up to {stage_spec.max_rounds} tool rounds, {stage_spec.max_response_length} generated tokens each, "
            f"entropy of the first {stage_spec.k} tokens per round at temperature {stage_spec.temperature}\n"
            f"  tool answers: {tools}; {estimator}")


def make_backend(ref: ModelRef, stage_spec: EntropySpec, ctx: StageContext) -> Backend:
    dtype, device = _dtype_device(stage_spec, ctx)
    common = {"k": stage_spec.k, "temperature": stage_spec.temperature, "greedy": stage_spec.greedy,
              "seed": stage_spec.seed}
    if stage_spec.backend == "vllm":
        from runners.entropy.backend_vllm import VLLMBackend

        # vLLM's own "auto" (the checkpoint's dtype) unless the entropy section names one.
        return VLLMBackend(str(ref.path), dtype=stage_spec.dtype, logprobs=stage_spec.vllm_logprobs, **common)
    from runners.entropy.backend_hf import load_transformers_backend

    return load_transformers_backend(str(ref.path), dtype=dtype, device=device, **common)


def _dataset_path(stage_spec: EntropySpec, ctx: StageContext) -> Path:
    if stage_spec.dataset:
        return ctx.resolve_path(stage_spec.dataset)
    other = "train" if stage_spec.split == "test" else "test"
    for name in (f"convert.{stage_spec.split}", f"convert.{other}"):
        if name in ctx.inputs:
            return ctx.inputs[name]
    raise UsageError("the entropy stage needs conversations: set entropy.dataset (a JSONL of "
                     "{messages, tools} records or a verl parquet) or add the convert stage to the pipeline")


def _dtype_device(stage_spec: EntropySpec, ctx: StageContext) -> tuple[str, str]:
    model = ctx.spec.model
    dtype = stage_spec.dtype if stage_spec.dtype != "auto" else (model.dtype if model else "float32")
    device = stage_spec.device if stage_spec.device != "auto" else (model.device if model else "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return dtype, device


def _round_metrics(records: list[dict], prefix: str) -> dict[str, float]:
    from analysis.tool_entropy import round_stats

    out: dict[str, float] = {}
    for r, s in round_stats(records).items():
        out.update({f"{prefix}/round_{r}/mean": s.mean, f"{prefix}/round_{r}/std": s.std,
                    f"{prefix}/round_{r}/count": s.count})
    return out


def _type_metrics(records: list[dict], prefix: str) -> dict[str, float]:
    """The round metrics per record type (``entropy/type/<record_type>/round_{r}/…``): a round-1
    entropy pooled over records that were trained to read a tool answer and records that never
    saw one mixes the ARPO effect with distribution shift (docs/entropy.md)."""
    types = sorted({r.get("record_type") or "unknown" for r in records})
    out: dict[str, float] = {}
    for kind in types:
        out.update(_round_metrics([r for r in records if (r.get("record_type") or "unknown") == kind],
                                  f"{prefix}/type/{kind}"))
    return out


def _headline(records: list[dict], prefix: str) -> dict[str, float]:
    """Round-0 mean, the mean over rounds after a tool answer, and their difference (the jump)."""
    before = [r["entropy"] for r in records if r["round"] == 0 and math.isfinite(r["entropy"])]
    after = [r["entropy"] for r in records if r["round"] > 0 and math.isfinite(r["entropy"])]
    out = {}
    if before:
        out[f"{prefix}/round_0_mean"] = sum(before) / len(before)
    if after:
        out[f"{prefix}/after_tool_mean"] = sum(after) / len(after)
    if before and after:
        out[f"{prefix}/increase"] = out[f"{prefix}/after_tool_mean"] - out[f"{prefix}/round_0_mean"]
    return out


def _log_round_series(records: list[dict], models: list[ModelRef], multi: bool, ctx: StageContext) -> None:
    """``entropy/mean`` (and ``/std``) with step = round, so MLflow's chart draws the profile."""
    from analysis.tool_entropy import round_stats

    per_round: dict[int, dict[str, float]] = {}
    for ref in models:
        key = f"entropy/{ref.label}" if multi else "entropy"
        for r, s in round_stats(records, ref.label).items():
            per_round.setdefault(r, {}).update({f"{key}/mean": s.mean, f"{key}/std": s.std})
    for r, values in sorted(per_round.items()):
        ctx.tracker.log_metrics(values, step=r)  # buffered: one log_batch for all rounds


def _figure(records: list[dict], path: Path, ctx: StageContext) -> Path:
    from analysis.tool_entropy import entropy_figure, save_figure

    fig = entropy_figure(records, f"Entropy after tool calls — {ctx.spec.name} (mean ± std)")
    save_figure(fig, path)
    ctx.tracker.log_figure(fig, FIGURE)
    return path


def _progress_bar(total: int, label: str) -> Any:
    from registry.progress import progress

    return progress(total, desc=f"entropy {label}", unit="conv", leave=False)


def _advance(bar: Any) -> Callable[[int, int], None]:
    return lambda done, total: bar.update(done - bar.n)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _release(backend: Any) -> None:
    close = getattr(backend, "close", None)
    if close:
        close()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
