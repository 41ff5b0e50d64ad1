"""Launching verl, with a stand-in interpreter placed as ``train.verl.python``: it answers the
config check, and for ``-m verl.trainer.main_ppo`` / ``-m verl.model_merger`` it records its
argv, environment and cwd, prints verl-style log lines, writes verl's checkpoint layout, logs
metrics to the MLflow run it was handed (as verl's mlflow logger does) and exits with a chosen
code. Everything up to and after the process is the real runner code, with a real MLflow store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest

from registry.errors import InputDataError, MissingExtra, SpecError, UsageError

STAND_IN = r'''#!{python}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
if args[:1] == ["-I"]:  # the config check: runners/verl/_verl_check.py request.json result.json
    request = json.load(open(args[2]))
    ok = os.environ.get("STANDIN_CHECK", "ok") == "ok"
    result = {{"ok": ok, "verl_version": "0.9.1", "config": {{"stand_in": True}}}}
    if not ok:
        result["error"] = {{"step": "validate", "type": "AssertionError",
                           "message": "real_train_batch_size (6) must be divisible by minimal possible batch size (4)"}}
    json.dump({{"results": [result for _ in request["checks"]]}}, open(args[3], "w"))
    sys.exit(0)

record = {{"argv": sys.argv, "cwd": os.getcwd(), "env": {{k: v for k, v in os.environ.items()
          if k.startswith(("MLFLOW_", "VERL_", "PYTHONPATH", "HYDRA_"))}}}}
with open(os.environ["STANDIN_RECORD"], "a") as f:
    f.write(json.dumps(record) + "\n")

if args[:2] == ["-m", "verl.trainer.main_ppo"]:
    import yaml
    cfg = yaml.safe_load(open(Path(args[3]) / (args[5] + ".yaml")))
    ckpt = Path(cfg["trainer"]["default_local_dir"])
    if os.environ.get("STANDIN_HANDSHAKE"):
        print("waiting for the runner to see this line", flush=True)
        deadline = time.time() + 20
        while not Path(os.environ["STANDIN_HANDSHAKE"]).exists() and time.time() < deadline:
            time.sleep(0.05)
    if os.environ.get("STANDIN_SLEEP"):
        time.sleep(float(os.environ["STANDIN_SLEEP"]))
    print("ray init kwargs: {{...}}", flush=True)
    print("step:1 - actor/entropy:0.9 - critic/score/mean:0.25 - perf/time:1.5", flush=True)
    print("step:2 - actor/entropy:0.8 - critic/score/mean:0.5 - val-core/hardgen/reward/mean@1:0.375 - training/global_step:2", flush=True)
    print("some stderr noise", file=sys.stderr, flush=True)
    if os.environ.get("STANDIN_MLFLOW"):
        import mlflow
        from mlflow.entities import Metric
        client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        client.log_batch(os.environ["MLFLOW_RUN_ID"], metrics=[
            Metric("critic/score/mean", 0.125, 0, 1), Metric("critic/score/mean", 0.75, 0, 2),
            Metric("actor/entropy", 0.6, 0, 2)])
    (ckpt / "global_step_2" / "actor").mkdir(parents=True, exist_ok=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("2")
elif args[:2] == ["-m", "verl.model_merger"]:
    target = Path(args[args.index("--target_dir") + 1])
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.json").write_text(json.dumps({{"model_type": "qwen2", "from": args[args.index("--local_dir") + 1]}}))
    (target / "model.safetensors").write_bytes(b"weights" * 100)
    print("Saved model to", target, flush=True)
sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))
'''


class StandIn:
    """The stand-in interpreter's path and what its invocations recorded."""

    def __init__(self, path: Path, record: Path):
        self.path, self.record = path, record

    def __str__(self) -> str:
        return str(self.path)

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.record.read_text().splitlines()] if self.record.exists() else []


@pytest.fixture()
def stand_in(tmp_path, monkeypatch):
    path = tmp_path / "venv" / "bin" / "python"
    path.parent.mkdir(parents=True)
    path.write_text(STAND_IN.format(python=sys.executable))
    path.chmod(0o755)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    monkeypatch.delenv("VERL_USE_EXTERNAL_MODULES", raising=False)
    return StandIn(path, record)


