"""What parent runs show in the MLflow UI: only the params the run used, no nulls, identity fields as
tags, means without interval bounds, the train curves copied onto the parent, the classic ML view."""

from __future__ import annotations

import json

import mlflow
import pytest
from click.testing import CliRunner

from analysis import synthetic
from registry import parent_view
from registry.cli import main


def test_parent_params_drop_unused_backends_nulls_and_identity():
    spec = synthetic.demo_spec("demo-egpo", True) | {"extends": "demo-grpo"}
    spec["train"]["verl"] = {"nnodes": 1, "ray_address": None}
    spec["eval"] |= {"backend": "builtin", "bfcl": {"port": 8000}, "bfcl_data": None}
    params = parent_view.parent_params(spec)
    assert not {"name", "description", "experiment", "extends"} & set(params)
    assert "verl" not in params["train"] and "bfcl" not in params["eval"] and "bfcl_data" not in params["eval"]
    assert params["train"]["algorithm"]["egpo_alpha"] == 2.0
    spec["eval"]["backend"] = "bfcl"  # the used backend's section stays
    assert parent_view.parent_params(spec)["eval"]["bfcl"] == {"port": 8000}
    assert parent_view.identity_tags(spec) == {"rlreg.experiment": "rlreg-demo", "rlreg.extends": "demo-grpo"}


def test_headline_keeps_means_not_bounds():
    m = {"eval/accuracy_mean": 0.6, "eval/accuracy_ci95_low": 0.5, "eval/accuracy_ci95_high": 0.7,
         "eval/accuracy_std": 0.02, "eval/repeats": 3.0, "actor/entropy_last": 1.2, "eval/x_ci97.5_low": 0.1}
    assert parent_view.headline(m) == {"eval/accuracy_mean": 0.6, "eval/repeats": 3.0, "actor/entropy_last": 1.2}


def test_curves_copied_from_the_computing_run(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    run = synthetic.write_spec_run(client, synthetic.demo_spec("demo-grpo", False), steps=7)
    exp = client.get_run(run.parent_id).info.experiment_id
    parent = client.create_run(exp).info.run_id
    reuse = client.create_run(exp, tags={"rlreg.cache_hit": run.child_ids["train"]}).info.run_id
    copied = parent_view.copy_curves(client, reuse, parent)
    assert copied == ["actor/entropy", "critic/score/mean"]  # the synthetic train logs no response_length
    hist = client.get_metric_history(parent, "actor/entropy")
    assert sorted((m.step, m.value) for m in hist) == list(enumerate(run.entropy))


def test_experiment_opens_in_classic_ml_view(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.create_experiment("kind")
    parent_view.mark_classic_ml(client, exp)
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"
    other = client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    parent_view.mark_classic_ml(client, other)  # a user's choice is kept
    assert client.get_experiment(other).tags["mlflow.experimentKind"] == "genai_development"


SPEC = """\
description: convert only
experiment: parent-view
data:
  synthetic: {num_records: 30, seed: 3}
  max_samples: 30
  test_size: 0.2
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "pv.yaml").write_text(SPEC)
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    return mlflow.MlflowClient(mlflow_uri)


def test_pipeline_parent_logs_only_what_the_run_used(env):
    r = CliRunner().invoke(main, ["run", "pv", "--json"])
    assert r.exit_code == 0, r.output
    parent_id = json.loads(r.stdout[r.stdout.index("{"):])["parent_run_id"]
    run = env.get_run(parent_id)
    params, tags = run.data.params, run.data.tags
    assert "null" not in params.values()
    assert not {"name", "description", "experiment"} & set(params)
    assert not any(k.startswith(("train.verl.", "eval.bfcl.")) for k in params)
    assert tags["rlreg.experiment"] == "parent-view" and tags["rlreg.spec"] == "pv"
    assert not any("_ci95_" in k or k.endswith("_std") for k in run.data.metrics)
    exp = env.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
