"""End to end: the demo pair through `mlflow run` (convert → sft → train → merge → eval) on a
real sqlite store, at a reduced size so CI stays fast (the full-size demo is scripts/demo.sh;
its timings are in docs/benchmarks.md). The reduced specs extend the shipped demo specs, so
the pipeline, cache and tracking behaviour tested here is the shipped one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Smaller than the shipped demo: same structure, minutes less CPU.
QUICK = """\
extends: demo-grpo
sft: {max_steps: 60, batch_size: 16}
train: {total_training_steps: 3, train_batch_size: 4, ppo_mini_batch_size: 4, save_freq: 2}
eval: {repeats: 2, max_samples: 6}
"""
EGPO_KEYS = {"train.algorithm.adv_estimator", "train.algorithm.egpo_lambda", "train.algorithm.egpo_alpha"}


@pytest.fixture(scope="module")
def demo_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    specs = tmp / "specs"
    specs.mkdir()
    for p in (ROOT / "specs").glob("demo-*.yaml"):
        shutil.copy(p, specs / p.name)
    (specs / "e2e-grpo.yaml").write_text(QUICK)
    (specs / "e2e-egpo.yaml").write_text(
        "extends: e2e-grpo\ntrain: {algorithm: {adv_estimator: egpo, egpo_lambda: 0.4, egpo_alpha: 2.0}}\n")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RLREG_SPECS_DIR": str(specs),
           "RLREG_HOME": str(tmp / "home"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_RUN_ID", None)
    logs = {}
    for name in ("e2e-grpo", "e2e-egpo"):
        r = subprocess.run(["mlflow", "run", str(ROOT), "-P", f"spec={name}", "--env-manager", "local",
                            "--experiment-name", "e2e"], env=env, capture_output=True, text=True, timeout=1500)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        logs[name] = r.stdout + r.stderr
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return {"client": client, "runs": runs, "logs": logs, "uri": uri, "env": env}


def parents(pair):
    return {r.data.tags["rlreg.spec"]: r for r in pair["runs"] if r.data.tags.get("rlreg.role") == "parent"}


def stage_runs(pair, spec):
    return {r.data.tags["rlreg.stage"]: r for r in pair["runs"]
            if r.data.tags.get("rlreg.role") == "stage" and r.data.tags["rlreg.spec"] == spec}


def test_every_run_finished_with_all_stages(demo_pair):
    assert {r.info.status for r in demo_pair["runs"]} == {"FINISHED"}
    for spec in ("e2e-grpo", "e2e-egpo"):
        assert set(stage_runs(demo_pair, spec)) == {"convert", "sft", "train", "merge", "eval"}


def test_second_spec_reuses_convert_and_sft(demo_pair):
    grpo, egpo = stage_runs(demo_pair, "e2e-grpo"), stage_runs(demo_pair, "e2e-egpo")
    for stage in ("convert", "sft"):
        assert egpo[stage].data.tags["rlreg.cache_hit"] == grpo[stage].info.run_id
        assert egpo[stage].data.tags["rlreg.outputs"] == grpo[stage].data.tags["rlreg.outputs"]
    for stage in ("train", "merge", "eval"):
        assert "rlreg.cache_hit" not in egpo[stage].data.tags
    assert "cache hit" in demo_pair["logs"]["e2e-egpo"]


def test_train_runs_differ_only_by_egpo_keys(demo_pair):
    grpo, egpo = stage_runs(demo_pair, "e2e-grpo")["train"], stage_runs(demo_pair, "e2e-egpo")["train"]
    a, b = grpo.data.params, egpo.data.params
    differing = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert differing == EGPO_KEYS, differing
    pa, pb = parents(demo_pair)["e2e-grpo"].data.params, parents(demo_pair)["e2e-egpo"].data.params
    assert {k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k)} <= EGPO_KEYS | {"name", "extends", "description", "spec"}


def test_entropy_curves_and_headline_metrics(demo_pair):
    client = demo_pair["client"]
    for spec, parent in parents(demo_pair).items():
        train = stage_runs(demo_pair, spec)["train"]
        hist = client.get_metric_history(train.info.run_id, "actor/entropy")
        assert len(hist) == 3 and all(m.value > 0 for m in hist)
        local = client.download_artifacts(train.info.run_id, "entropy_history.json")
        history = json.loads(Path(local).read_text())
        assert [h["step"] for h in history] == [m.step for m in sorted(hist, key=lambda m: m.step)]
        m = parent.data.metrics
        assert m["eval/repeats"] == 2
        assert m["eval/accuracy_ci95_low"] <= m["eval/accuracy_mean"] <= m["eval/accuracy_ci95_high"]
        assert "train/reward_mean_last" in m and "actor/entropy_last" in m


def test_merged_model_logged_and_loadable(demo_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merge = stage_runs(demo_pair, "e2e-egpo")["merge"]
    path = Path(json.loads(merge.data.tags["rlreg.outputs"])["model"]["path"])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest and (path / "config.json").exists()
    AutoModelForCausalLM.from_pretrained(path)
    assert AutoTokenizer.from_pretrained(path).chat_template


def test_compare_on_the_real_pair(demo_pair):
    r = subprocess.run([sys.executable, "-m", "registry", "compare", "e2e-grpo", "e2e-egpo", "--format", "json"],
                       env=demo_pair["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "eval/accuracy" in r.stdout
