"""`rlreg run` of a `train.backend: verl` spec through the real pipeline (real convert, real MLflow
store, stage cache), with the stand-in interpreter of test_verl_launch as `train.verl.python`:
verl gets the train CHILD run, its headline metrics reach the parent, merge finds the checkpoint,
a rerun reuses the stages, and a verl failure is a FAILED stage with exit code 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from test_verl_launch import STAND_IN, StandIn

from registry.cli import main

SPEC = """\
experiment: verl-pipeline-test
data:
  synthetic: {{num_records: 40, seed: 1}}
  max_samples: 40
  test_size: 0.25
model:
  path: {model}
train:
  backend: verl
  train_batch_size: 8
  ppo_mini_batch_size: 8
  algorithm: {{adv_estimator: egpo}}
  verl:
    python: {python}
merge:
  log_mode: reference
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STAND_IN.format(python=sys.executable))
    python.chmod(0o755)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "v.yaml").write_text(SPEC.format(model=model, python=python))
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    return {"client": mlflow.MlflowClient(mlflow_uri), "stand_in": StandIn(python, record)}


def _run(*args):
    r = CliRunner().invoke(main, ["run", *args, "--json"])
    return r, (json.loads(r.stdout[r.stdout.index("{"):]) if "{" in r.stdout else None)


def test_verl_spec_runs_through_the_pipeline(env):
    client, stand_in = env["client"], env["stand_in"]
    r, out = _run("v")
    assert r.exit_code == 0, r.output
    stages = {s["stage"]: s for s in out["stages"]}
    assert list(stages) == ["convert", "train", "merge"]

    train_run = stages["train"]["run_id"]
    train_call, merge_call = stand_in.records()
    assert train_call["env"]["MLFLOW_RUN_ID"] == train_run  # the child run, not the parent
    assert train_call["env"]["MLFLOW_RUN_ID"] != out["parent_run_id"]
    assert train_call["argv"][1:3] == ["-m", "verl.trainer.main_ppo"]
    # the parquet files convert wrote are what verl is told to read
    import yaml

    # the config dir moved with the stage outputs into the store
    body = yaml.safe_load((Path(stages["train"]["outputs"]["verl_config"]) / "rlreg_verl.yaml").read_text())
    for key in ("train_files", "val_files"):
        assert Path(body["data"][key]).read_bytes()[:4] == b"PAR1"  # convert's real parquet output
    assert merge_call["argv"][1:3] == ["-m", "verl.model_merger"]
    assert merge_call["argv"][merge_call["argv"].index("--local_dir") + 1].endswith("global_step_2/actor")

    parent = client.get_run(out["parent_run_id"])
    assert parent.data.metrics["train/reward_mean_last"] == 0.5
    assert parent.data.metrics["actor/entropy_last"] == 0.8
    child = client.get_run(train_run)
    assert child.data.tags["rlreg.backend"] == "verl" and child.info.status == "FINISHED"
    merge_run = client.get_run(stages["merge"]["run_id"])
    assert "model/model_manifest.json" in {a.path for a in client.list_artifacts(merge_run.info.run_id, "model")}

    # a rerun reuses every stage: verl is not launched again
    r, again = _run("v")
    assert r.exit_code == 0, r.output
    assert all(s["cache_hit"] for s in again["stages"])
    assert len(stand_in.records()) == 2


def test_verl_failure_fails_the_stage_with_exit_1(env, monkeypatch):
    client = env["client"]
    monkeypatch.setenv("STANDIN_EXIT", "3")
    r = CliRunner().invoke(main, ["run", "v"])
    assert r.exit_code == 1, r.output
    assert "verl exited with code 3" in r.output and "Traceback" not in r.output
    runs = client.search_runs([client.get_experiment_by_name("verl-pipeline-test").experiment_id])
    train = next(run for run in runs if run.data.tags.get("rlreg.stage") == "train")
    assert train.info.status == "FAILED"
    assert "verl/train.log" in {a.path for a in client.list_artifacts(train.info.run_id, "verl")}