@pytest.fixture()
def verl_ctx(tmp_path, make_ctx, stand_in):
    model = tmp_path / "my model"  # a space: the argv must carry it intact
    model.mkdir()
    (model / "config.json").write_text("{}")
    for split in ("train", "test"):
        (tmp_path / f"{split}.parquet").write_bytes(b"PAR1")

    def _make(tracker=None, name="ctx", **verl):
        spec = {
            "data": {"synthetic": {}},
            "model": {"path": str(model)},
            "train": {
                "backend": "verl", "train_batch_size": 8, "ppo_mini_batch_size": 8,
                "algorithm": {"adv_estimator": "egpo"},
                "verl": {"python": str(stand_in), **verl},
            },
        }
        inputs = {"convert.train": tmp_path / "train.parquet", "convert.test": tmp_path / "test.parquet"}
        return make_ctx("train", spec, inputs=inputs, tracker=tracker, name=name)

    return _make


def test_launch_passes_env_argv_streams_log_and_artifacts(verl_ctx, stand_in, tracker, capsys):
    import runners.verl as verl_runner

    ctx = verl_ctx(tracker=tracker)
    result = verl_runner.run(ctx.spec.train, ctx)

    (rec,) = stand_in.records()
    config_dir = ctx.work_dir / "verl"
    assert rec["argv"][1:] == ["-m", "verl.trainer.main_ppo", "--config-path", str(config_dir), "--config-name", "rlreg_verl"]
    assert rec["cwd"] == str(ctx.work_dir)
    env = rec["env"]
    assert env["MLFLOW_RUN_ID"] == tracker.run_id
    assert env["MLFLOW_TRACKING_URI"] == tracker.client.tracking_uri
    assert env["VERL_USE_EXTERNAL_MODULES"] == "runners.verl.egpo_plugin"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(Path(verl_runner.__file__).resolve().parents[2])
    # the same variables reach Ray workers of an existing cluster
    import yaml

    body = yaml.safe_load((config_dir / "rlreg_verl.yaml").read_text())
    assert body["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]["MLFLOW_RUN_ID"] == tracker.run_id
    assert body["actor_rollout_ref"]["model"]["path"].endswith("my model")
    assert (result.outputs["verl_config"] / "rlreg_verl.yaml").read_text() == (config_dir / "rlreg_verl.yaml").read_text()

    # streamed to the console and to the log artifact
    out = capsys.readouterr().out
    assert "step:2 - actor/entropy:0.8 - critic/score/mean:0.5" in out and "some stderr noise" in out
    log = (ctx.out_dir / "logs" / "train.log").read_text()
    assert "step:1 - actor/entropy:0.9" in log and "some stderr noise" in log

    # nothing in the store (verl logged nothing): the console's last values
    assert result.metrics == {"train/reward_mean_first": 0.25, "train/reward_mean_last": 0.5,
                              "actor/entropy_last": 0.8, "train/steps": 2.0, "val/reward_mean_last": 0.375}
    pointer = json.loads(result.outputs["checkpoints"].read_text())
    assert pointer["latest_step"] == 2 and pointer["dir"] == str((ctx.work_dir / "checkpoints").resolve())

    client = tracker.client
    tracker.flush()
    run = client.get_run(tracker.run_id)
    assert run.data.tags["rlreg.backend"] == "verl"
    from runners.reward import reward_source_hash

    assert run.data.tags["rlreg.reward_sha256"] == reward_source_hash()
    arts = {a.path for a in client.list_artifacts(tracker.run_id, "verl")}
    assert {"verl/rlreg_verl.yaml", "verl/composed_config.yaml", "verl/command.txt", "verl/train.log"} <= arts


@pytest.mark.slow
def test_metrics_verl_logs_to_the_child_run_become_the_headline(verl_ctx, tracker, monkeypatch):
    """The stand-in attaches to MLFLOW_RUN_ID like verl's mlflow logger (slow: imports mlflow)."""
    import runners.verl as verl_runner

    monkeypatch.setenv("STANDIN_MLFLOW", "1")
    ctx = verl_ctx(tracker=tracker)
    result = verl_runner.run(ctx.spec.train, ctx)
    # values from the MLflow run verl logged to (0.125 / 0.75), not the console's 0.25 / 0.5
    assert result.metrics == {"train/reward_mean_first": 0.125, "train/reward_mean_last": 0.75,
                              "actor/entropy_last": 0.6, "train/steps": 2.0, "val/reward_mean_last": 0.375}
    history = tracker.client.get_metric_history(tracker.run_id, "critic/score/mean")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.125), (2, 0.75)]


