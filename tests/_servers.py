"""Real servers on loopback for the scale-out tests: a throwaway PostgreSQL cluster and an
`mlflow server` on it. Everything listens on 127.0.0.1 only and is stopped by the fixture."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _as_pg_user(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; CI runs as root, a laptop usually does not.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class Postgres:
    def __init__(self):
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server not installed (scripts/system-deps.sh installs it)")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="rlreg-pg-", dir="/tmp"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"

    def start(self) -> str:
        """A cluster with scram-sha-256 password auth (no `trust`), as scripts/tracking-server.sh
        makes; the password is in a 0600 pgpass file (``self.env`` points libpq at it)."""
        import secrets

        password = secrets.token_hex(16)
        pwfile, self.pgpass = self.dir / "pw", self.dir / "pgpass"
        for path, text in ((pwfile, password + "\n"), (self.pgpass, f"127.0.0.1:{self.port}:*:postgres:{password}\n")):
            path.write_text(text)
            path.chmod(0o600)
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        self.env = {**os.environ, "PGPASSFILE": str(self.pgpass)}
        subprocess.run(_as_pg_user([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                                    "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"]),
                       check=True, capture_output=True)
        pwfile.unlink()
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        subprocess.run(_as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                    "-l", str(self.dir / "pg.log"), "-w", "start"]), check=True, capture_output=True)
        subprocess.run(_as_pg_user(["env", f"PGPASSFILE={self.pgpass}", str(self.bindir / "createdb"), "-h", "127.0.0.1",
                                    "-p", str(self.port), "-U", "postgres", "mlflow"]), check=True, capture_output=True)
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def stop(self) -> None:
        subprocess.run(_as_pg_user([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class MlflowServer:
    def __init__(self, backend_uri: str, artifacts: Path, workers: int = 4, env: dict | None = None):
        self.env = env  # e.g. PGPASSFILE for a password-protected database
        self.port = free_port()
        self.backend_uri = backend_uri
        self.artifacts = artifacts
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.log = artifacts.parent / "mlflow-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> str:
        mlflow = Path(sys.executable).parent / "mlflow"
        # Migrate the schema once before any client or worker touches it.
        subprocess.run([str(mlflow), "db", "upgrade", self.backend_uri], check=True, capture_output=True, env=self.env)
        self.proc = subprocess.Popen(
            [str(mlflow), "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers)],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, env=self.env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server died: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not answer /health in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


@contextlib.contextmanager
def mlflow_ui(backend_uri: str, workdir: Path, timeout: float = 240) -> Iterator[str]:
    """`mlflow ui` (which ignores MLFLOW_TRACKING_URI) on a loopback port in its own process group;
    yields its base URL once /health answers, stops it afterwards. A server that dies or never
    answers fails the test with the tail of its log."""
    import pytest

    port = free_port()
    log_path = workdir / "mlflow-ui.log"
    with open(log_path, "w") as log:  # the child keeps its own handle
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", backend_uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                pytest.fail(f"mlflow ui did not answer on {base} (see {log_path}):\n" + log_path.read_text()[-2000:])
            time.sleep(0.5)
        print(f"mlflow ui answered after {time.monotonic() - t0:.1f} s")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
