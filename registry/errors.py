"""Every failure kind rlreg reports, and the exit code it maps to.

    RlregError                  base; carries a message that states the rule and the fix
     ├── UsageError       (2)   bad command-line use: unknown spec name, bad option combination
     ├── SpecError        (2)   a spec file that does not load or validate (file, dotted path, fix)
     ├── InputDataError   (2)   a data file a stage reads is malformed (file, record, fix)
     ├── MissingExtra     (1)   an optional engine (vllm, verl, bfcl) is not installed
     └── StageFailed      (1)   a stage raised while running; its run is marked FAILED

    Terminated (BaseException) SIGTERM turned into an exception (exit 143)

The CLI prints ``Error: <message>`` and exits with ``exit_code``; never a traceback. Anything
else is an internal error: one line, the traceback in a log file (registry/crashlog.py).
"""

from __future__ import annotations


class RlregError(Exception):
    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RlregError):
    exit_code = 2


class SpecError(RlregError):
    """A spec problem. ``problems`` holds one line per issue, already formatted."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class InputDataError(RlregError):
    """Malformed input data. Name the file and record, say what is wrong and how to fix it."""

    exit_code = 2


class MissingExtra(RlregError):
    exit_code = 1

    def __init__(self, what: str, install: str):
        super().__init__(f"{what} is not installed (install it with: {install})")


class StageFailed(RlregError):
    exit_code = 1

    def __init__(self, stage: str, message: str, run_id: str | None = None):
        where = f" (run {run_id})" if run_id else ""
        super().__init__(f"stage '{stage}' failed{where}: {message}")
        self.stage = stage
        self.run_id = run_id


class Terminated(BaseException):
    """SIGTERM turned into an exception so runs are marked KILLED on the way out."""
