"""The tracked, cached stage pipeline against a real sqlite MLflow store (convert-only specs)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from registry.cli import main

CONVERT_ONLY = """\
description: convert only
experiment: pipeline-test
tags: {hf_token: hunter2, study: cache}
data:
  synthetic: {num_records: 60, seed: 3}
  max_samples: 60
  test_size: 0.2
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "a.yaml").write_text(CONVERT_ONLY)
    (specs / "b.yaml").write_text("extends: a\ndescription: same data, other name\n")
    monkeypatch.setenv("RLREG_SPECS_DIR", str(specs))
    monkeypatch.setenv("RLREG_HOME", str(tmp_path / "rlreg-home"))
    return {"specs": specs, "client": mlflow.MlflowClient(mlflow_uri), "tmp": tmp_path}


def rlreg(*args):
    r = CliRunner().invoke(main, list(args))
    return r


def run_json(*args) -> dict:
    r = rlreg("run", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout[r.stdout.index("{"):])


def test_parent_and_child_runs_are_fully_tracked(env):
    client = env["client"]
    out = run_json("a")
    parent = client.get_run(out["parent_run_id"])
    assert parent.info.status == "FINISHED"
    tags, params = parent.data.tags, parent.data.params
    assert tags["rlreg.spec"] == "a" and tags["rlreg.role"] == "parent"
    assert len(tags["rlreg.spec_hash"]) == 64
    assert "rlreg.git_commit" in tags and tags["rlreg.git_dirty"] in ("true", "false", "unknown")
    assert params["data.max_samples"] == "60" and params["data.synthetic.num_records"] == "60"
    assert params["tags.hf_token"] == "***" and params["tags.study"] == "cache"
    assert "hunter2" not in json.dumps(params)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "spec.yaml" in arts
    assert client.get_experiment(parent.info.experiment_id).name == "pipeline-test"

    (stage,) = out["stages"]
    child = client.get_run(stage["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["rlreg.stage"] == "convert" and child.info.status == "FINISHED"
    assert child.data.params["data.test_size"] == "0.2"
    contexts = {i.tags[0].value for i in child.inputs.dataset_inputs}
    assert {"train", "test"} <= contexts
    recorded = json.loads(child.data.tags["rlreg.outputs"])
    assert Path(recorded["train"]["path"]).is_file() and Path(recorded["test"]["path"]).is_file()
    # headline metrics of the stage land on the parent
    assert parent.data.metrics == {k: v for k, v in child.data.metrics.items() if k in parent.data.metrics}
    assert any(k.startswith("convert/") for k in parent.data.metrics)


def test_second_spec_reuses_convert(env):
    client = env["client"]
    first = run_json("a")["stages"][0]
    second = run_json("b")["stages"][0]
    assert second["cache_hit"] == first["run_id"]
    assert second["cache_key"] == first["cache_key"]
    assert second["outputs"] == first["outputs"]  # the same files, hence the same digests
    child = client.get_run(second["run_id"])
    assert child.data.tags["rlreg.cache_hit"] == first["run_id"]
    # --force recomputes, byte-identical (convert is deterministic)
    forced = run_json("b", "--force")["stages"][0]
    assert forced["cache_hit"] is None and forced["outputs"]["train"] != first["outputs"]["train"]
    assert Path(forced["outputs"]["train"]).read_bytes() == Path(first["outputs"]["train"]).read_bytes()


def test_changed_stage_spec_misses_cache(env):
    first = run_json("a")["stages"][0]
    (env["specs"] / "c.yaml").write_text("extends: a\ndata: {test_size: 0.5}\n")
    third = run_json("c")["stages"][0]
    assert third["cache_hit"] is None and third["cache_key"] != first["cache_key"]


def test_corrupted_cached_output_is_not_reused(env):
    first = run_json("a")["stages"][0]
    Path(first["outputs"]["train"]).write_bytes(b"PAR1 truncated")
    again = run_json("a")["stages"][0]
    assert again["cache_hit"] is None


def test_bad_input_marks_runs_failed_and_exits_2(env):
    client = env["client"]
    bad = env["tmp"] / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{broken\n')
    (env["specs"] / "bad.yaml").write_text(f"experiment: pipeline-test\ndata: {{source: {bad}, format: jsonl}}\n")
    r = rlreg("run", "bad")
    assert r.exit_code == 2, r.output
    assert "Error: stage 'convert'" in r.output and "bad.jsonl" in r.output and "Traceback" not in r.output
    runs = client.search_runs([client.get_experiment_by_name("pipeline-test").experiment_id])
    assert {run.info.status for run in runs} == {"FAILED"}
    child = next(run for run in runs if run.data.tags.get("rlreg.stage") == "convert")
    assert "error.txt" in {a.path for a in client.list_artifacts(child.info.run_id)}


def test_runner_crash_is_exit_1_with_error_artifact(env, monkeypatch):
    import runners.convert

    def boom(stage_spec, ctx):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runners.convert, "run", boom)
    r = rlreg("run", "a")
    assert r.exit_code == 1
    assert "Error: stage 'convert' failed" in r.output and "disk on fire" in r.output
    assert "Traceback" not in r.output


def test_stages_option_and_dry_run(env):
    r = rlreg("run", "a", "--dry-run")
    assert r.exit_code == 0 and "convert" in r.output
    assert env["client"].search_experiments(filter_string="name = 'pipeline-test'") == []
    r = rlreg("run", "a", "--stages", "train")
    assert r.exit_code == 2 and "not in this spec's pipeline" in r.output


def test_source_file_edited_in_place_misses_cache(env):
    src = env["tmp"] / "data.jsonl"
    rec = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "<think>t</think>\\n\\n<tool_call>\\n{\\"name\\": \\"f\\", \\"arguments\\": {}}\\n</tool_call>"}]}\n'
    src.write_text("".join(rec % i for i in range(20)))
    (env["specs"] / "f.yaml").write_text(f"experiment: pipeline-test\ndata: {{source: {src}, test_size: 0.2}}\n")
    first = run_json("f")["stages"][0]
    assert run_json("f")["stages"][0]["cache_hit"] == first["run_id"]
    src.write_text("".join(rec % i for i in range(30)))  # same path, new content
    third = run_json("f")["stages"][0]
    assert third["cache_hit"] is None and third["cache_key"] != first["cache_key"]


