"""Parquet output with verl's columns and a fixed Arrow schema.

A fixed schema (rather than one inferred from the first batch) keeps every batch and every run
identical; with the same rows, batch size and pyarrow version the file is byte-identical.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(MESSAGE)),
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([
        ("split", pa.string()),
        ("index", pa.int64()),
        ("source_index", pa.int64()),
        ("tools", pa.string()),
    ])),
])


class SplitWriter:
    """Buffers rows of one split and writes a row group every ``batch_size`` rows."""

    def __init__(self, path: Path, batch_size: int):
        self.path = path
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=SCHEMA))
            self.count += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
