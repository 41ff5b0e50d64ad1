"""verl runs write entropy_history.json (the builtin trainer's schema) from their actor/entropy MLflow
history after verl ends, with verl's console lines as the fallback."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from test_verl_pipeline import _run, env  # noqa: F401 - the pipeline fixture with the stand-in verl

from runners.verl.history import entropy_history, write_history


def test_history_from_a_fabricated_mlflow_history_latest_value_per_step(mlflow_uri):
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(mlflow_uri)
    run_id = client.create_run(client.create_experiment("h")).info.run_id
    client.log_batch(run_id, metrics=[
        Metric("actor/entropy", 0.9, 1000, 1), Metric("actor/entropy", 0.7, 1000, 3),
        Metric("actor/entropy", 0.8, 1000, 2),
        Metric("actor/entropy", 0.65, 2000, 3),  # step 3 again after a resume: the later value wins
        Metric("actor/entropy", float("nan"), 1000, 4), Metric("critic/score/mean", 0.5, 1000, 1)])
    console = {1: {"actor/entropy": 0.1}}
    history, source = entropy_history(client, run_id, console)
    assert source == "mlflow"
    assert history == [{"step": 1, "entropy": 0.9}, {"step": 2, "entropy": 0.8}, {"step": 3, "entropy": 0.65}]


def test_console_fallback_and_nothing_logged():
    class Down:
        def get_metric_history(self, *a):
            raise ConnectionError("store unreachable")

    console = {2: {"actor/entropy": 0.5}, 1: {"actor/entropy": 0.75, "x": 1.0}, 3: {"x": 2.0}}
    assert entropy_history(Down(), "r", console) == ([{"step": 1, "entropy": 0.75}, {"step": 2, "entropy": 0.5}],
                                                    "console")
    assert entropy_history(None, None, {1: {"x": 1.0}}) == ([], "none")


def test_write_history_skips_the_file_when_verl_logged_no_entropy(make_ctx, null_tracker):
    ctx = make_ctx("train", {})
    assert write_history(ctx, {}) is None and not (ctx.out_dir / "entropy_history.json").exists()
    assert null_tracker.tags["rlreg.entropy_history.source"] == "none"
    path = write_history(ctx, {1: {"actor/entropy": 0.5}})
    assert json.loads(path.read_text()) == [{"step": 1, "entropy": 0.5}]


@pytest.mark.slow
def test_a_verl_train_stage_logs_entropy_history_json(env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STANDIN_MLFLOW", "1")  # the stand-in logs actor/entropy 0.6 at step 2 into its run
    r, out = _run("v")
    assert r.exit_code == 0, r.output
    train = next(s for s in out["stages"] if s["stage"] == "train")
    client = env["client"]
    assert "entropy_history.json" in {a.path for a in client.list_artifacts(train["run_id"])}
    local = client.download_artifacts(train["run_id"], "entropy_history.json")
    assert json.loads(Path(local).read_text()) == [{"step": 2, "entropy": 0.6}]
    assert client.get_run(train["run_id"]).data.tags["rlreg.entropy_history.source"] == "mlflow"
    # plot-entropy reads it back by spec name (a step history: the policy-entropy figure)
    from click.testing import CliRunner

    from analysis.entropy_cli import plot_entropy

    cli = CliRunner().invoke(plot_entropy, ["--run", "v", "-o", str(Path(local).parent / "e.png")])
    assert cli.exit_code == 0 and "v: 1 steps" in cli.output, cli.output
