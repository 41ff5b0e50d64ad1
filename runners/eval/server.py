"""Subprocesses of the BFCL path: the ``vllm serve`` server and the ``bfcl`` commands.

Every process is started in its own session (process group) with stdout+stderr going to a log
file, and stopped by signalling the whole group: vLLM spawns engine/worker processes, and killing
only the parent would leave them holding the GPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from registry.redact import redact_file
from registry.spec.eval import BfclSpec

LOG_TAIL_CHARS = 3000


class ServerNotReady(RuntimeError):
    """The OpenAI-compatible server did not answer GET /v1/models in time, or it exited."""


def vllm_argv(spec: BfclSpec, model_path: Path | str) -> list[str]:
    """``vllm serve`` with the spec's settings (argv list: no shell, no quoting problems)."""
    return [
        os.path.expandvars(spec.vllm_command), "serve", str(model_path),
        "--host", spec.host, "--port", str(spec.port),
        "--tensor-parallel-size", str(spec.tensor_parallel_size),
        "--dtype", spec.dtype,
        "--max-model-len", str(spec.max_model_len),
        "--gpu-memory-utilization", str(spec.gpu_memory_utilization),
        "--enable-auto-tool-choice", "--tool-call-parser", spec.tool_call_parser,
        *spec.extra_vllm_args,
    ]


def start_logged(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"cannot start '{argv[0]}': not found (install it or set its path in the spec)") from exc
    finally:
        log.close()  # the child holds its own descriptor


def stop_group(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the process group, wait ``grace_s``, then SIGKILL it. Safe to call twice."""
    if proc.poll() is not None:
        _kill_group(proc.pid, signal.SIGKILL)  # the leader is gone; reap stragglers of its group
        return
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_logged(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
               timeout_s: float | None = None, cwd: Path | None = None) -> int:
    """Run to completion (log to ``log_path``); on timeout kill the group and return 124."""
    proc = start_logged(argv, log_path, env, cwd)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with log_path.open("a") as fh:
            fh.write(f"\n[rlreg] killed after {timeout_s} s (timeout)\n")
        stop_group(proc, grace_s=10)
        return 124
    finally:
        if proc.poll() is None:
            stop_group(proc, grace_s=10)
        redact_file(log_path)


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    if not path.is_file():
        return ""
    data = path.read_bytes()[-chars:]
    return data.decode("utf-8", "replace")


def models_endpoint(base_url: str) -> str:
    """``http://h:p`` or ``http://h:p/v1`` → ``http://h:p/v1/models``."""
    base = base_url.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/models"


def wait_until_ready(base_url: str, timeout_s: float, proc: subprocess.Popen | None = None,
                     log_path: Path | None = None, interval_s: float = 1.0) -> dict:
    """Poll GET /v1/models until it answers 200 with JSON; return that JSON.

    Raises ServerNotReady when ``proc`` exits first (its log tail in the message) or when
    ``timeout_s`` passes."""
    url = models_endpoint(base_url)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerNotReady(
                f"the server exited with code {proc.returncode} before {url} answered"
                + (f"; its log is {log_path} (also logged as an artifact). Last lines:\n{log_tail(log_path)}" if log_path else "")
            )
        try:
            with urllib.request.urlopen(url, timeout=min(10.0, max(interval_s, 1.0))) as resp:
                body = resp.read()
                if resp.status == 200:
                    return json.loads(body or b"{}")
                last_error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise ServerNotReady(
                f"{url} did not answer within {timeout_s:g} s (last error: {last_error}); raise "
                "eval.bfcl.startup_timeout_s for a large model"
                + (f", or read the server log {log_path}" if log_path else "")
            )
        time.sleep(interval_s)


class VllmServer:
    """``with VllmServer(spec, model, log) as base_url:`` — started, ready, ALWAYS stopped."""

    def __init__(self, spec: BfclSpec, model_path: Path | str, log_path: Path, env: Mapping[str, str] | None = None):
        self.spec, self.model_path, self.log_path, self.env = spec, model_path, log_path, env
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "::") else self.spec.host
        return f"http://{host}:{self.spec.port}"

    def __enter__(self) -> str:
        self.proc = start_logged(vllm_argv(self.spec, self.model_path), self.log_path, self.env)
        try:
            wait_until_ready(self.base_url, self.spec.startup_timeout_s, self.proc, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            redact_file(self.log_path)  # vLLM prints its args (an --api-key too)

    def __exit__(self, *exc) -> None:
        self.stop()
