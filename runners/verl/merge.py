"""Merge stage for ``train.backend: verl``: verl's FSDP checkpoint → a Hugging Face model directory.

    <verl python> -m verl.model_merger merge --backend fsdp \\
        --local_dir <ckpt>/global_step_N/actor --target_dir <stage dir>/model

on the newest step (``latest_checkpointed_iteration.txt``) or ``merge.step``; then a sha256
manifest of the merged files, and MLflow logging by ``merge.log_mode``: ``reference`` logs the
manifest and the path (multi-GB uploads through a tracking server are slow), ``copy`` uploads the
files, ``auto`` copies models under 200 MB.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.context import StageResult
from registry.errors import InputDataError, UsageError
from runners.verl import checkpoints
from runners.verl.compose import require_verl, resolve_verl_python
from runners.verl.launch import VerlExitError, launch

if TYPE_CHECKING:
    from registry.context import StageContext
    from registry.spec.merge import MergeSpec

AUTO_COPY_MAX_BYTES = 200 * 1024 * 1024
MERGER_MODULE = "verl.model_merger"


def merge_argv(python: Path, actor_dir: Path, target_dir: Path, *, trust_remote_code: bool = False) -> list[str]:
    argv = [str(python), "-m", MERGER_MODULE, "merge", "--backend", "fsdp",
            "--local_dir", str(actor_dir), "--target_dir", str(target_dir)]
    return argv + (["--trust-remote-code"] if trust_remote_code else [])


def run(stage_spec: MergeSpec, ctx: StageContext) -> StageResult:
    train = ctx.spec.train
    if train is None:
        raise UsageError(f"spec '{ctx.spec.name}': the verl merge stage needs the `train` section")
    python = resolve_verl_python(train.verl.python, ctx.project_root)
    require_verl(python)
    ckpt_dir = checkpoints.checkpoint_dir_from(ctx.input("train.checkpoints"))
    step, actor = checkpoints.actor_dir(ckpt_dir, stage_spec.step)
    target = ctx.out_dir / "model"
    trust = bool(ctx.spec.model and ctx.spec.model.trust_remote_code)
    argv = merge_argv(python, actor, target, trust_remote_code=trust)
    log_path = ctx.out_dir / "logs" / "merge.log"
    try:
        result = launch(argv, {"TOKENIZERS_PARALLELISM": "false"}, cwd=ctx.work_dir, log_path=log_path)
    finally:
        if log_path.exists():
            ctx.tracker.log_artifact(log_path, "verl")
    if result.returncode != 0:
        raise VerlExitError(result.returncode, log_path, result.tail)
    if not (target / "config.json").is_file():
        raise InputDataError(
            f"{target}: verl's model merger finished but wrote no config.json (is {actor} an FSDP "
            "actor checkpoint with a huggingface/ subdirectory?)"
        )

    manifest = build_manifest(target, source={"checkpoint_dir": str(ckpt_dir), "step": step, "actor_dir": str(actor)})
    manifest_path = ctx.out_dir / "model_manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    mode = log_model(ctx, stage_spec, target, manifest_path, manifest)
    ctx.tracker.set_tags({"rlreg.merge.step": step, "rlreg.model.path": str(ctx.durable(target)), "rlreg.model.log_mode": mode})
    return StageResult(
        outputs={"model": target, "manifest": manifest_path},
        metrics={"merge/step": float(step), "merge/model_mb": manifest["total_bytes"] / 2**20},
        info={"step": step, "files": len(manifest["files"]), "log_mode": mode},
    )


def describe(stage_spec: MergeSpec, spec: Any) -> str:
    """What ``rlreg run --dry-run`` prints for this stage."""
    python = resolve_verl_python(spec.train.verl.python if spec.train else ".venv-verl/bin/python")
    step = f"global_step_{stage_spec.step}" if stage_spec.step else "global_step_<newest>"
    argv = merge_argv(
        python,
        Path(f"<checkpoint dir>/{step}/actor"),
        Path("<merge stage dir>/model"),
        trust_remote_code=bool(spec.model and spec.model.trust_remote_code),
    )
    import shlex

    return (
        f"verl model merge (newest step from {checkpoints.LATEST_FILE} unless merge.step is set):\n"
        f"  {shlex.join(argv)}\n"
        f"then a sha256 manifest; MLflow log_mode={stage_spec.log_mode}, register_model={stage_spec.register_model}"
    )


def build_manifest(model_dir: Path, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"files": [{"path", "bytes", "sha256"}], "total_bytes", "sha256"}``; the top-level sha256
    covers every file's path and digest, so two merges compare with one string."""
    files = []
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        files.append({"path": path.relative_to(model_dir).as_posix(), "bytes": path.stat().st_size, "sha256": sha256_file(path)})
    overall = hashlib.sha256("".join(f"{f['path']}\0{f['sha256']}\n" for f in files).encode()).hexdigest()
    return {"files": files, "total_bytes": sum(f["bytes"] for f in files), "sha256": overall, "source": source or {}}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def log_model(ctx: StageContext, spec: MergeSpec, model_dir: Path, manifest_path: Path, manifest: dict[str, Any]) -> str:
    """Log the model per ``log_mode`` (run artifacts) and as an MLflow pyfunc LoggedModel
    (runners/common/mlflow_model.py); register it when asked. Returns the mode used."""
    mode = spec.log_mode
    if mode == "auto":
        mode = "copy" if manifest["total_bytes"] <= AUTO_COPY_MAX_BYTES else "reference"
    ctx.tracker.log_artifact(manifest_path, "model")
    if mode == "copy":
        ctx.tracker.log_artifacts(model_dir, "model/files")
    client = getattr(ctx.tracker, "client", None)
    if client is None:
        return mode
    from runners.common import mlflow_model

    run_id = ctx.tracker.run_id
    logged = mlflow_model.log_pyfunc(client, run_id, model_dir, manifest_path, mode, ctx.durable(model_dir),
                                     tags={"rlreg.spec": ctx.spec.name, "rlreg.model_log_mode": mode})
    ctx.tracker.set_tags({"rlreg.logged_model": logged.model_id})
    if spec.register_model:
        experiment = client.get_experiment(client.get_run(run_id).info.experiment_id).name
        name = spec.registered_name or mlflow_model.registered_name_for(experiment)
        tags = {"rlreg.model_path": str(ctx.durable(model_dir)), "rlreg.manifest_sha256": manifest["sha256"],
                "rlreg.spec": ctx.spec.name, **mlflow_model.lineage(client, run_id)}
        version = mlflow_model.register(client, name, logged, run_id, tags, spec.alias)
        ctx.tracker.set_tags({"rlreg.registered_model": f"{name}/{version.version}"})
    return mode
