"""Merge stage (builtin): HF dir + sha256 manifest, logged to a real MLflow store and registered."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import pytest

import runners.merge as merge
from registry.errors import InputDataError


def _artifacts(tracker, path: str) -> set[str]:
    return {a.path for a in tracker.client.list_artifacts(tracker.run_id, path)}


def _model_files(model_id: str, work) -> set[str]:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{model_id}", dst_path=str(work / "dl")))
    return {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}


def _state(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_copy_mode_writes_manifest_logs_and_registers(make_ctx, tracker, tiny_model_dir):
    spec = {"name": "demo-x", "merge": {"log_mode": "copy", "register_model": True}}
    ctx = make_ctx("merge", spec, inputs={"train.model": tiny_model_dir}, tracker=tracker)
    result = merge.run(ctx.spec.merge, ctx)
    out = result.outputs["model"]
    assert out.parent == ctx.out_dir
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in out.iterdir() if p.name != "manifest.json"}
    for rel, entry in manifest["files"].items():
        data = (out / rel).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    # Same weights as the trained policy, loadable by the usual classes.
    src, dst = _state(tiny_model_dir), _state(out)
    assert src.keys() == dst.keys() and all((src[k] == dst[k]).all() for k in src)
    assert result.metrics["merge/num_params"] == manifest["num_params"] > 0
    assert result.metrics["merge/size_mb"] == pytest.approx(manifest["total_bytes"] / 2**20)

    tracker.flush()
    run = tracker.client.get_run(tracker.run_id)
    assert run.data.metrics["merge/num_params"] == manifest["num_params"]
    assert run.data.tags["rlreg.model_log_mode"] == "copy"
    model_id = run.data.tags["rlreg.logged_model"]
    logged = _model_files(model_id, ctx.work_dir)
    assert {"MLmodel", "hf_pyfunc.py"} <= logged
    assert {f.rsplit("/", 1)[1] for f in logged if f.startswith("artifacts/")} >= {"model.safetensors", "manifest.json"}
    versions = tracker.client.search_model_versions("name='test-policy'")  # <experiment>-policy
    assert len(versions) == 1 and versions[0].run_id == tracker.run_id
    assert versions[0].source == f"models:/{model_id}"
    assert versions[0].tags["rlreg.manifest_sha256"] == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert tracker.client.get_model_version_by_alias("test-policy", "candidate").version == versions[0].version

    # A second merge registers version 2 of the same model (the registered model is reused).
    ctx2 = make_ctx("merge", spec, inputs={"train.model": tiny_model_dir}, tracker=tracker, name="again")
    assert merge.run(ctx2.spec.merge, ctx2).info["registered"] == "test-policy v2 @candidate"


def test_reference_mode_logs_only_manifest_and_path(make_ctx, tracker, tiny_model_dir):
    spec = {"merge": {"log_mode": "reference", "registered_name": "tiny-ref", "alias": None}}
    ctx = make_ctx("merge", spec, inputs={"train.model": tiny_model_dir}, tracker=tracker)
    result = merge.run(ctx.spec.merge, ctx)
    tracker.flush()
    model_id = tracker.client.get_run(tracker.run_id).data.tags["rlreg.logged_model"]
    logged = _model_files(model_id, ctx.work_dir)
    assert {f for f in logged if f.startswith("artifacts/")} == {"artifacts/manifest.json", "artifacts/reference.json"}
    assert json.loads((ctx.work_dir / "dl" / "artifacts" / "reference.json").read_text())["path"] == str(result.outputs["model"].resolve())
    version = tracker.client.get_model_version("tiny-ref", "1")
    assert version.tags["rlreg.model_path"] == str(result.outputs["model"].resolve())
    assert version.aliases == []  # alias: null
    # The reference loads (its files match the manifest) and refuses a changed file.
    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert len(model.predict(["hello"], params={"max_new_tokens": 2})) == 1
    with (result.outputs["model"] / "tokenizer.json").open("a") as f:
        f.write(" ")
    with pytest.raises(Exception, match="size"):
        mlflow.pyfunc.load_model(f"models:/{model_id}")


def test_default_registered_name_is_per_experiment():
    from runners.common.mlflow_model import registered_name_for

    assert registered_name_for("rlreg-demo") == "rlreg-demo-policy"
    assert registered_name_for("team/exp one") == "team-exp-one-policy"


def test_auto_mode_copies_small_models(make_ctx, null_tracker, tiny_model_dir):
    ctx = make_ctx("merge", {"merge": {}}, inputs={"train.model": tiny_model_dir})
    result = merge.run(ctx.spec.merge, ctx)
    assert result.info["log_mode"] == "copy" and (null_tracker.artifacts["model"] / "MLmodel").is_file()
    assert list((null_tracker.artifacts["model"] / "artifacts").rglob("model.safetensors"))


def test_auto_mode_references_large_models(make_ctx, null_tracker, tiny_model_dir, monkeypatch):
    monkeypatch.setattr(merge, "AUTO_COPY_LIMIT_BYTES", 1000)
    ctx = make_ctx("merge", {"merge": {}}, inputs={"train.model": tiny_model_dir})
    assert merge.run(ctx.spec.merge, ctx).info["log_mode"] == "reference"
    pyfunc_dir = null_tracker.artifacts["model"]
    assert {p.name for p in (pyfunc_dir / "artifacts").iterdir()} == {"manifest.json", "reference.json"}


def test_step_picks_checkpoint_and_names_missing_steps(make_ctx, tmp_path, tiny_model_dir):
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(tiny_model_dir, ckpts / "global_step_2" / "model")
    (ckpts / "latest_checkpointed_iteration.txt").write_text("2")
    ctx = make_ctx("merge", {"merge": {"step": 2}}, inputs={"train.checkpoints": ckpts})
    result = merge.run(ctx.spec.merge, ctx)
    assert json.loads((result.outputs["model"] / "manifest.json").read_text())["source"].endswith("global_step_2/model")
    ctx = make_ctx("merge", {"merge": {"step": 5}}, inputs={"train.checkpoints": ckpts}, name="missing")
    with pytest.raises(InputDataError, match=r"merge.step=5 \(available steps: \[2\]"):
        merge.run(ctx.spec.merge, ctx)


def test_not_a_model_dir_is_a_clear_error(make_ctx, tmp_path):
    (tmp_path / "empty").mkdir()
    ctx = make_ctx("merge", {"merge": {}}, inputs={"train.model": tmp_path / "empty"})
    with pytest.raises(InputDataError, match="no config.json"):
        merge.run(ctx.spec.merge, ctx)