def test_spec_error_under_mlflow_run_marks_attached_run_failed(env, monkeypatch):
    client = env["client"]
    run = client.create_run(client.create_experiment("attached"))
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    (env["specs"] / "broken.yaml").write_text("data: {synthetic: {}, bogus: 1}\n")
    r = rlreg("run", "broken")
    assert r.exit_code == 2 and "data.bogus: unknown field" in r.output
    after = client.get_run(run.info.run_id)
    assert after.info.status == "FAILED" and "bogus" in after.data.tags["rlreg.error"]


def test_attaches_to_mlflow_run_as_parent(env, monkeypatch):
    client = env["client"]
    run = client.create_run(client.create_experiment("attached"))
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    out = run_json("a")
    assert out["parent_run_id"] == run.info.run_id
    child = client.get_run(out["stages"][0]["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert child.info.experiment_id == run.info.experiment_id
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_spec_reference_digest_enters_cache_key():
    from registry.cache import spec_refs, stage_key
    from registry.spec import Spec

    spec = Spec.model_validate({"name": "r", "eval": {"model": "@demo-grpo"}, "entropy": {"models": ["@a:sft.model", "x/y"]}})
    assert spec_refs(spec.entropy) == {"@a:sft.model"}
    k1, p1 = stage_key("eval", spec, {}, None, lambda ref: "digest-1")
    k2, _ = stage_key("eval", spec, {}, None, lambda ref: "digest-2")
    assert k1 != k2 and p1["inputs"] == {"ref:@demo-grpo": "digest-1"}


def test_bad_reference_is_a_usage_error(env):
    from registry.errors import UsageError
    from registry.pipeline import resolve_ref

    with pytest.raises(UsageError, match="use @<spec>"):
        resolve_ref("@../x", env["tmp"], env["client"])
    with pytest.raises(UsageError, match="run `rlreg run nothere` first"):
        resolve_ref("@nothere", env["tmp"], env["client"])


def test_attached_parent_is_named_after_the_spec(env, monkeypatch):
    client = env["client"]
    run = client.create_run(client.create_experiment("named"), run_name="bald-bat-16")
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    run_json("a")
    assert client.get_run(run.info.run_id).info.run_name == "a"
