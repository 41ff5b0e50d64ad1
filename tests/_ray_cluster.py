"""A throwaway Ray cluster on 127.0.0.1 for tests: a head and a second node process, each
`ray start --block` in its own session, stopped by pid (never `ray stop`, which would stop every
Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from _servers import free_port


def _ray_bin() -> str:
    return str(Path(sys.executable).parent / "ray")


def _pids_using(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(d.name))
        except OSError:
            continue
    return pids


@contextmanager
def ray_cluster(env: dict[str, str], head_cpus: int = 1, worker_cpus: int = 1):
    """Yield the address of a head + one worker node; ``env`` is what both node processes (and so
    the Ray workers that run cells) start with."""
    temp = Path(tempfile.mkdtemp(prefix="rlrt-", dir="/tmp"))  # short: Ray's socket paths are length-limited
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--block"]
    procs = []
    try:
        head = subprocess.Popen(
            [_ray_bin(), "start", "--head", "--port", str(port), "--num-cpus", str(head_cpus), "--num-gpus", "0",
             "--temp-dir", str(temp), "--include-dashboard=false", *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(head)
        _wait_for(address, env, nodes=1)
        worker = subprocess.Popen(
            [_ray_bin(), "start", "--address", address, "--num-cpus", str(worker_cpus), "--num-gpus", "0", *common],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(worker)
        _wait_for(address, env, nodes=2)
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for pid in _pids_using(str(temp)):  # anything of this cluster still alive (raylet, gcs…)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for(address: str, env: dict[str, str], nodes: int, timeout: float = 120) -> None:
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [str(nodes)]:
            return
        time.sleep(1)
    raise RuntimeError(f"Ray cluster at {address} did not reach {nodes} nodes in {timeout:.0f} s")
