"""Overrides in a tracked run: the parent's tag, params, spec.yaml and the stage cache keys."""

from __future__ import annotations

import shlex

import mlflow
import pytest
import yaml

from registry.loader import load_spec
from registry.pipeline import Pipeline

CONVERT_ONLY = """\
description: convert only
experiment: overrides-test
data:
  synthetic: {num_records: 40, seed: 3}
  max_samples: 40
  test_size: 0.2
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(CONVERT_ONLY)
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    monkeypatch.chdir(tmp_path)
    return {"specs": specs, "client": mlflow.MlflowClient(mlflow_uri), "tmp": tmp_path}


def test_pipeline_records_overrides_on_the_parent(env):
    client = env["client"]
    typed = ["data.test_size=0.25", "tags.note=lr probe", "seed=3"]
    summary = Pipeline(load_spec("a", overrides=typed), echo=lambda m: None).run()
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.tags["rlreg.overrides"] == shlex.join(typed)
    assert shlex.split(parent.data.tags["rlreg.overrides"]) == typed
    assert parent.data.params["data.test_size"] == "0.25"
    assert parent.data.params["seed"] == "3"
    assert parent.data.tags["spec.tag.note"] == "lr probe"
    local = client.download_artifacts(parent.info.run_id, "spec.yaml", str(env["tmp"]))
    logged = yaml.safe_load(open(local))
    assert logged["data"]["test_size"] == 0.25 and logged["tags"] == {"note": "lr probe"}
    child = client.get_run(summary.stages[0].run_id)
    assert child.data.params["data.test_size"] == "0.25"


def test_no_overrides_no_tag(env):
    summary = Pipeline(load_spec("a"), echo=lambda m: None).run()
    assert "rlreg.overrides" not in env["client"].get_run(summary.parent_run_id).data.tags
