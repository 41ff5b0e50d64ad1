"""Crash safety: SIGKILLed runs are found and marked KILLED on the next invocation; SIGTERM and
SIGINT end the stage cleanly with runs KILLED; no half-written output is ever reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

pytestmark = pytest.mark.slow

SLOW_SPEC = """\
experiment: crash
data:
  synthetic: {num_records: 40000}
  max_samples: null
"""


@pytest.fixture()
def env(tmp_path, mlflow_uri):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "slow.yaml").write_text(SLOW_SPEC)
    e = {**os.environ, "RLREG_SPECS_DIR": str(specs), "RLREG_HOME": str(tmp_path / "home"),
         "MLFLOW_TRACKING_URI": mlflow_uri}
    return {"env": e, "client": mlflow.MlflowClient(mlflow_uri), "home": tmp_path / "home"}


def start(env, *args):
    # A shell that runs CI in the background starts it with SIGINT ignored, and children inherit
    # that; restore the default so the child behaves like a terminal process on Ctrl-C.
    return subprocess.Popen([sys.executable, "-m", "registry", "run", *args], env=env["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_running_stage(client, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = client.get_experiment_by_name("crash")
        if exp:
            runs = client.search_runs([exp.experiment_id], "tags.`rlreg.stage` = 'convert' and attributes.status = 'RUNNING'")
            if runs:
                return runs[0]
        time.sleep(0.3)
    raise AssertionError("the convert stage never started")


def statuses(client):
    exp = client.get_experiment_by_name("crash")
    return {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}


def test_sigkill_is_reaped_and_rerun_recomputes(env):
    client = env["client"]
    proc = start(env, "slow")
    stage = wait_for_running_stage(client)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    assert client.get_run(stage.info.run_id).info.status == "RUNNING"  # the lie we must fix
    rerun = subprocess.run([sys.executable, "-m", "registry", "run", "slow", "--json"], env=env["env"],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "KILLED" in rerun.stderr
    killed = client.get_run(stage.info.run_id)
    assert killed.info.status == "KILLED" and "died without finishing" in killed.data.tags["rlreg.note"]
    summary = json.loads(rerun.stdout)
    assert summary["stages"][0]["cache_hit"] is None  # nothing half-written was reused
    assert not any((env["home"] / "tmp").iterdir()) if (env["home"] / "tmp").exists() else True
    assert {r.info.status for r in statuses(client).values()} == {"KILLED", "FINISHED"}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_sigint_mark_runs_killed(env, sig):
    client = env["client"]
    proc = start(env, "slow")
    wait_for_running_stage(client)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in out
    runs = statuses(client)
    assert runs and {r.info.status for r in runs.values()} == {"KILLED"}
    tmp = env["home"] / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), "partial output left behind"
