"""Scale-out: a real `mlflow server` on a real PostgreSQL (loopback), 16 concurrent spec runs,
racing identical stages, and parallel runs on a fresh embedded sqlite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pytest
from _servers import MlflowServer, Postgres, pg_bin

SPEC = """\
experiment: scale
data:
  synthetic: {{num_records: 40, seed: {seed}}}
  max_samples: 40
"""


def write_specs(d: Path, n: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (d / f"s{i}.yaml").write_text(SPEC.format(seed=i))


def run_many(names: list[str], env: dict) -> list[subprocess.CompletedProcess]:
    def one(name):
        return subprocess.run([sys.executable, "-m", "registry", "run", name, "--json"], env=env,
                              capture_output=True, text=True, timeout=900)
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(one, names))


def check_runs(results, client) -> dict:
    failures = [r.stderr[-1500:] for r in results if r.returncode != 0]
    assert not failures, failures[0]
    summaries = [json.loads(r.stdout) for r in results]
    exp = client.get_experiment_by_name("scale")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) == 2 * len(results)  # one parent + one convert child each
    assert {r.info.status for r in runs} == {"FINISHED"}
    for s in summaries:
        parent = client.get_run(s["parent_run_id"])
        assert parent.data.metrics["convert/rows_train"] + parent.data.metrics["convert/rows_test"] == 40
    return {"summaries": summaries, "runs": runs}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if pg_bin() is None:
        pytest.skip("PostgreSQL server not installed (bash scripts/system-deps.sh)")
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary (rl-registry[postgres])")
    pg = Postgres()
    uri = pg.start()
    srv = MlflowServer(uri, tmp_path_factory.mktemp("artifacts"), env=pg.env)
    try:
        yield srv.start()
    finally:
        srv.stop()
        pg.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_16_concurrent_runs_on_postgres_server(server, tmp_path):
    specs = tmp_path / "specs"
    write_specs(specs, 8)
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "RLREG_SPECS_DIR": str(specs),
           "RLREG_HOME": str(tmp_path / "home")}
    names = [f"s{i}" for i in range(8)] * 2  # every spec twice: identical stages race
    client = mlflow.MlflowClient(server)
    out = check_runs(run_many(names, env), client)
    by_spec: dict[str, list] = {}
    for s in out["summaries"]:
        by_spec.setdefault(s["spec"], []).append(s["stages"][0])
    for spec, (a, b) in by_spec.items():
        assert a["cache_key"] == b["cache_key"]
        computed = [x for x in (a, b) if x["cache_hit"] is None]
        # the file lock lets one compute and the other reuse it
        assert len(computed) == 1, (spec, a, b)
        assert a["outputs"] == b["outputs"]


@pytest.mark.slow
@pytest.mark.postgres
def test_metric_values_all_arrive_under_concurrency(server):
    code = (
        "import mlflow, sys; from registry.tracking import Tracker\n"
        "c = mlflow.MlflowClient(sys.argv[1]); r = c.get_run(sys.argv[2])\n"
        "t = Tracker(c, r.info.run_id)\n"
        "[t.log_metrics({'a': s, 'b': -s}, step=s) for s in range(1000)]\n"
        "t.flush()\n"
    )
    client = mlflow.MlflowClient(server)
    exp = client.create_experiment("metrics-burst")
    run_ids = [client.create_run(exp).info.run_id for _ in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda rid: subprocess.run([sys.executable, "-c", code, server, rid],
                                                           capture_output=True, text=True, timeout=600), run_ids))
    assert all(r.returncode == 0 for r in results), [r.stderr[-800:] for r in results if r.returncode]
    for rid in run_ids:
        hist = client.get_metric_history(rid, "b")
        assert len(hist) == 1000 and sorted(m.step for m in hist) == list(range(1000))


@pytest.mark.slow
def test_parallel_runs_on_fresh_sqlite_store(tmp_path):
    specs = tmp_path / "specs"
    write_specs(specs, 6)
    db = tmp_path / "fresh" / "mlflow.db"  # does not exist yet: all 6 race to create it
    uri = f"sqlite:///{db}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RLREG_SPECS_DIR": str(specs),
           "RLREG_HOME": str(tmp_path / "home")}
    results = run_many([f"s{i}" for i in range(6)], env)
    check_runs(results, mlflow.MlflowClient(uri))
