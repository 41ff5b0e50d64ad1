"""Read the convert stage's parquet (verl's columns) with one clear error for a bad file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.errors import InputDataError

REQUIRED = ("prompt", "reward_model")


def read_verl_parquet(path: Path, reader: str, limit: int | None = None) -> Any:
    """A DataFrame of the file, checked for verl's ``prompt`` and ``reward_model`` columns.

    ``reader`` names the stage in the message (e.g. "the train stage")."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds for a truncated/corrupt file
        raise InputDataError(f"{path}: not a readable parquet file ({exc}); rerun the convert stage") from exc
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputDataError(
            f"{path}: missing column(s) {missing} ({reader} reads verl's parquet layout: prompt, "
            "reward_model.ground_truth, extra_info.tools; produce it with the convert stage)"
        )
    return frame.head(limit) if limit else frame
