"""specs/demo-multiturn.yaml end to end at a reduced size (`rlreg run` with overrides: fewer
records, SFT steps, training steps and samples): convert writes the multi-turn task, SFT learns it,
the builtin trainer runs tool-executing rollouts and records the per-round entropy each step. The
full-size run and what its curves show are in docs/entropy.md."""

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

REDUCED = ["data.synthetic.num_records=160", "data.max_samples=160", "sft.max_steps=60", "sft.format_samples=2",
           "train.total_training_steps=2", "train.rollout.n=2", "train.train_batch_size=4",
           "train.ppo_mini_batch_size=4", "train.rollout.max_response_length=80"]


def test_demo_multiturn_runs_end_to_end(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RLREG_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    r = subprocess.run([sys.executable, "-m", "registry", "run", "demo-multiturn", *REDUCED, "--json"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = json.loads(r.stdout[r.stdout.index("{"):])
    stages = {s["stage"]: s for s in out["stages"]}
    assert list(stages) == ["convert", "sft", "train"]

    # the records are the multi-turn task: the recorded lookup sits in the convert prompt
    import pyarrow.parquet as pq

    row = pq.read_table(stages["convert"]["outputs"]["train"]).to_pylist()[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "tool"]
    assert '"find_account"' in row["prompt"][2]["content"] and '"list_orders"' in row["reward_model"]["ground_truth"]

    # per training step: entropy_step_N.json in the seed's schema and the per-round metrics
    steps = Path(stages["train"]["outputs"]["entropy_steps"])
    assert sorted(p.name for p in steps.iterdir()) == ["entropy_step_1.json", "entropy_step_2.json"]
    records = json.loads((steps / "entropy_step_1.json").read_text())
    assert records and {"sample_idx", "round", "entropy", "is_after_tool_call"} <= set(records[0])
    assert all(0 <= rec["entropy"] <= 1 and rec["is_after_tool_call"] == (rec["round"] > 0) for rec in records)
    client = mlflow.MlflowClient(uri)
    history = client.get_metric_history(stages["train"]["run_id"], "rollout/entropy_after_tool/round_0")
    assert sorted(m.step for m in history) == [1, 2]
    assert client.get_metric_history(stages["train"]["run_id"], "train/reward_mean")
