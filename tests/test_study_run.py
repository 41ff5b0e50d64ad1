"""A real study: 2 arms × 3 seeds of a very small tiny-model spec, run with --jobs 2 and through a
Ray cluster on 127.0.0.1 (head + a second node). Convert and SFT are computed once and reused by
the other five cells; every cell is tagged; a rerun after failed/killed cells runs only those;
the same seeds give the same numbers on both executors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

TINY = """\
experiment: study-test
data: {synthetic: {num_records: 24, seed: 0}, test_size: 0.25}
model:
  tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, vocab_size: 400}
  device: cpu
  cpu_threads: 1
sft: {max_steps: 2, batch_size: 4, warmup_steps: 1, eval_every: 2, format_samples: 0, save_every: 1000}
train:
  backend: builtin
  algorithm: {adv_estimator: grpo}
  rollout: {n: 2, max_response_length: 16, max_prompt_length: 256}
  train_batch_size: 2
  ppo_mini_batch_size: 2
  total_training_steps: 1
  save_freq: -1
  test_freq: -1
eval: {backend: builtin, repeats: 1, max_samples: 3, max_new_tokens: 16, do_sample: true}
"""
STUDY = """\
kind: study
name: tiny
arms:
  grpo: {spec: tiny-grpo}
  egpo: {spec: tiny-egpo}
