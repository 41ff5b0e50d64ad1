"""Run-id prefixes wherever a run id is accepted (diff, compare, report), and `rlreg runs`."""

from __future__ import annotations

import json
import types

import mlflow
import pytest
from click.testing import CliRunner

from registry.cli import main
from registry.errors import UsageError

IDS: list[str] = []


def _fresh_ids() -> list[str]:
    """Two ids sharing a 7-digit prefix and one other; new per test (MLflow caches each run id's
    artifact location for the whole process, so ids must not repeat across stores)."""
    import uuid

    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    return [a[:7] + "1" + a[8:], a[:7] + "2" + b[8:], ("0" if a[0] != "0" else "f") + b[1:]]


@pytest.fixture()
def store(mlflow_uri, monkeypatch, tmp_path):
    """Three parent runs with chosen ids (two share a 7-digit prefix), each with a spec.yaml."""
    import uuid

    import mlflow.store.tracking.sqlalchemy_store as sa

    IDS[:] = _fresh_ids()
    ids = iter(IDS)
    chosen = lambda: types.SimpleNamespace(hex=next(ids, None) or uuid.uuid4().hex)  # then normal ids
    monkeypatch.setattr(sa, "uuid", types.SimpleNamespace(uuid4=chosen))
    monkeypatch.chdir(tmp_path)
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.create_experiment("refs")
    spec = {"name": "x", "data": {"synthetic": {"num_records": 10}}}
    rows = [("demo-a", "FINISHED", {"eval/accuracy_mean": 0.25}, {}),
            ("demo-b", "FAILED", {}, {"rlreg.study": "st", "rlreg.arm": "b", "rlreg.seed": "1", "rlreg.cell": "b/seed=1"}),
            ("demo-a", "FINISHED", {"eval/accuracy_mean": 0.5}, {})]
    created = [client.create_run(exp, tags={"rlreg.role": "parent", "rlreg.spec": name, **tags}).info.run_id
               for name, _, _, tags in rows]
    monkeypatch.setattr(sa, "uuid", uuid)  # artifact logging needs the real module
    for run_id, (name, status, metrics, _) in zip(created, rows):
        for k, v in metrics.items():
            client.log_metric(run_id, k, v)
        client.log_dict(run_id, {**spec, "name": name}, "spec.yaml")
        client.set_terminated(run_id, status)
    return client


def test_unique_prefix_full_id_ambiguous_and_unknown(store):
    from registry.runref import resolve_run_id, run_ref

    p7 = IDS[0][:7]
    assert resolve_run_id(store, IDS[2][:6]) == IDS[2]
    assert resolve_run_id(store, IDS[0][:8]) == IDS[0]
    assert resolve_run_id(store, IDS[1]) == IDS[1]
    with pytest.raises(UsageError, match=rf"prefix '{p7}' is ambiguous: 2 runs match \({IDS[0][:11]}…, {IDS[1][:11]}…\)"):
        resolve_run_id(store, p7)
    unknown = next(p for p in ("aaaaaa", "bbbbbb") if not any(i.startswith(p) for i in IDS))
    with pytest.raises(UsageError, match=f"no run id starts with '{unknown}'"):
        resolve_run_id(store, unknown)
    with pytest.raises(UsageError, match="at least 6"):
        resolve_run_id(store, "abc")
    assert run_ref(store, "demo-a") is None  # not hex: a spec name
    assert run_ref(store, IDS[2][:6], is_spec_name=lambda n: True) is None  # a spec of that name wins


def test_diff_and_compare_accept_prefixes(store):
    r = CliRunner().invoke(main, ["diff", IDS[0][:8], IDS[1][:8], "--format", "json"])
    assert r.exit_code == 0, r.output
    assert [(row["key"], row["a"], row["b"]) for row in json.loads(r.output)] == [("name", "demo-a", "demo-b")]
    r = CliRunner().invoke(main, ["diff", IDS[0][:7], IDS[2][:6]])
    assert r.exit_code == 2 and "ambiguous" in r.output and "Traceback" not in r.output
    from analysis.runs import resolve

    assert resolve(store, IDS[2][:6]).run_id == IDS[2]
    assert resolve(store, "demo-a", run_id=IDS[0][:8]).run_id == IDS[0]
    with pytest.raises(UsageError, match="ambiguous"):
        resolve(store, IDS[0][:7])
    r = CliRunner().invoke(main, ["compare", IDS[0][:8], IDS[2][:8], "--format", "json"])
    assert r.exit_code == 0, r.output


def test_runs_listing_filters_sorts_and_json(store):
    r = CliRunner().invoke(main, ["runs", "--json"])
    rows = json.loads(r.output)
    assert [x["run_id"] for x in rows] == [IDS[2], IDS[1], IDS[0]]  # newest first
    assert rows[1]["study"] == "st" and rows[1]["arm"] == "b" and rows[1]["seed"] == "1"
    assert rows[0]["metrics"] == {"eval/accuracy": 0.5}
    r = CliRunner().invoke(main, ["runs", "--spec", "demo-a", "--sort-by", "metric:eval/accuracy", "--json"])
    assert [x["metrics"]["eval/accuracy"] for x in json.loads(r.output)] == [0.5, 0.25]
    r = CliRunner().invoke(main, ["runs", "--status", "failed", "--json"])
    assert [x["run_id"] for x in json.loads(r.output)] == [IDS[1]]
    r = CliRunner().invoke(main, ["runs", "--study", "st"])
    assert r.exit_code == 0 and f"{IDS[1][:8]}  demo-b  st:b/seed=1  FAILED" in r.output
    r = CliRunner().invoke(main, ["runs", "--where", "metrics.`eval/accuracy_mean` > 0.3", "--json"])
    assert [x["run_id"] for x in json.loads(r.output)] == [IDS[2]]
    r = CliRunner().invoke(main, ["runs", "--where", "metrics.x >> 1"])
    assert r.exit_code == 2 and "--where: MLflow rejects the filter" in r.output
    r = CliRunner().invoke(main, ["runs", "--sort-by", "colour"])
    assert r.exit_code == 2 and "--sort-by colour" in r.output
