"""``sft.backend: swift``: the sft section becomes an ms-swift ``swift sft`` command line (and
``swift export --merge_lora true`` for LoRA), run as a subprocess of ``sft.swift.executable``.

    convert.train/test parquet ─► messages JSONL (prompt + ground-truth assistant turn, tools)
        ─► swift sft ... --output_dir <work>/swift ─► [swift export --merge_lora] ─► HF dir ``model``

The mapping follows the user's ms-swift configs (hardtry ``exps/*/configs/sft_config.yaml``):
``train_type`` lora/full (``--tuner_type`` in ms-swift 4), ``num_train_epochs`` or ``max_steps``, ``per_device_train_batch_size``,
``gradient_accumulation_steps``, ``truncation_strategy``, ``loss_scale`` and the LoRA keys.
Metrics: swift writes every log line to ``<output_dir>/logging.jsonl``; after the run those rows
become ``sft/loss``, ``sft/eval_loss``, ``sft/lr`` and ``sft/grad_norm`` on the stage's run, at
swift's global step (``--report_to none``: transformers' MLflow callback would log swift's ~300
arguments as params and open its own run).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.context import StageContext, StageResult
    from registry.spec import Spec
    from registry.spec.sft import SFTSpec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# swift's logging.jsonl keys -> the builtin backend's metric names
METRICS = {"loss": "sft/loss", "eval_loss": "sft/eval_loss", "learning_rate": "sft/lr", "grad_norm": "sft/grad_norm"}


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def sft_argv(spec: SFTSpec, *, model: str, dtype: str, train_jsonl: str, val_jsonl: str | None, output_dir: str) -> list[str]:
    """The ``swift sft`` arguments (without the executable) for an sft section."""
    args: dict[str, Any] = {
        "model": model,
        "tuner_type": "lora" if spec.lora else "full",  # ms-swift 4 name (3.x, the user's configs: train_type)
        "dataset": train_jsonl,
        "max_length": spec.max_length,
        "truncation_strategy": spec.truncation,
        "loss_scale": "default" if spec.train_on == "all_assistant" else "last_round",
        "torch_dtype": dtype,
        "per_device_train_batch_size": spec.batch_size,
        "per_device_eval_batch_size": spec.batch_size,
        "gradient_accumulation_steps": spec.grad_accum,
        "learning_rate": spec.lr,
        "weight_decay": spec.weight_decay,
        "lr_scheduler_type": "cosine" if spec.schedule == "cosine" else "constant_with_warmup",
        "warmup_steps": spec.warmup_steps,
        "max_grad_norm": spec.grad_clip,
        "group_by_length": spec.group_by_length,
        "seed": spec.seed,
        "data_seed": spec.seed,
        "save_steps": spec.save_every,
        "save_total_limit": 2,
        "logging_steps": 1,
        "output_dir": output_dir,
        "add_version": False,
        "report_to": "none",
    }
    if spec.epochs is not None:
        args["num_train_epochs"] = spec.epochs
    else:
        args["max_steps"] = spec.max_steps
    if val_jsonl:
        args.update({"val_dataset": val_jsonl, "split_dataset_ratio": 0, "eval_strategy": "steps", "eval_steps": spec.eval_every})
    else:
        args.update({"split_dataset_ratio": 0, "eval_strategy": "no"})
    if spec.swift.model_type:
        args["model_type"] = spec.swift.model_type
    if spec.swift.template:
        args["template"] = spec.swift.template
    if spec.lora:
        targets = spec.lora.target_modules
        args.update({"lora_rank": spec.lora.r, "lora_alpha": spec.lora.alpha, "lora_dropout": spec.lora.dropout,
                     "target_modules": [targets] if isinstance(targets, str) else list(targets)})
    args.update(spec.swift.extra_args)
    argv: list[str] = []
    for key, value in args.items():
        argv.append(f"--{key}")
        argv.extend(_value(v) for v in value) if isinstance(value, list) else argv.append(_value(value))
    return argv


def export_argv(checkpoint: str, output_dir: str) -> list[str]:
    """``swift export`` arguments merging a LoRA checkpoint into a full model at ``output_dir``."""
    return ["--adapters", checkpoint, "--merge_lora", "true", "--output_dir", output_dir]


def executable(spec: SFTSpec, project_root: Path) -> Path:
    path = Path(os.path.expandvars(spec.swift.executable))
    return path if path.is_absolute() else Path(project_root) / path


def _env(spec: SFTSpec) -> dict[str, str]:
    env = {**os.environ}
    if spec.swift.nproc_per_node > 1:
        env["NPROC_PER_NODE"] = str(spec.swift.nproc_per_node)
    return env


def describe(stage_spec: SFTSpec, spec: Spec) -> str:
    """What ``rlreg run --dry-run`` prints: the exact commands, with the run-time paths named."""
    model = spec.model.path if spec.model and spec.model.path else "<tiny base model, built at run time>"
    dtype = spec.model.dtype if spec.model else "float32"
    exe = str(executable(stage_spec, PROJECT_ROOT))
    argv = sft_argv(stage_spec, model=model, dtype=dtype, train_jsonl="<work>/train.jsonl",
                    val_jsonl="<work>/val.jsonl", output_dir="<work>/swift")
    lines = []
    if stage_spec.swift.nproc_per_node > 1:
        lines.append(f"NPROC_PER_NODE={stage_spec.swift.nproc_per_node} \\")
    lines.append(shlex.join([exe, "sft", *argv]))
    if stage_spec.lora:
        lines.append(shlex.join([exe, "export", *export_argv("<work>/swift/checkpoint-<last>", "<out>/model")]))
    else:
        lines.append("# model = <work>/swift/checkpoint-<last> copied to <out>/model")
    return "\n".join(lines)


def write_jsonl(parquet: Path, out: Path) -> int:
    """The convert stage's rows as ms-swift messages records (``tools`` as a JSON string)."""
    from runners.modeling import iter_parquet_records

    n = 0
    with out.open("w") as f:
        for record in iter_parquet_records(parquet):
            row: dict[str, Any] = {"messages": record["messages"] + [{"role": "assistant", "content": record["ground_truth"]}]}
            if record["tools"]:
                row["tools"] = json.dumps(record["tools"], ensure_ascii=False)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_metrics(logging_jsonl: Path) -> list[tuple[int, dict[str, float]]]:
    """(global step, {sft/... : value}) for each row of swift's ``logging.jsonl`` that has metrics."""
    rows = []
    if not logging_jsonl.is_file():
        return rows
    for line in logging_jsonl.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        step_text = str(row.get("global_step/max_steps", "")).split("/")[0]
        metrics = {name: float(row[key]) for key, name in METRICS.items() if isinstance(row.get(key), (int, float))}
        if step_text.isdigit() and metrics:
            rows.append((int(step_text), metrics))
    return rows


