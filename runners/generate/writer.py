"""Incremental JSONL output with resume.

Each batch is appended and fsync'ed as a unit: diagnostics first, then the data lines, so the data
file is the commit record — a sample counts as done once its data line is complete. On open, a torn
last line (a crash mid-write) is cut off and diagnostics of samples without a data line are
dropped; a rerun then generates exactly the missing ``sample_idx`` values, never a duplicate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from registry.errors import InputDataError


class SampleWriter:
    def __init__(self, data_path: Path, diagnostics_path: Path):
        self.data_path = Path(data_path)
        self.diagnostics_path = Path(diagnostics_path)
        self.data_path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[int] = self._repair()

    def _repair(self) -> set[int]:
        done = _complete_indices(self.data_path)
        if self.diagnostics_path.exists():
            _truncate_torn_tail(self.diagnostics_path)
            kept, changed = [], False
            seen: set[int] = set()
            for line in self.diagnostics_path.read_text(encoding="utf-8").splitlines():
                idx = _loads(line, self.diagnostics_path).get("sample_idx")
                if idx in done and idx not in seen:
                    kept.append(line)
                    seen.add(idx)
                else:
                    changed = True
            if changed:
                tmp = self.diagnostics_path.with_suffix(".tmp")
                tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
                os.replace(tmp, self.diagnostics_path)
        return done

    def write_batch(self, records: Iterable[dict[str, Any]], diagnostics: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        _append(self.diagnostics_path, diagnostics)
        _append(self.data_path, records)
        self.done.update(int(r["sample_idx"]) for r in records)


def _append(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _complete_indices(path: Path) -> set[int]:
    if not path.exists():
        return set()
    _truncate_torn_tail(path)
    done: set[int] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        record = _loads(line, path)
        if not isinstance(record.get("sample_idx"), int):
            raise InputDataError(f"{path}: a line has no integer sample_idx; delete the file to start over")
        done.add(record["sample_idx"])
    return done


def _loads(line: str, path: Path) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"{path}: a complete line is not valid JSON ({exc.msg}); the file was edited by hand — "
            "fix the line or delete the file to start over"
        ) from exc


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
