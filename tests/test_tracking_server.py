"""scripts/tracking-server.sh is locked down (issue 16): PostgreSQL with scram-sha-256 for a
dedicated non-superuser role, credentials in 0600 files, and MLflow's basic-auth app required
whenever the server binds beyond loopback."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from _servers import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "tracking-server.sh"


def script(env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("env, expect", [
    ({"HOST": "0.0.0.0", "AUTH": "none"}, "without authentication"),
    ({"HOST": "10.1.2.3", "AUTH": "none"}, "without authentication"),
    ({"AUTH": "open"}, "use auto, basic-auth or none"),
    ({"PG_URI": "postgresql+psycopg2://mlflow:hunter2@db/mlflow"}, "holds a password"),
])
def test_refuses_unsafe_setups_before_starting_anything(tmp_path, env, expect):
    server_dir = tmp_path / "server"
    r = script({**env, "SERVER_DIR": str(server_dir)}, "start", timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("Error: ") and expect in r.stderr and "hunter2" not in r.stderr
    assert not (server_dir / "mlflow.pid").exists()


def test_script_never_uses_trust_and_uses_basic_auth_beyond_loopback():
    text = SCRIPT.read_text()
    assert "--auth=trust" not in text and "--auth=scram-sha-256" in text
    assert "--app-name basic-auth" in text and "NOSUPERUSER" in text




@pytest.mark.slow
def test_local_cluster_is_password_protected(tmp_path):
    from _servers import pg_bin

    if pg_bin() is None:
        pytest.skip("PostgreSQL server not installed (bash scripts/system-deps.sh)")
    base = Path(tempfile.mkdtemp(prefix="rlreg-ts-", dir="/tmp"))
    base.chmod(0o755)  # the postgres OS user must reach SERVER_DIR/pg when this runs as root
    server_dir, pg_port, port = base / "server", free_port(), free_port()
    env = {"SERVER_DIR": str(server_dir), "PG_PORT": str(pg_port), "PORT": str(port), "WORKERS": "1",
           "PY": str(ROOT / ".venv/bin/python"), "MLFLOW": str(ROOT / ".venv/bin/mlflow")}
    try:
        r = script(env, "start", timeout=400)
        assert r.returncode == 0, (r.stdout, r.stderr[-2000:])
        assert f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{port}" in r.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as resp:
            assert resp.status == 200
        hba = [line.split() for line in (server_dir / "pg/data/pg_hba.conf").read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
        assert hba and all(line[-1] == "scram-sha-256" for line in hba), hba
        for cred in (server_dir / "mlflow.pgpass", server_dir / "pg/superuser.pgpass"):
            assert stat.S_IMODE(cred.stat().st_mode) == 0o600, cred
        assert not (server_dir / "pg/superuser.pw").exists()
        psql = [str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "mlflow", "-d", "mlflow", "-tAc"]
        ok = subprocess.run([*psql, "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = 'mlflow'"],
                            env={**os.environ, "PGPASSFILE": str(server_dir / "mlflow.pgpass")},
                            capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and ok.stdout.strip() == "f|f|f", ok.stderr
        denied = subprocess.run([*psql, "select 1"], env={**os.environ, "PGPASSFILE": "/dev/null", "PGPASSWORD": "wrong"},
                                capture_output=True, text=True, timeout=60)
        assert denied.returncode != 0 and "password authentication failed" in denied.stderr
        assert "hunter" not in r.stdout and "PASSWORD" not in (server_dir / "mlflow.log").read_text()
    finally:
        script(env, "stop", timeout=120)
        shutil.rmtree(base, ignore_errors=True)
