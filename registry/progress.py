"""Progress of a stage's loop: a tqdm bar on a terminal, a plain line now and then otherwise.

In a log file a tqdm bar is hundreds of carriage-return redraws in one line (an SFT run wrote 658
redraws into one 58 KB line). When stderr is not a terminal, ``progress()`` returns ``LineProgress``:
one line per ``every_pct`` % of the total, at most one per ``min_seconds``, always one at the end.
Both answer ``update``, ``set_postfix``, ``close`` and ``n`` (the subset runners use).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

EVERY_PCT = 10
MIN_SECONDS = 30.0


class LineProgress:
    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it", file: TextIO | None = None,
                 every_pct: int = EVERY_PCT, min_seconds: float = MIN_SECONDS):
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.file = file or sys.stderr
        self.every_pct, self.min_seconds = every_pct, min_seconds
        self._postfix = ""
        self._start, self._start_n = time.monotonic(), initial
        self._last_time: float | None = None
        self._emitted_n = initial
        self._last_bucket = self._bucket()

    def _bucket(self) -> int:
        return (self.n * 100 // max(self.total, 1)) // self.every_pct

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        bucket, now = self._bucket(), time.monotonic()
        if bucket <= self._last_bucket:
            return
        if self._last_time is None or now - self._last_time >= self.min_seconds or self.n >= self.total:
            self._emit(now)
            self._last_bucket = bucket

    def _emit(self, now: float) -> None:
        rate = (self.n - self._start_n) / max(now - self._start, 1e-9)
        pct = 100 * self.n / max(self.total, 1)
        post = f" {self._postfix}" if self._postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%, {rate:.3g} {self.unit}/s){post}",
              file=self.file, flush=True)
        self._last_time, self._emitted_n = now, self.n

    def close(self) -> None:
        """The final count, unless the last line already showed it."""
        if self.n != self._emitted_n:
            self._emit(time.monotonic())


def progress(total: int, initial: int = 0, desc: str = "", unit: str = "it", leave: bool = True) -> Any:
    """A tqdm bar when stderr is a terminal, else a ``LineProgress``."""
    if sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5, leave=leave)
        except ImportError:  # a missing bar must never stop a stage
            pass
    return LineProgress(total, initial, desc, unit)
