"""The reaper marks a run KILLED only if it is still RUNNING after its process is known dead: a run
whose process finished it between the reaper's search and its pid check stays FINISHED (the CI
failure of 16 concurrent runs on one PostgreSQL server)."""

from __future__ import annotations

import subprocess
import sys

import mlflow

from registry.cache import host
from registry.recovery import reap_dead_runs


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


class FinishesAfterSearch:
    """A real client whose run's process finishes it right after the reaper's search returns."""

    def __init__(self, client, run_id):
        self._client, self._run_id = client, run_id

    def search_runs(self, *a, **kw):
        found = self._client.search_runs(*a, **kw)
        self._client.set_terminated(self._run_id, "FINISHED")
        return found

    def __getattr__(self, name):
        return getattr(self._client, name)


def _store(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("race", artifact_location=str(tmp_path / "art"))
    return client, exp


def test_run_finished_between_search_and_pid_check_is_left_finished(tmp_path):
    client, exp = _store(tmp_path)
    run = client.create_run(exp, tags={"rlreg.pid": str(_dead_pid()), "rlreg.host": host()})
    reaped = reap_dead_runs(FinishesAfterSearch(client, run.info.run_id))
    assert reaped == []
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_run_of_a_dead_process_still_running_is_marked_killed(tmp_path):
    client, exp = _store(tmp_path)
    run = client.create_run(exp, tags={"rlreg.pid": str(_dead_pid()), "rlreg.host": host()})
    assert reap_dead_runs(client) == [run.info.run_id]
    got = client.get_run(run.info.run_id)
    assert got.info.status == "KILLED"
    assert "died without finishing" in got.data.tags["rlreg.note"]
