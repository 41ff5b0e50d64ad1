"""Overrides in a tracked run: the parent's tag, params, spec.yaml and the stage cache keys."""

from __future__ import annotations

import json
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


def test_cli_run_overrides_reach_tag_and_params(env):
    from click.testing import CliRunner

    from registry.cli import main

    r = CliRunner().invoke(main, ["run", "a", "data.test_size=0.25", "--overrides", "tags.note='x y'", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    parent = env["client"].get_run(summary["parent_run_id"])
    assert parent.data.tags["rlreg.overrides"] == "'tags.note=x y' data.test_size=0.25"
    assert parent.data.params["data.test_size"] == "0.25" and parent.data.tags["spec.tag.note"] == "x y"
    assert "Overrides: 'tags.note=x y' data.test_size=0.25" in r.stderr
    assert "set data.test_size: 0.2 -> 0.25" in r.stderr


def test_override_makes_a_cache_miss_then_a_hit(env):
    first = Pipeline(load_spec("a"), echo=lambda m: None).run().stages[0]
    other = Pipeline(load_spec("a", overrides=["data.test_size=0.25"]), echo=lambda m: None).run().stages[0]
    again = Pipeline(load_spec("a", overrides=["data.test_size=0.25"]), echo=lambda m: None).run().stages[0]
    assert first.cache_hit is None and other.cache_hit is None and other.key != first.key
    assert again.cache_hit == other.run_id and again.key == other.key
    # the seed does not reach convert: a seed override reuses the first run
    seeded = Pipeline(load_spec("a", overrides=["seed=9"]), echo=lambda m: None).run().stages[0]
    assert seeded.cache_hit == first.run_id


@pytest.mark.slow
def test_mlflow_run_with_overrides_parameter(env, mlflow_uri):
    """`mlflow run . -P spec=a -P overrides="…"`: MLflow shell-quotes the one string, rlreg splits it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc_env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri,
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc_env.pop("MLFLOW_RUN_ID", None)
    typed = "data.test_size=0.25 'tags.note=a b; echo pwned' seed=1"
    r = subprocess.run(["mlflow", "run", str(root), "-P", "spec=a", "-P", f"overrides={typed}",
                        "--env-manager", "local", "--experiment-name", "mlproject-overrides"],
                       env=proc_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    client = env["client"]
    exp = client.get_experiment_by_name("mlproject-overrides")
    (parent,) = [run for run in client.search_runs([exp.experiment_id]) if run.data.tags.get("rlreg.role") == "parent"]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["rlreg.overrides"] == shlex.join(shlex.split(typed))
    assert parent.data.params["data.test_size"] == "0.25" and parent.data.params["seed"] == "1"
    assert parent.data.tags["spec.tag.note"] == "a b; echo pwned"  # a value, never run by a shell
    assert "pwned" not in (r.stdout + r.stderr).splitlines()  # echo never ran
    # the default (empty) parameter runs the spec as written
    r = subprocess.run(["mlflow", "run", str(root), "-P", "spec=a", "--env-manager", "local",
                        "--experiment-name", "mlproject-overrides"],
                       env=proc_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`rlreg.role` = 'parent'",
                              order_by=["attributes.start_time DESC"])
    assert "rlreg.overrides" not in runs[0].data.tags and runs[0].data.params["data.test_size"] == "0.2"


def test_diff_applies_overrides_to_a_run_recorded_spec(env):
    from click.testing import CliRunner

    from registry.cli import main

    run_id = Pipeline(load_spec("a"), echo=lambda m: None).run().parent_run_id
    r = CliRunner().invoke(main, ["diff", run_id, run_id, "data.test_size=0.3", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == [{"key": "data.test_size", "kind": "changed", "a": 0.2, "b": 0.3}]
    r = CliRunner().invoke(main, ["diff", run_id, run_id, "data.test_sise=0.3"])
    assert r.exit_code == 2
    assert "Error: override 'data.test_sise=0.3': data.test_sise: unknown field (did you mean test_size?)" in r.output
