"""Batched MLflow writes, param flattening/redaction, hashing."""

from __future__ import annotations

import mlflow

from registry.flatten import MAX_PARAM_CHARS, flatten, param_items
from registry.hashing import code_version, digest_path
from registry.tracking import Tracker


class CountingClient:
    def __init__(self, real):
        self.real, self.batches = real, []

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        self.batches.append((len(metrics), len(params), len(tags)))
        return self.real.log_batch(run_id, metrics=metrics, params=params, tags=tags)


def test_metrics_are_written_in_batches(mlflow_uri):
    real = mlflow.MlflowClient(mlflow_uri)
    run = real.create_run(real.create_experiment("t"))
    client = CountingClient(real)
    t = Tracker(client, run.info.run_id)
    for step in range(300):  # 1500 values
        t.log_metrics({f"m{i}": step * i for i in range(5)}, step=step)
    t.flush()
    assert sum(b[0] for b in client.batches) == 1500
    assert len(client.batches) <= 3  # 1000-value batches, not 1500 calls
    history = real.get_metric_history(run.info.run_id, "m3")
    assert len(history) == 300 and history[-1].value == 299 * 3 and history[-1].step == 299


def test_params_flattened_redacted_truncated_and_batched(mlflow_uri):
    real = mlflow.MlflowClient(mlflow_uri)
    run = real.create_run(real.create_experiment("t"))
    client = CountingClient(real)
    t = Tracker(client, run.info.run_id)
    params = {f"k{i}": i for i in range(150)}
    params["nested"] = {"api_key": "sk-secret", "max_new_tokens": 5, "long": "x" * 7000, "lst": [1, 2]}
    t.log_params(params)
    t.log_params(params)  # identical re-log is a no-op, not an MLflow error
    stored = real.get_run(run.info.run_id).data.params
    assert stored["nested.api_key"] == "***" and stored["nested.max_new_tokens"] == "5"
    assert len(stored["nested.long"]) == MAX_PARAM_CHARS and stored["nested.lst"] == "[1, 2]"
    assert len(stored) == 154
    assert [b[1] for b in client.batches] == [100, 54]


def test_flatten_shapes():
    assert flatten({"a": {"b": {"c": 1}}, "d": []}) == {"a.b.c": 1, "d": []}
    assert dict(param_items({"x.password": "p", "y.tokens": 3, "z": None})) == {"x.password": "***", "y.tokens": "3", "z": "null"}


def test_digest_path_file_and_dir(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("a")
    (d / "sub" / "b.txt").write_text("b")
    first = digest_path(d)
    (d / "sub" / "b.txt").write_text("B")
    assert digest_path(d) != first
    assert digest_path(d / "a.txt") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"


def test_code_version_follows_runner_imports(tmp_path, monkeypatch):
    (tmp_path / "runners").mkdir()
    (tmp_path / "runners" / "__init__.py").write_text("")
    (tmp_path / "runners" / "zz_stage.py").write_text("from runners.zz_helper import f\n")
    (tmp_path / "runners" / "zz_helper.py").write_text("def f(): return 1\n")
    import runners

    monkeypatch.setattr(runners, "__path__", [str(tmp_path / "runners"), *runners.__path__])
    code_version.cache_clear()
    v1 = code_version("runners.zz_stage")
    (tmp_path / "runners" / "zz_helper.py").write_text("def f(): return 2\n")
    code_version.cache_clear()
    assert code_version("runners.zz_stage") != v1
    code_version.cache_clear()
