"""The train stage on verl: plan (spec → config, env, argv), check with verl, launch, collect.

``run_train`` is ``runners.verl.run``; ``plan_train`` is shared with the dry run (``dry_run.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry import redact
from registry.context import StageResult
from registry.errors import UsageError
from runners.verl import checkpoints, history
from runners.verl.compose import (
    PROJECT_ROOT,
    check_config,
    require_verl,
    resolve_verl_python,
)
from runners.verl.config import VerlLaunchConfig, build_config
from runners.verl.launch import VerlExitError, launch, verl_argv, verl_env

if TYPE_CHECKING:
    from registry.context import StageContext
    from registry.spec import Spec
    from registry.spec.train import TrainSpec

SCORE_KEY = "critic/score/mean"
ENTROPY_KEY = "actor/entropy"
VAL_KEY = re.compile(r"^val-core/[^/]+/(reward|acc)/mean@\d+$")


@dataclass
class TrainPlan:
    python: Path
    launch: VerlLaunchConfig
    env: dict[str, str]
    config_dir: Path
    checkpoint_dir: Path

    @property
    def argv(self) -> list[str]:
        return verl_argv(self.python, self.config_dir, self.launch.overrides)


def plan_train(
    train: TrainSpec,
    spec: Spec,
    *,
    project_root: Path,
    model_path: str,
    train_files: str,
    val_files: str,
    checkpoint_dir: Path,
    config_dir: Path,
    tracking_uri: str,
    run_id: str,
) -> TrainPlan:
    from runners.reward_file import check_file

    check_file(spec.reward, project_root)  # verl's workers import it: a missing file must fail here, not on the GPUs
    if train.rollout.multi_turn.enable and spec.data is not None and spec.data.tools_in_system_prompt:
        raise UsageError(
            f"spec '{spec.name}': data.tools_in_system_prompt: verl's tool_agent loop renders the tools "
            "itself (apply_chat_template(tools=...)), so the prompt would list them twice (set "
            "data.tools_in_system_prompt: false, or train.rollout.multi_turn.enable: false)"
        )
    env = verl_env(project_root=PROJECT_ROOT, tracking_uri=tracking_uri, run_id=run_id)
    launch_config = build_config(
        train,
        spec,
        model_path=model_path,
        train_files=train_files,
        val_files=val_files,
        checkpoint_dir=str(checkpoint_dir),
        # an existing Ray cluster's workers do not inherit this process's environment
        env_vars=env,
        project_root=project_root,
        tools_dir=str(config_dir),
        entropy_dir=str(config_dir.parent / "entropy_steps"),
    )
    return TrainPlan(
        python=resolve_verl_python(train.verl.python, project_root),
        launch=launch_config,
        env=env,
        config_dir=config_dir,
        checkpoint_dir=checkpoint_dir,
    )


def run_train(train: TrainSpec, ctx: StageContext) -> StageResult:
    python = resolve_verl_python(train.verl.python, ctx.project_root)
    require_verl(python)
    checkpoint_dir = ctx.resolve_path(train.verl.checkpoint_dir) if train.verl.checkpoint_dir else ctx.work_dir / "checkpoints"
    # in the persistent work dir, so the logged command stays runnable by hand after the stage
    # (out_dir moves into the store); copied into the outputs at the end
    config_dir = ctx.work_dir / "verl"
    if config_dir.exists():
        shutil.rmtree(config_dir)
    train_files, val_files = ctx.input("convert.train").resolve(), ctx.input("convert.test").resolve()
    multi_turn_info: dict[str, Any] = {}
    if train.rollout.multi_turn.enable:
        train_files, val_files, multi_turn_info = _prepare_multi_turn(train, ctx, train_files, val_files, config_dir)
    plan = plan_train(
        train,
        ctx.spec,
        project_root=ctx.project_root,
        model_path=str(_model_path(ctx)),
        train_files=str(train_files),
        val_files=str(val_files),
        checkpoint_dir=checkpoint_dir,
        config_dir=config_dir,
        tracking_uri=_tracking_uri(ctx),
        run_id=ctx.tracker.run_id,
    )
    plan.launch.write(config_dir)  # the multi-turn tool file is already there (verl loads it in the check)
    composed = check_config(plan.launch, plan.python, spec_name=ctx.spec.name, config_dir=config_dir)
    # what rlreg writes is masked (registry/redact.py); verl itself gets the real argv in memory
    redact.write_text(config_dir / "composed_config.yaml", yaml.safe_dump(composed, sort_keys=False))
    redact.write_text(config_dir / "overrides.txt", "".join(o + "\n" for o in plan.launch.overrides))
    redact.write_text(config_dir / "command.txt", shlex.join(redact.redact_argv(plan.argv)) + "\n")
    ctx.tracker.log_artifacts(config_dir, "verl")
    ctx.tracker.set_tags(_tags(plan, train, ctx.spec, ctx.project_root))

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resumed_from = checkpoints.latest_step(checkpoint_dir) if train.verl.resume_mode == "auto" else None
    log_path = ctx.out_dir / "logs" / "train.log"
    try:
        result = launch(plan.argv, plan.env, cwd=ctx.work_dir, log_path=log_path, timeout_s=train.verl.timeout_s)
    finally:
        if log_path.exists():
            ctx.tracker.log_artifact(log_path, "verl")
    if result.returncode != 0:
        raise VerlExitError(result.returncode, log_path, result.tail)

    metrics = _headline_metrics(ctx, result)
    # entropy_history.json in the out dir, as the builtin trainer writes it
    history_path = history.write_history(ctx, result.step_metrics)
    pointer = checkpoints.write_pointer(ctx.out_dir, checkpoint_dir)
    info: dict[str, Any] = {
        "verl_seconds": round(result.seconds, 1),
        "checkpoint_dir": str(checkpoint_dir),
        "latest_step": checkpoints.latest_step(checkpoint_dir),
    }
    if resumed_from is not None:
        info["resumed_from_step"] = resumed_from
    info.update(multi_turn_info)
    out_config = ctx.out_dir / "verl_config"
    shutil.copytree(config_dir, out_config)
    outputs = {"checkpoints": pointer, "verl_config": out_config}
    entropy_dir = ctx.work_dir / "entropy_steps"  # multi-turn: written by the plugin in verl's driver
    if train.rollout.multi_turn.enable and entropy_dir.is_dir() and any(entropy_dir.glob("entropy_step_*.json")):
        outputs["entropy_steps"] = ctx.out_dir / "entropy_steps"
        shutil.copytree(entropy_dir, outputs["entropy_steps"])
        ctx.tracker.log_artifacts(outputs["entropy_steps"], "entropy_steps")
        info["entropy_step_files"] = len(list(entropy_dir.glob("entropy_step_*.json")))
    if history_path is not None:
        info["entropy_history_steps"] = len(json.loads(history_path.read_text()))
    return StageResult(outputs=outputs, metrics=metrics, info=info)


def _prepare_multi_turn(
    train: TrainSpec, ctx: StageContext, train_files: Path, val_files: Path, config_dir: Path
) -> tuple[Path, Path, dict[str, Any]]:
    """Rows for verl's tool_agent loop (runners/verl/multi_turn_data.py) in the work dir, and the
    tool file verl loads (runners/verl/multi_turn.py) in ``config_dir``."""
    from runners.verl.multi_turn import dataset_tool_schemas, write_tool_files
    from runners.verl.multi_turn_data import prepare_parquet

    mt = train.rollout.multi_turn
    schemas = dataset_tool_schemas([train_files, val_files])
    tools_config = ctx.resolve_path(mt.tools_config) if mt.tools_config else None
    tool_path = write_tool_files(mt, config_dir, schemas, tools_config)
    data_dir = ctx.work_dir / "verl_data"
    replay = mt.tool_source == "replay"
    stats = prepare_parquet(train_files, data_dir / "train.parquet", list(schemas), replay=replay)
    prepare_parquet(val_files, data_dir / "test.parquet", list(schemas), replay=replay)
    info = {"multi_turn_tool_file": str(tool_path), "multi_turn_tools": len(schemas),
            **{f"multi_turn_train_{k}": v for k, v in stats.items()}}
    return data_dir / "train.parquet", data_dir / "test.parquet", info


def _model_path(ctx: StageContext) -> Path:
    if "sft.model" in ctx.inputs:
        return ctx.input("sft.model").resolve()
    model = ctx.spec.model
    if model is None or model.path is None:
        raise UsageError(
            f"spec '{ctx.spec.name}': model: train.backend verl needs model.path (a local Hugging Face "
            "directory); model.tiny is for the builtin trainer (set train.backend: builtin, or model.path)"
        )
    path = ctx.resolve_ref(model.path) if model.path.startswith("@") else ctx.resolve_path(model.path)
    if not (path / "config.json").is_file():
        raise UsageError(
            f"spec '{ctx.spec.name}': model.path: {path} is not a Hugging Face model directory (no "
            "config.json); check the path and the environment variables it uses"
        )
    return path


def _tracking_uri(ctx: StageContext) -> str:
    client = getattr(ctx.tracker, "client", None)
    uri = getattr(client, "tracking_uri", None) if client is not None else None
    if uri:
        return uri
    import mlflow

    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()


def _tags(plan: TrainPlan, train: TrainSpec, spec: Spec, project_root: Path) -> dict[str, str]:
    from registry.hashing import sha256_file
    from runners.reward_file import source_file

    return {
        "rlreg.backend": "verl",
        "rlreg.reward_sha256": sha256_file(source_file(spec.reward, project_root)),
        "verl.python": str(plan.python),
        "verl.command": shlex.join(plan.argv)[:8000],
        "verl.adv_estimator": train.algorithm.adv_estimator,
        "verl.ray_address": train.verl.ray_address or "local",
    }


def _headline_metrics(ctx: StageContext, result) -> dict[str, float]:
    """The builtin trainer's headline names, from what verl logged: the MLflow run verl attached
    to (latest value per key, first score from its history), else the console lines it printed.

    train/reward_mean_first|last <- critic/score/mean   actor/entropy_last <- actor/entropy
    val/reward_mean_last <- val-core/<data_source>/reward/mean@N   train/steps <- training/global_step
    """
    last: dict[str, float] = {}
    first_score = None
    client = getattr(ctx.tracker, "client", None)
    if client is not None:
        try:
            last.update(client.get_run(ctx.tracker.run_id).data.metrics)
            history = client.get_metric_history(ctx.tracker.run_id, SCORE_KEY)
            if history:
                first_score = min(history, key=lambda m: (m.step, m.timestamp)).value
        except Exception as exc:  # noqa: BLE001 - the store is unreachable: the console copy still counts
            print(f"[rlreg] could not read verl's metrics from MLflow: {exc}", file=sys.stderr)
    for step in sorted(result.step_metrics):
        for key, value in result.step_metrics[step].items():
            last[f"console:{key}"] = value
    if first_score is None:
        first_score = next((result.step_metrics[s][SCORE_KEY] for s in sorted(result.step_metrics)
                            if SCORE_KEY in result.step_metrics[s]), None)

    def pick(key: str) -> float | None:
        return last.get(key, last.get(f"console:{key}"))

    metrics: dict[str, float] = {}
    for name, value in {
        "train/reward_mean_first": first_score,
        "train/reward_mean_last": pick(SCORE_KEY),
        "actor/entropy_last": pick(ENTROPY_KEY),
        "train/steps": pick("training/global_step") or (max(result.step_metrics) if result.step_metrics else None),
    }.items():
        if value is not None:
            metrics[name] = float(value)
    val_keys = sorted(k for k in last if VAL_KEY.match(k.removeprefix("console:")))
    if val_keys:
        metrics["val/reward_mean_last"] = float(last[val_keys[0]])
    return metrics
