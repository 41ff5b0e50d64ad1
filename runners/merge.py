"""Merge stage, builtin backend: the final policy → a standard HF model directory + MLflow model.

    train.model (or train.checkpoints/global_step_N/model)
        ─► load + save_pretrained (safetensors, config, generation config, tokenizer)
        ─► manifest.json (sha256 + size of every file) ─► MLflow: copy or reference (+ registry)

MLflow: ``mlflow.transformers.log_model`` does not work offline with this transformers version
(domain.md §7), so the directory becomes a pyfunc model (``runners/common/mlflow_model.py``): the
files inside it (``copy``) or a reference to the stage-cache path + the manifest (``reference``:
multi-GB uploads through a tracking server are slow), logged as the run's LoggedModel, registered
as ``<experiment>-policy`` with alias ``candidate``; version tags carry the durable path, the
manifest digest and the source run ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from registry.context import StageContext, StageResult
from registry.errors import InputDataError
from registry.spec.merge import MergeSpec
from runners.common import mlflow_model
from runners.modeling import validate_model_dir

AUTO_COPY_LIMIT_BYTES = 200 * 1024 * 1024
MANIFEST = "manifest.json"
ARTIFACT_PATH = "model"


def source_dir(stage_spec: MergeSpec, ctx: StageContext) -> Path:
    """The HF directory to merge: the final policy, or checkpoint ``step`` when set."""
    if stage_spec.step is None:
        return validate_model_dir(ctx.input("train.model"))
    checkpoints = ctx.input("train.checkpoints")
    candidate = checkpoints / f"global_step_{stage_spec.step}" / "model"
    if not candidate.is_dir():
        steps = sorted(int(p.name.rsplit("_", 1)[1]) for p in checkpoints.glob("global_step_*") if p.name.rsplit("_", 1)[1].isdigit())
        raise InputDataError(
            f"{candidate}: no checkpoint for merge.step={stage_spec.step} "
            f"(available steps: {steps or 'none'}; set merge.step to one of them, or null for the final model)"
        )
    return validate_model_dir(candidate)


def write_model_dir(src: Path, out: Path) -> int:
    """Load ``src`` and save it as safetensors + config + generation config + tokenizer in ``out``;
    returns the parameter count."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from registry.quiet import quiet_hf

    with quiet_hf():  # also outside a pipeline (which quiets every stage): no load/save bars
        model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(src)
        if not (src / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_model_config(model.config)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(model_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """``manifest.json`` in ``model_dir``: sha256 and size of every other file (sorted paths)."""
    files = {
        p.relative_to(model_dir).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(model_dir.rglob("*")) if p.is_file() and p.name != MANIFEST
    }
    manifest = {**extra, "total_bytes": sum(f["size"] for f in files.values()), "files": files}
    (model_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def log_model(ctx: StageContext, model_dir: Path, manifest: dict[str, Any], mode: str) -> tuple[str, Any]:
    """Log the model as an MLflow pyfunc model of the stage's run; returns (mode used, LoggedModel
    or None without a store)."""
    if mode == "auto":
        mode = "copy" if manifest["total_bytes"] < AUTO_COPY_LIMIT_BYTES else "reference"
    durable = ctx.durable(model_dir)  # the stage cache path, not the temporary out_dir
    ctx.tracker.set_tags({"rlreg.model_path": str(durable), "rlreg.model_log_mode": mode})
    client = getattr(ctx.tracker, "client", None)
    if client is None:  # NullTracker (unit tests): build the pyfunc dir, record it as an artifact
        local = mlflow_model.save_pyfunc(ctx.work_dir / "pyfunc" / "model", model_dir, model_dir / MANIFEST, mode, durable)
        ctx.tracker.log_artifacts(local, ARTIFACT_PATH)
        return mode, None
    logged = mlflow_model.log_pyfunc(client, ctx.tracker.run_id, model_dir, model_dir / MANIFEST, mode, durable,
                                     tags={"rlreg.spec": ctx.spec.name, "rlreg.model_log_mode": mode})
    ctx.tracker.set_tags({"rlreg.logged_model": logged.model_id})
    return mode, logged


def register(ctx: StageContext, name: str, logged: Any, model_dir: Path, manifest_sha256: str,
             alias: str | None = mlflow_model.DEFAULT_ALIAS) -> dict[str, str]:
    """A version of ``name`` (created if missing) whose source is the LoggedModel, linked to the
    train run and the datasets; ``alias`` moves to it."""
    client = ctx.tracker.client
    run_id = ctx.tracker.run_id
    tags = {"rlreg.model_path": str(ctx.durable(model_dir)), "rlreg.manifest_sha256": manifest_sha256,
            "rlreg.spec": ctx.spec.name, **mlflow_model.lineage(client, run_id)}
    version = mlflow_model.register(client, name, logged, run_id, tags, alias)
    ctx.tracker.set_tags({"rlreg.registered_model": f"{name}/{version.version}"})
    return {"name": name, "version": str(version.version), "alias": alias or "", "source": version.source}


def run(stage_spec: MergeSpec, ctx: StageContext) -> StageResult:
    src = source_dir(stage_spec, ctx)
    out = ctx.out_dir / "model"
    num_params = write_model_dir(src, out)
    manifest = write_manifest(out, {"source": str(src.resolve()), "num_params": num_params, "step": stage_spec.step})
    size_mb = manifest["total_bytes"] / (1024 * 1024)
    mode, logged = log_model(ctx, out, manifest, stage_spec.log_mode)
    metrics = {"merge/size_mb": size_mb, "merge/num_params": float(num_params)}
    ctx.tracker.log_metrics(metrics, step=0)
    info: dict[str, Any] = {"source": str(src), "log_mode": mode, "files": len(manifest["files"])}
    if stage_spec.register_model and logged is not None:
        name = stage_spec.registered_name or mlflow_model.registered_name_for(_experiment_name(ctx))
        registered = register(ctx, name, logged, out, sha256_file(out / MANIFEST), stage_spec.alias)
        info["registered"] = f"{registered['name']} v{registered['version']}" + (
            f" @{registered['alias']}" if registered["alias"] else "")
    ctx.tracker.flush()
    return StageResult(outputs={"model": out, "manifest": out / MANIFEST}, metrics=metrics, info=info)


def _experiment_name(ctx: StageContext) -> str:
    client = ctx.tracker.client
    return client.get_experiment(client.get_run(ctx.tracker.run_id).info.experiment_id).name
