"""End to end: the demo pair through `mlflow run` (convert → sft → train → merge → eval) on a
real sqlite store, at a reduced size so CI stays fast (the full-size demo is scripts/demo.sh;
its timings are in docs/benchmarks.md). The fixture (tests/conftest.py) runs the shipped demo
specs with only their sizes lowered, so pipeline, cache and tracking behaviour is the shipped one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EGPO_KEYS = {"train.algorithm.adv_estimator", "train.algorithm.egpo_lambda", "train.algorithm.egpo_alpha"}


@pytest.fixture(scope="module")
def demo_pair(demo_pair_store):
    """The real demo pair (tests/conftest.py: shipped specs, sizes lowered) in one store."""
    return demo_pair_store


def parents(pair):
    return {r.data.tags["rlreg.spec"]: r for r in pair["runs"] if r.data.tags.get("rlreg.role") == "parent"}


def stage_runs(pair, spec):
    return {r.data.tags["rlreg.stage"]: r for r in pair["runs"]
            if r.data.tags.get("rlreg.role") == "stage" and r.data.tags["rlreg.spec"] == spec}


def test_every_run_finished_with_all_stages(demo_pair):
    assert {r.info.status for r in demo_pair["runs"]} == {"FINISHED"}
    for spec in ("demo-grpo", "demo-egpo"):
        assert set(stage_runs(demo_pair, spec)) == {"convert", "sft", "train", "merge", "eval"}
    assert set(stage_runs(demo_pair, "demo-sft")) == {"convert", "sft", "eval"}


def test_second_spec_reuses_convert_and_sft(demo_pair):
    grpo, egpo = stage_runs(demo_pair, "demo-grpo"), stage_runs(demo_pair, "demo-egpo")
    for stage in ("convert", "sft"):
        assert egpo[stage].data.tags["rlreg.cache_hit"] == grpo[stage].info.run_id
        assert egpo[stage].data.tags["rlreg.outputs"] == grpo[stage].data.tags["rlreg.outputs"]
    for stage in ("train", "merge", "eval"):
        assert "rlreg.cache_hit" not in egpo[stage].data.tags
    assert "cache hit" in demo_pair["logs"]["demo-egpo"]


def test_sft_baseline_evaluates_the_shared_sft_model_on_the_same_prompts(demo_pair):
    """demo-sft reuses demo-grpo's convert and sft (cache hits), and its eval scores that SFT model
    on the same records with the same seeds as the RL evals, so RL vs SFT is a paired comparison."""
    grpo, sft = stage_runs(demo_pair, "demo-grpo"), stage_runs(demo_pair, "demo-sft")
    for stage in ("convert", "sft"):
        assert sft[stage].data.tags["rlreg.cache_hit"] == grpo[stage].info.run_id
    sft_model = json.loads(grpo["sft"].data.tags["rlreg.outputs"])["model"]["path"]
    assert sft["eval"].data.params["model_path"] == sft_model
    assert grpo["eval"].data.params["model_path"] != sft_model  # the RL eval scores the merged policy
    for key in ("eval_set_digest", "num_records", "eval.seed", "eval.repeats", "eval.temperature"):
        assert sft["eval"].data.params[key] == grpo["eval"].data.params[key], key
    m = parents(demo_pair)["demo-sft"].data.metrics
    assert 0 <= m["eval/accuracy_mean"] <= 1 and m["eval/repeats"] == 2


def test_train_runs_differ_only_by_egpo_keys(demo_pair):
    grpo, egpo = stage_runs(demo_pair, "demo-grpo")["train"], stage_runs(demo_pair, "demo-egpo")["train"]
    a, b = grpo.data.params, egpo.data.params
    differing = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert differing == EGPO_KEYS, differing
    pa, pb = parents(demo_pair)["demo-grpo"].data.params, parents(demo_pair)["demo-egpo"].data.params
    assert {k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k)} <= EGPO_KEYS | {"name", "extends", "description", "spec"}


def test_entropy_curves_and_headline_metrics(demo_pair):
    client = demo_pair["client"]
    for spec in ("demo-grpo", "demo-egpo"):  # demo-sft has no train stage
        parent = parents(demo_pair)[spec]
        train = stage_runs(demo_pair, spec)["train"]
        hist = client.get_metric_history(train.info.run_id, "actor/entropy")
        assert len(hist) == 3 and all(m.value > 0 for m in hist)
        local = client.download_artifacts(train.info.run_id, "entropy_history.json")
        history = json.loads(Path(local).read_text())
        assert [h["step"] for h in history] == [m.step for m in sorted(hist, key=lambda m: m.step)]
        m = parent.data.metrics
        assert m["eval/repeats"] == 2
        # interval bounds on the eval child, the mean on the parent (registry/parent_view.py)
        e = stage_runs(demo_pair, spec)["eval"].data.metrics
        assert e["eval/accuracy_ci95_low"] <= m["eval/accuracy_mean"] <= e["eval/accuracy_ci95_high"]
        assert not any("_ci95_" in k for k in m)
        assert "train/reward_mean_last" in m and "actor/entropy_last" in m
        # the parent carries the train curves, step by step, so MLflow's compare page overlays them
        on_parent = client.get_metric_history(parent.info.run_id, "actor/entropy")
        assert sorted((h.step, h.value) for h in on_parent) == sorted((h.step, h.value) for h in hist)
        assert client.get_metric_history(parent.info.run_id, "critic/score/mean")


def test_merged_model_logged_and_loadable(demo_pair):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merge = stage_runs(demo_pair, "demo-egpo")["merge"]
    path = Path(json.loads(merge.data.tags["rlreg.outputs"])["model"]["path"])
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest and (path / "config.json").exists()
    AutoModelForCausalLM.from_pretrained(path)
    assert AutoTokenizer.from_pretrained(path).chat_template


def test_compare_on_the_real_pair(demo_pair):
    r = subprocess.run([sys.executable, "-m", "registry", "compare", "demo-grpo", "demo-egpo", "--format", "json"],
                       env=demo_pair["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "eval/accuracy" in r.stdout


def test_demo_registers_the_policy_quietly_with_datasets_everywhere(demo_pair):
    """Issue 17 on the demo itself: a registry version per merge, `candidate` on the newest, no
    transformers bars in the logs, and datasets on every run (the reused convert/sft included)."""
    client = demo_pair["client"]
    merges = {spec: stage_runs(demo_pair, spec)["merge"].info.run_id for spec in ("demo-grpo", "demo-egpo")}
    versions = {v.run_id for v in client.search_model_versions("name = 'rlreg-demo-policy'")}
    assert set(merges.values()) <= versions
    assert client.get_model_version_by_alias("rlreg-demo-policy", "candidate").run_id == merges["demo-egpo"]
    for log in demo_pair["logs"].values():
        assert "Loading weights" not in log and "Writing model shards" not in log
    for run in demo_pair["runs"]:
        if run.data.tags.get("rlreg.role") in ("parent", "stage"):
            assert run.inputs.dataset_inputs, (run.data.tags.get("rlreg.stage"), run.data.tags.get("rlreg.spec"))