def test_console_metrics_are_used_without_a_store(verl_ctx, null_tracker):
    import runners.verl as verl_runner

    ctx = verl_ctx(tracker=null_tracker)
    result = verl_runner.run(ctx.spec.train, ctx)
    assert result.metrics["train/reward_mean_last"] == 0.5 and result.metrics["actor/entropy_last"] == 0.8
    assert "verl/train.log" in null_tracker.artifacts


def test_nonzero_exit_fails_the_stage_with_the_log_tail(verl_ctx, monkeypatch, null_tracker):
    import runners.verl as verl_runner
    from runners.verl.launch import VerlExitError

    monkeypatch.setenv("STANDIN_EXIT", "3")
    ctx = verl_ctx(tracker=null_tracker)
    with pytest.raises(VerlExitError) as info:
        verl_runner.run(ctx.spec.train, ctx)
    assert info.value.returncode == 3
    assert "verl exited with code 3" in str(info.value) and "critic/score/mean:0.5" in str(info.value)
    assert "verl/train.log" in null_tracker.artifacts  # logged even on failure


def test_rerun_resumes_from_the_newest_checkpoint(verl_ctx, null_tracker):
    import runners.verl as verl_runner

    first = verl_runner.run(verl_ctx().spec.train, ctx := verl_ctx(tracker=null_tracker))
    assert "resumed_from_step" not in first.info
    import shutil

    shutil.rmtree(ctx.out_dir)
    ctx.out_dir.mkdir()
    second = verl_runner.run(ctx.spec.train, ctx)
    assert second.info["resumed_from_step"] == 2


def test_a_config_verl_rejects_never_launches(verl_ctx, stand_in, monkeypatch):
    import runners.verl as verl_runner

    monkeypatch.setenv("STANDIN_CHECK", "fail")
    ctx = verl_ctx()
    with pytest.raises(SpecError) as info:
        verl_runner.run(ctx.spec.train, ctx)
    assert "rejects the config (validate)" in str(info.value)
    assert "train.verl.nnodes x train.verl.n_gpus_per_node" in str(info.value)
    assert stand_in.records() == []


def test_missing_verl_is_a_missing_extra(verl_ctx, tmp_path):
    import runners.verl as verl_runner

    ctx = verl_ctx(python=str(tmp_path / "no-venv" / "bin" / "python"))
    with pytest.raises(MissingExtra) as info:
        verl_runner.run(ctx.spec.train, ctx)
    assert "scripts/setup-verl-venv.sh" in str(info.value)


def test_model_path_must_be_a_hf_directory(verl_ctx, tmp_path):
    import runners.verl as verl_runner

    ctx = verl_ctx()
    ctx.spec.model.path = str(tmp_path / "missing-model")
    with pytest.raises(UsageError, match="not a Hugging Face model directory"):
        verl_runner.run(ctx.spec.train, ctx)


def test_log_lines_stream_while_verl_runs(stand_in, tmp_path, monkeypatch):
    """The stand-in waits until the runner has shown its first line: buffering until exit would hang."""
    from runners.verl.launch import launch

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "rlreg_verl.yaml").write_text(f"trainer: {{default_local_dir: {tmp_path / 'ck'}}}\n")
    go = tmp_path / "go"
    monkeypatch.setenv("STANDIN_HANDSHAKE", str(go))

    class Console(io.StringIO):
        def write(self, s):
            if "waiting for the runner" in s:
                go.touch()
            return super().write(s)

    console = Console()
    argv = [str(stand_in), "-m", "verl.trainer.main_ppo", "--config-path", str(cfg), "--config-name", "rlreg_verl"]
    result = launch(argv, {}, cwd=tmp_path, log_path=tmp_path / "log.txt", console=console, timeout_s=60)
    assert result.returncode == 0 and result.seconds < 20
    assert result.step_metrics == {
        1: {"actor/entropy": 0.9, "critic/score/mean": 0.25, "perf/time": 1.5},
        2: {"actor/entropy": 0.8, "critic/score/mean": 0.5, "val-core/hardgen/reward/mean@1": 0.375, "training/global_step": 2.0},
    }