def last_checkpoint(output_dir: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in output_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def run(stage_spec: SFTSpec, ctx: StageContext) -> StageResult:
    from registry.context import StageResult
    from registry.errors import StageFailed, UsageError
    from runners.modeling import resolve_base_model

    spec, model_spec = stage_spec, ctx.spec.model
    if model_spec is None:
        raise UsageError("the sft stage needs a `model` section (path or tiny)")
    exe = executable(spec, ctx.project_root)
    if not exe.is_file():
        raise UsageError(f"sft.swift.executable: {exe} does not exist (bash scripts/setup-swift-venv.sh, or point it at your swift)")
    train_parquet, test_parquet = ctx.input("convert.train"), ctx.inputs.get("convert.test")
    base = resolve_base_model(model_spec, train_parquet=train_parquet, cache_dir=ctx.work_dir / "base", resolve_path=ctx.resolve_path)
    train_jsonl = ctx.work_dir / "train.jsonl"
    rows = write_jsonl(train_parquet, train_jsonl)
    val_jsonl = None
    if test_parquet:
        val_jsonl = ctx.work_dir / "val.jsonl"
        write_jsonl(test_parquet, val_jsonl)
    swift_out = ctx.work_dir / "swift"
    argv = [str(exe), "sft", *sft_argv(spec, model=str(base), dtype=model_spec.dtype, train_jsonl=str(train_jsonl),
                                       val_jsonl=str(val_jsonl) if val_jsonl else None, output_dir=str(swift_out))]
    ctx.tracker.set_tags({"sft.backend": "swift", "sft.base_model": str(base), "sft.swift_command": shlex.join(argv)[:5000]})
    log = ctx.work_dir / "swift.log"
    with log.open("w") as f:
        code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, env=_env(spec), cwd=ctx.work_dir)
    for step, metrics in read_metrics(swift_out / "logging.jsonl"):
        ctx.tracker.log_metrics(metrics, step=step)
    if code != 0:
        tail = log.read_text()[-2000:]
        raise StageFailed("sft", f"swift sft exited {code} (log: {log}):\n{tail}")
    checkpoint = last_checkpoint(swift_out)
    if checkpoint is None:
        raise StageFailed("sft", f"swift sft wrote no checkpoint-* under {swift_out}")
    out = ctx.out_dir / "model"
    if spec.lora:
        export = [str(exe), "export", *export_argv(str(checkpoint), str(out))]
        with log.open("a") as f:
            code = subprocess.call(export, stdout=f, stderr=subprocess.STDOUT, env=_env(spec), cwd=ctx.work_dir)
        if code != 0:
            raise StageFailed("sft", f"swift export --merge_lora exited {code} (log: {log})")
    else:
        # optimizer/RNG state stays in the work dir; the output is the model and tokenizer
        shutil.copytree(checkpoint, out, ignore=shutil.ignore_patterns("optimizer.pt", "rng_state*", "scheduler.pt", "global_step*"))
    logged = read_metrics(swift_out / "logging.jsonl")
    result_metrics = {}
    losses = [m["sft/loss"] for _, m in logged if "sft/loss" in m]
    if losses:
        result_metrics["sft/final_loss"] = sum(losses[-10:]) / len(losses[-10:])
    evals = [m["sft/eval_loss"] for _, m in logged if "sft/eval_loss" in m]
    if evals:
        result_metrics["sft/eval_loss"] = evals[-1]
    ctx.tracker.log_metrics(result_metrics, step=max((s for s, _ in logged), default=0))
    print(f"sft: swift finished, model at {out}", file=sys.stderr)
    return StageResult(outputs={"model": out}, metrics=result_metrics,
                       info={"backend": "swift", "base_model": str(base), "train_examples": rows, "checkpoint": str(checkpoint),
                             "command": argv})