seeds: [1, 2, 3]
primary_metric: eval/accuracy
"""
CELLS = [f"{arm}/seed={s}" for arm in ("grpo", "egpo") for s in (1, 2, 3)]
SEEDED = ("actor/entropy_last", "eval/response_length_mean", "sft/final_loss")


def _setup(tmp: Path) -> dict[str, str]:
    specs = tmp / "specs"
    specs.mkdir(parents=True)
    (specs / "tiny-grpo.yaml").write_text(TINY)
    (specs / "tiny-egpo.yaml").write_text("extends: tiny-grpo\ntrain: {algorithm: {adv_estimator: egpo, egpo_lambda: 0.4}}\n")
    (specs / "study-tiny.yaml").write_text(STUDY)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "RLREG_HOME": str(tmp / "home"),
           "RLREG_SPECS_DIR": str(specs), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MLFLOW_RUN_ID", None)
    return env


def rlreg(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _json(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])


def _parents(client) -> dict[str, object]:
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "tags.`rlreg.role` = 'parent' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"])
    out = {}
    for r in runs:  # newest per cell
        out.setdefault(r.data.tags["rlreg.cell"], r)
    return out


def _assert_shared_once(client) -> None:
    exps = [e.experiment_id for e in client.search_experiments()]
    for stage in ("convert", "sft"):
        runs = client.search_runs(exps, f"tags.`rlreg.stage` = '{stage}'")
        computed = [r for r in runs if "rlreg.cache_hit" not in r.data.tags]
        hits = [r for r in runs if "rlreg.cache_hit" in r.data.tags]
        assert len(computed) == 1 and len(hits) == 5, (stage, len(computed), len(hits))
        assert {r.data.tags["rlreg.cache_hit"] for r in hits} == {computed[0].info.run_id}
    trains = client.search_runs(exps, "tags.`rlreg.stage` = 'train'")
    assert len([r for r in trains if "rlreg.cache_hit" not in r.data.tags]) == 6  # per arm and seed


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    env = _setup(tmp_path_factory.mktemp("study-local"))
    out = _json(rlreg(env, "study", "run", "tiny", "--jobs", "2", "--json"))
    return {"env": env, "out": out, "client": mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])}


def test_jobs2_runs_every_cell_tagged_and_shares_convert_and_sft(local_study):
    out, client = local_study["out"], local_study["client"]
    assert sorted(out["ran"]) == sorted(CELLS) and out["skipped"] == []
    parents = _parents(client)
    assert sorted(parents) == sorted(CELLS)
    for cell, run in parents.items():
        tags = run.data.tags
        arm, seed = cell.split("/seed=")
        assert (tags["rlreg.study"], tags["rlreg.arm"], tags["rlreg.seed"], tags["rlreg.grid"]) == ("tiny", arm, seed, "{}")
        assert tags["rlreg.spec"] == f"tiny-{arm}" and tags["rlreg.overrides"] == f"seed={seed}"
        assert run.data.params["seed"] == seed and run.data.params["train.seed"] == seed
        assert tags["rlreg.study_run"] == out["study_run_id"] and "mlflow.parentRunId" not in tags
    _assert_shared_once(client)
    # the study's own run: the study file and the cell list, not a parent of the cells
    study_run = client.get_run(out["study_run_id"])
    assert study_run.data.tags["rlreg.role"] == "study" and study_run.info.status == "FINISHED"
    with open(client.download_artifacts(out["study_run_id"], "cells.json", str(Path(local_study["env"]["RLREG_HOME"])))) as f:
        cells = json.load(f)
    assert [c["cell"] for c in cells] == CELLS and all(c["status"] == "FINISHED" for c in cells)


def test_status_runs_and_dry_run_after_the_study(local_study, monkeypatch):
    from click.testing import CliRunner

    from registry.cli import main

    for key in ("MLFLOW_TRACKING_URI", "RLREG_HOME", "RLREG_SPECS_DIR"):
        monkeypatch.setenv(key, local_study["env"][key])
    cli = lambda *args: CliRunner().invoke(main, list(args))  # in-process: these only read the store
    status = json.loads(cli("study", "status", "tiny", "--json").output)
    assert [c["cell"] for c in status["cells"]] == CELLS
    assert all(c["status"] == "FINISHED" and c["value"] is not None for c in status["cells"])
    text = cli("study", "status", "tiny").output
    assert "6/6 cells FINISHED" in text and "grpo/seed=1  grpo  -     1" in text
    runs = json.loads(cli("runs", "--study", "tiny", "--json").output)
    assert sorted(r["cell"] for r in runs) == sorted(CELLS) and {r["status"] for r in runs} == {"FINISHED"}
    listing = cli("runs", "--study", "tiny").output
    assert "tiny:egpo/seed=3" in listing and "eval/accuracy" in listing.splitlines()[0]
    assert cli("study", "run", "tiny", "--dry-run").output.count("→ skipped") == 6


def test_ray_executor_same_cells_same_numbers(local_study, tmp_path):
    pytest.importorskip("ray", reason='the ray executor needs `pip install -e ".[ray]"` (scripts/test-deps.sh)')
    from tests._ray_cluster import ray_cluster

    env = _setup(tmp_path)
    with ray_cluster(env) as address:
        out = _json(rlreg(env, "study", "run", "tiny", "--executor", "ray", "--address", address, "--json"))
    assert sorted(out["ran"]) == sorted(CELLS)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    _assert_shared_once(client)
    ray_runs, local_runs = _parents(client), _parents(local_study["client"])
    assert sorted(ray_runs) == sorted(local_runs) == sorted(CELLS)
    for cell in CELLS:
        for key in SEEDED:
            assert ray_runs[cell].data.metrics[key] == local_runs[cell].data.metrics[key], (cell, key)
    seeds = {local_runs[f"grpo/seed={s}"].data.metrics["actor/entropy_last"] for s in (1, 2, 3)}
    assert len(seeds) > 1  # the seed reaches training: not one number copied six times


def test_rerun_after_failed_and_killed_cells_runs_only_those(local_study):
    env, client = local_study["env"], local_study["client"]
    parents = _parents(client)
    failed, killed = parents["grpo/seed=2"].info.run_id, parents["egpo/seed=1"].info.run_id
    client.set_terminated(failed, "FAILED")
    dead = subprocess.Popen(["true"])
    dead.wait()
    client.update_run(killed, status="RUNNING")  # as if its process was SIGKILLed mid-way
    client.set_tag(killed, "rlreg.pid", str(dead.pid))
    status = _json(rlreg(env, "study", "status", "tiny", "--json"))
    states = {c["cell"]: c["status"] for c in status["cells"]}
    assert states["grpo/seed=2"] == "FAILED" and states["egpo/seed=1"] == "KILLED"
    out = _json(rlreg(env, "study", "run", "tiny", "--jobs", "2", "--json"))
    assert sorted(out["ran"]) == ["egpo/seed=1", "grpo/seed=2"]
    assert len(out["skipped"]) == 4
    after = _parents(client)
    for cell in ("egpo/seed=1", "grpo/seed=2"):
        assert after[cell].info.run_id not in (failed, killed)
        exp = after[cell].info.experiment_id
        stages = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{after[cell].info.run_id}'")
        hits = {r.data.tags["rlreg.stage"] for r in stages if "rlreg.cache_hit" in r.data.tags}
        assert {"convert", "sft", "train"} <= hits  # nothing recomputed: train's output was cached too
    assert all(c["status"] == "FINISHED" for c in _json(rlreg(env, "study", "status", "tiny", "--json"))["cells"])


def test_sigterm_mid_study_marks_the_cell_killed_and_a_rerun_finishes_it(tmp_path):
    import signal
    import time

    env = _setup(tmp_path)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    specs = Path(env["RLREG_SPECS_DIR"])
    (specs / "study-tiny4.yaml").write_text(STUDY.replace("name: tiny", "name: tiny4").replace("[1, 2, 3]", "[4]")
                                            .replace("  egpo: {spec: tiny-egpo}\n", ""))
    driver = subprocess.Popen([sys.executable, "-m", "registry", "study", "run", "tiny4"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    exps = lambda: [e.experiment_id for e in client.search_experiments()]
    running = []
    for _ in range(1200):  # until a stage of the cell runs (its process is inside the pipeline)
        running = client.search_runs(exps(), "tags.`rlreg.role` = 'stage' and attributes.status = 'RUNNING'")
        if running or driver.poll() is not None:
            break
        time.sleep(0.5)
    assert running, "the cell never started: " + (driver.stdout.read() if driver.poll() is not None else "")
    parent_id = running[0].data.tags["mlflow.parentRunId"]
    driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=300)
    assert driver.returncode == 143, out
    killed = client.get_run(parent_id)
    assert killed.info.status == "KILLED" and killed.data.tags["rlreg.cell"] == "grpo/seed=4"
    study_run = client.search_runs(exps(), "tags.`rlreg.study` = 'tiny4' and tags.`rlreg.role` = 'study'")[0]
    assert study_run.info.status == "KILLED"
    again = _json(rlreg(env, "study", "run", "tiny4", "--json"))
    assert again["ran"] == ["grpo/seed=4"] and again["cells"][0]["status"] == "FINISHED"
