"""Corrupted inputs give clear errors naming the file (and row), never a traceback."""

from __future__ import annotations

import pandas as pd
import pytest

from registry.errors import InputDataError
from runners.common.verl_parquet import read_verl_parquet


def test_truncated_parquet_names_file_and_fix(tmp_path):
    good = tmp_path / "good.parquet"
    pd.DataFrame({"prompt": [[{"role": "user", "content": "x"}]], "reward_model": [{"ground_truth": "y"}]}).to_parquet(good)
    bad = tmp_path / "train.parquet"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(InputDataError, match=r"train\.parquet: not a readable parquet file .*rerun the convert stage"):
        read_verl_parquet(bad, "the train stage")


def test_empty_file_and_wrong_columns(tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(InputDataError, match="empty.parquet: not a readable parquet"):
        read_verl_parquet(empty, "the eval stage")
    other = tmp_path / "other.parquet"
    pd.DataFrame({"question": ["q"]}).to_parquet(other)
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['prompt', 'reward_model'\] \(the eval stage"):
        read_verl_parquet(other, "the eval stage")


def test_limit(tmp_path):
    p = tmp_path / "t.parquet"
    pd.DataFrame({"prompt": [[{"role": "user", "content": str(i)}] for i in range(5)],
                  "reward_model": [{"ground_truth": "g"}] * 5}).to_parquet(p)
    assert len(read_verl_parquet(p, "x", limit=2)) == 2 and len(read_verl_parquet(p, "x")) == 5
