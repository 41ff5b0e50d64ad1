"""Running ``python -m verl.trainer.main_ppo`` as a child process: its environment, its argv, its
log (streamed to the console and a file as it comes), its exit code and the metrics it printed.

No shell: the argv is a list, so paths with spaces or quotes reach verl intact.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from registry.redact import redact_argv, redact_text
from runners.verl.config import CONFIG_NAME, EGPO_PLUGIN_MODULE

MAIN_MODULE = "verl.trainer.main_ppo"
# verl's console logger: "step:12 - actor/entropy:0.53 - critic/score/mean:np.float64(0.25) - ..."
# (values are pprint.pformat-ed: numpy 2 scalars print as np.float64(x))
_STEP_LINE = re.compile(r"(?:^|\s)step:(\d+)\s+-\s+(.*)$")
_METRIC = re.compile(r"([A-Za-z0-9_./@:-]+):(?:np\.[a-z0-9_]+\()?(-?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))")


class VerlExitError(RuntimeError):
    """verl exited non-zero (or was stopped): the train stage fails with this message."""

    def __init__(self, returncode: int, log_path: Path, tail: list[str]):
        self.returncode = returncode
        what = f"exited with code {returncode}" if returncode >= 0 else f"was killed by signal {-returncode}"
        last = "\n".join(f"  | {line}" for line in tail[-15:])
        super().__init__(f"verl {what}; full log: {log_path} (MLflow artifact verl/train.log)\n{last}")


def verl_env(
    *,
    project_root: Path,
    tracking_uri: str,
    run_id: str,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """Variables every verl process needs (driver and Ray workers alike): the MLflow child run to
    attach to, the EGPO plugin module and the project root to import it from."""
    base = dict(os.environ if base is None else base)
    pythonpath = [str(project_root)] + [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {
        "MLFLOW_TRACKING_URI": absolute_tracking_uri(tracking_uri),
        "MLFLOW_RUN_ID": run_id,
        "VERL_USE_EXTERNAL_MODULES": EGPO_PLUGIN_MODULE,
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
        "HYDRA_FULL_ERROR": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` is relative to the current directory; verl runs elsewhere, so make
    file-backed URIs absolute (servers and absolute paths pass unchanged)."""
    prefix = "sqlite:///"
    if uri.startswith("<"):  # a dry-run placeholder
        return uri
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    if "://" not in uri and uri:
        return str(Path(uri).resolve())
    return uri


def verl_argv(python: Path | str, config_dir: Path | str, overrides: list[str]) -> list[str]:
    return [str(python), "-m", MAIN_MODULE, "--config-path", str(config_dir), "--config-name", CONFIG_NAME, *overrides]


@dataclass
class LaunchResult:
    returncode: int
    log_path: Path
    step_metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    """Metrics verl printed per step (its console logger), parsed from the log."""
    tail: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def last(self, key: str) -> float | None:
        for step in sorted(self.step_metrics, reverse=True):
            if key in self.step_metrics[step]:
                return self.step_metrics[step][key]
        return None


def parse_step_line(line: str) -> tuple[int, dict[str, float]] | None:
    match = _STEP_LINE.search(line.strip())
    if not match:
        return None
    metrics = {k: float(v) for k, v in _METRIC.findall(match.group(2))}
    return int(match.group(1)), metrics


def launch(
    argv: list[str],
    env: dict[str, str],
    *,
    cwd: Path,
    log_path: Path,
    console: TextIO | None = None,
    timeout_s: float | None = None,
) -> LaunchResult:
    """Run ``argv`` (no shell) with ``env`` added to this environment; copy every output line to
    ``console`` and ``log_path`` as it arrives. Returns the exit code (never raises on non-zero).
    The child gets its own process group so a timeout or Ctrl-C stops Ray's children too."""
    console = console if console is not None else sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result = LaunchResult(returncode=-1, log_path=log_path)
    start = time.monotonic()
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"# rlreg: {' '.join(redact_argv(argv))}\n")
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        timed_out: list[bool] = []
        watchdog = None
        if timeout_s is not None:
            # a timer, not a check per line: a hung verl prints nothing
            watchdog = threading.Timer(timeout_s, lambda: (timed_out.append(True), _stop(proc)))
            watchdog.daemon = True
            watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = redact_text(line)  # verl prints its config; the log and console get it masked
                console.write(line)
                console.flush()
                log.write(line)
                log.flush()
                result.tail = (result.tail + [line.rstrip("\n")])[-50:]
                parsed = parse_step_line(line)
                if parsed:
                    result.step_metrics.setdefault(parsed[0], {}).update(parsed[1])
            result.returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if timed_out:
            log.write(f"# rlreg: stopped after {timeout_s} s (train.verl.timeout_s)\n")
            result.tail.append(f"[rlreg] stopped after {timeout_s} s (train.verl.timeout_s)")
    result.seconds = time.monotonic() - start
    return result


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
