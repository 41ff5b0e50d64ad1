"""The last resort for a bug: one ``Error: internal error: …`` line for the user, the whole
traceback (secrets masked) in a log file under ``$RLREG_HOME/logs`` (else ``./.rlreg/logs``,
else the temp dir) for the bug report. ``rlreg --debug`` prints the traceback instead."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from registry.redact import redact_text


def _log_dir() -> Path:
    from registry.loader import project_root
    from registry.store import stage_store_root

    return stage_store_root(project_root()) / "logs"


def write_crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of ``exc``; returns the file, or None when nowhere is writable."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    header = f"rlreg internal error, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}, pid {os.getpid()}\nargv: {sys.argv}\n\n"
    name = f"internal-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    for directory in (_safe(_log_dir), lambda: Path(tempfile.gettempdir())):
        try:
            d = directory()
            if d is None:
                continue
            d.mkdir(parents=True, exist_ok=True)
            path = d / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(redact_text(header + text))
            return path
        except Exception:  # noqa: BLE001 - try the next place; never fail while reporting a failure
            continue
    return None


def _safe(fn):
    def wrapped():
        try:
            return fn()
        except Exception:  # noqa: BLE001
            return None

    return wrapped


def internal_error_line(exc: BaseException, log: Path | None) -> str:
    what = redact_text(f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__)
    if len(what) > 300:
        what = what[:297] + "..."
    where = f"details in {log}" if log else "no log file could be written"
    return f"internal error: {what} ({where}; rerun with --debug for the traceback)"
