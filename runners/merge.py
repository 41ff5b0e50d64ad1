"""Merge stage, builtin backend: the final policy → a standard HF model directory + MLflow model.

    train.model (or train.checkpoints/global_step_N/model)
        ─► load + save_pretrained (safetensors, config, generation config, tokenizer)
        ─► manifest.json (sha256 + size of every file) ─► MLflow: copy or reference (+ registry)

MLflow: ``mlflow.transformers.log_model`` does not work offline with this transformers version
(domain.md §7), so the directory is logged with ``log_artifacts`` (``copy``), or only its manifest
and absolute path are (``reference``: multi-GB uploads through a tracking server are slow), and
registered with ``MlflowClient.create_model_version(source=<run artifact uri>/model)``. The
version's tags carry the local path and the manifest digest either way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from registry.context import StageContext, StageResult
from registry.errors import InputDataError
from registry.spec.merge import MergeSpec
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


def log_model(ctx: StageContext, model_dir: Path, manifest: dict[str, Any], mode: str) -> str:
    """Log the model to the stage's run; returns the mode actually used (``copy``/``reference``)."""
    if mode == "auto":
        mode = "copy" if manifest["total_bytes"] < AUTO_COPY_LIMIT_BYTES else "reference"
    if mode == "copy":
        ctx.tracker.log_artifacts(model_dir, ARTIFACT_PATH)
    else:
        ctx.tracker.log_artifact(model_dir / MANIFEST, ARTIFACT_PATH)
        ctx.tracker.log_dict({"path": str(model_dir.resolve()), "manifest": MANIFEST}, f"{ARTIFACT_PATH}/reference.json")
    ctx.tracker.set_tags({"rlreg.model_path": str(model_dir.resolve()), "rlreg.model_log_mode": mode})
    return mode


def register(ctx: StageContext, name: str, model_dir: Path, manifest_sha256: str) -> dict[str, str]:
    """Create the registered model if missing and add a version whose source is the run's
    ``model`` artifact directory."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = getattr(ctx.tracker, "client", None) or MlflowClient()
    run_id = ctx.tracker.run_id
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Created by rlreg's merge stage.")
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{ARTIFACT_PATH}"
    version = client.create_model_version(
        name, source=source, run_id=run_id,
        tags={"rlreg.model_path": str(model_dir.resolve()), "rlreg.manifest_sha256": manifest_sha256,
              "rlreg.spec": ctx.spec.name},
    )
    ctx.tracker.set_tags({"rlreg.registered_model": f"{name}/{version.version}"})
    return {"name": name, "version": str(version.version), "source": source}


def run(stage_spec: MergeSpec, ctx: StageContext) -> StageResult:
    src = source_dir(stage_spec, ctx)
    out = ctx.out_dir / "model"
    num_params = write_model_dir(src, out)
    manifest = write_manifest(out, {"source": str(src.resolve()), "num_params": num_params, "step": stage_spec.step})
    size_mb = manifest["total_bytes"] / (1024 * 1024)
    mode = log_model(ctx, out, manifest, stage_spec.log_mode)
    metrics = {"merge/size_mb": size_mb, "merge/num_params": float(num_params)}
    ctx.tracker.log_metrics(metrics, step=0)
    info: dict[str, Any] = {"source": str(src), "log_mode": mode, "files": len(manifest["files"])}
    if stage_spec.register_model:
        info["registered"] = register(ctx, stage_spec.registered_name or ctx.spec.name, out, sha256_file(out / MANIFEST))
    ctx.tracker.flush()
    return StageResult(outputs={"model": out, "manifest": out / MANIFEST}, metrics=metrics, info=info)
