"""Shared fixtures: real MLflow sqlite stores (a migrated template copied per test, because
creating a fresh store runs MLflow's schema migration, ~seconds), trackers and stage contexts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _store_template(tmp_path_factory) -> Path:
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}")
    client.search_experiments()  # creates + migrates the schema once
    return path


@pytest.fixture()
def mlflow_uri(tmp_path, _store_template, monkeypatch) -> str:
    """A fresh, migrated sqlite store; MLFLOW_TRACKING_URI points at it for the test."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_store_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def tracker(mlflow_uri):
    """A real Tracker on a fresh run in a fresh store (``tracker.client`` to read it back)."""
    import mlflow

    from registry.tracking import Tracker

    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    exp = client.create_experiment("test")
    run = client.create_run(exp)
    t = Tracker(client, run.info.run_id)
    yield t
    t.flush()


@pytest.fixture()
def null_tracker():
    from registry.tracking import NullTracker

    return NullTracker()


@pytest.fixture()
def make_ctx(tmp_path, null_tracker):
    """Factory for a StageContext around a spec (dict or Spec) with a NullTracker by default."""
    from registry.context import StageContext
    from registry.spec import Spec

    def _make(stage: str, spec, inputs=None, tracker=None, name: str = "ctx") -> StageContext:
        if isinstance(spec, dict):
            spec = Spec.model_validate({"name": "test", **spec})
        out = tmp_path / f"{name}-{stage}-out"
        work = tmp_path / f"{name}-{stage}-work"
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        return StageContext(
            stage=stage, spec=spec, out_dir=out, work_dir=work, inputs=dict(inputs or {}),
            tracker=tracker or null_tracker, project_root=ROOT,
        )

    return _make


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained tiny Qwen2 model dir (default TinyModelSpec) whose tokenizer was trained on
    64 synthetic tool-calling conversations. Read-only: copy it before writing into it."""
    from registry.spec.model import TinyModelSpec
    from runners.modeling import build_tiny_model, render_record_text
    from runners.synth_data import generate_records

    texts = [
        render_record_text({"messages": r["messages"][:-1], "ground_truth": r["messages"][-1]["content"],
                            "tools": r.get("tools")})
        for r in generate_records(64, seed=0)
    ]
    return build_tiny_model(TinyModelSpec(), texts, tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def sft_model_dir(tmp_path_factory) -> Path:
    """A tiny model briefly SFT-trained (real convert + sft stages on synthetic data) until it
    emits the think + tool-call format (~80 % of greedy answers); for slow tests (~50 CPU-seconds)."""
    import runners.convert as convert
    import runners.sft as sft
    from registry.context import StageContext
    from registry.spec import Spec
    from registry.tracking import NullTracker

    spec = Spec.model_validate({
        "name": "sft-fixture",
        "data": {"synthetic": {"num_records": 300, "seed": 0}, "test_size": 0.1, "seed": 0},
        "model": {"tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128,
                           "vocab_size": 800}, "device": "cpu"},
        "sft": {"max_steps": 300, "batch_size": 16, "lr": 5e-3, "warmup_steps": 10, "eval_every": 300,
                "format_samples": 0, "save_every": 1000},
    })
    root = tmp_path_factory.mktemp("sft-fixture")
    inputs: dict[str, Path] = {}
    for stage, section in (("convert", spec.data), ("sft", spec.sft)):
        (root / f"{stage}-out").mkdir()
        ctx = StageContext(stage=stage, spec=spec, out_dir=root / f"{stage}-out", work_dir=root / f"{stage}-work",
                           inputs=inputs, tracker=NullTracker(), project_root=ROOT)
        runner = convert if stage == "convert" else sft
        outputs = runner.run(section, ctx).outputs
        inputs = {f"convert.{k}": v for k, v in outputs.items()} if stage == "convert" else inputs
    return outputs["model"]


# The demo pair, run for real (mlflow run . -P spec=…), at a reduced size so CI stays fast. The
# specs are the shipped demo-grpo/demo-egpo with only sizes lowered (deep-merged into a copy of
# demo-grpo.yaml), so run names, params and the EGPO diff are the shipped ones.
DEMO_QUICK_OVERRIDES = {
    "sft": {"max_steps": 60, "batch_size": 16},
    "train": {"total_training_steps": 3, "train_batch_size": 4, "ppo_mini_batch_size": 4, "save_freq": 2,
              "rollout": {"n": 4}, "algorithm": {"filter_groups": {"max_num_gen_batches": 2}}},
    "eval": {"repeats": 2, "max_samples": 6},
}


@pytest.fixture(scope="session")
def demo_pair_store(tmp_path_factory):
    import subprocess
    import sys

    import mlflow
    import yaml

    from registry.loader import deep_merge

    tmp = tmp_path_factory.mktemp("demo-pair")
    specs = tmp / "specs"
    specs.mkdir()
    grpo = yaml.safe_load((ROOT / "specs" / "demo-grpo.yaml").read_text())
    (specs / "demo-grpo.yaml").write_text(yaml.safe_dump(deep_merge(grpo, DEMO_QUICK_OVERRIDES), sort_keys=False))
    shutil.copy(ROOT / "specs" / "demo-egpo.yaml", specs / "demo-egpo.yaml")
    shutil.copy(ROOT / "specs" / "demo-sft.yaml", specs / "demo-sft.yaml")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RLREG_SPECS_DIR": str(specs),
           "RLREG_HOME": str(tmp / "home"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MLFLOW_RUN_ID", None)
    logs = {}
    for name in ("demo-grpo", "demo-egpo", "demo-sft"):
        r = subprocess.run(["mlflow", "run", str(ROOT), "-P", f"spec={name}", "--env-manager", "local",
                            "--experiment-name", "rlreg-demo"], env=env, capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        logs[name] = r.stdout + r.stderr
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("rlreg-demo")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return {"client": client, "runs": runs, "logs": logs, "uri": uri, "env": env, "tmp": tmp}