def test_timeout_stops_verl(stand_in, tmp_path, monkeypatch):
    from runners.verl.launch import launch

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "rlreg_verl.yaml").write_text(f"trainer: {{default_local_dir: {tmp_path / 'ck'}}}\n")
    monkeypatch.setenv("STANDIN_SLEEP", "60")
    argv = [str(stand_in), "-m", "verl.trainer.main_ppo", "--config-path", str(cfg), "--config-name", "rlreg_verl"]
    result = launch(argv, {}, cwd=tmp_path, log_path=tmp_path / "log.txt", console=io.StringIO(), timeout_s=1)
    assert result.returncode != 0 and result.seconds < 30
    assert "stopped after 1 s" in result.tail[-1]


# -- merge ------------------------------------------------------------------------------------


@pytest.fixture()
def merge_ctx(tmp_path, make_ctx, stand_in):
    ckpt = tmp_path / "ckpt"
    for step in (1, 3):
        (ckpt / f"global_step_{step}" / "actor").mkdir(parents=True)
    (ckpt / "latest_checkpointed_iteration.txt").write_text("3\n")
    pointer = tmp_path / "checkpoints.json"
    pointer.write_text(json.dumps({"dir": str(ckpt)}))

    def _make(tracker=None, **merge):
        spec = {
            "data": {"synthetic": {}}, "model": {"path": str(tmp_path), "trust_remote_code": True},
            "train": {"backend": "verl", "verl": {"python": str(stand_in)}}, "merge": merge,
        }
        return make_ctx("merge", spec, inputs={"train.checkpoints": pointer}, tracker=tracker)

    return _make


def test_merge_newest_step_manifest_and_mlflow(merge_ctx, stand_in, tracker):
    from runners.verl import merge

    ctx = merge_ctx(tracker=tracker)
    result = merge.run(ctx.spec.merge, ctx)
    (rec,) = stand_in.records()
    assert rec["argv"][1:9] == ["-m", "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir",
                                str(ctx.input("train.checkpoints").parent / "ckpt" / "global_step_3" / "actor"), "--target_dir"]
    assert rec["argv"][-1] == "--trust-remote-code"
    model = result.outputs["model"]
    manifest = json.loads(result.outputs["manifest"].read_text())
    by_path = {f["path"]: f for f in manifest["files"]}
    assert by_path["model.safetensors"]["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert by_path["config.json"]["bytes"] == (model / "config.json").stat().st_size
    assert manifest["source"]["step"] == 3 and result.metrics["merge/step"] == 3.0
    # small model + log_mode auto -> files copied to MLflow next to the manifest
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "model")}
    assert {"model/model_manifest.json", "model/files"} <= arts
    assert result.info["log_mode"] == "copy"
    # and an MLflow pyfunc model, registered as <experiment>-policy @candidate (runners/common/mlflow_model.py)
    assert tracker.client.get_run(tracker.run_id).data.tags["rlreg.logged_model"].startswith("m-")
    assert tracker.client.get_model_version_by_alias("test-policy", "candidate").run_id == tracker.run_id


def test_merge_reference_mode_uploads_only_the_manifest(merge_ctx, tracker):
    from runners.verl import merge

    ctx = merge_ctx(tracker=tracker, log_mode="reference", step=1)
    result = merge.run(ctx.spec.merge, ctx)
    assert json.loads(result.outputs["manifest"].read_text())["source"]["step"] == 1
    arts = {a.path for a in tracker.client.list_artifacts(tracker.run_id, "model")}
    assert arts == {"model/model_manifest.json"}
    assert tracker.client.get_run(tracker.run_id).data.tags["rlreg.model.log_mode"] == "reference"


def test_merge_of_a_step_that_was_not_saved_names_the_saved_ones(merge_ctx):
    from runners.verl import merge

    ctx = merge_ctx(step=2)
    with pytest.raises(InputDataError, match=r"saved steps: 1, 3; set merge.step"):
        merge.run(ctx.spec.merge, ctx)


def test_merge_failure_propagates(merge_ctx, monkeypatch):
    from runners.verl import merge
    from runners.verl.launch import VerlExitError

    monkeypatch.setenv("STANDIN_EXIT", "1")
    ctx = merge_ctx()
    with pytest.raises(VerlExitError, match="code 1"):
        merge.run(ctx.spec.merge, ctx)
