"""`train.train_max_samples` (verl's `data.train_max_samples`): the builtin trainer keeps the rows
verl 0.9.1's RLHFDataset keeps, and the verl backend passes the key through."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from runners.train.prompts import load_prompts, select_max_samples

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"
CASES = [(total, n, seed) for total in (10, 50) for n in (1, 3, 9, 49) for seed in range(6)]


def test_selection_is_seeded_without_replacement_and_minus_one_keeps_all():
    picked = select_max_samples(50, 9, seed=3)
    assert len(picked) == len(set(picked)) == 9 and all(0 <= i < 50 for i in picked)
    assert picked == select_max_samples(50, 9, seed=3)
    assert picked != select_max_samples(50, 9, seed=4)  # each training seed draws its own prompt set
    assert select_max_samples(50, -1, seed=3) == list(range(50))
    assert select_max_samples(5, 9, seed=3) == list(range(5))  # verl: only when N < rows


def _parquet(path: Path, rows: int) -> Path:
    pd.DataFrame([{"data_source": "t", "prompt": [{"role": "user", "content": f"row {i}"}], "ability": "x",
                   "reward_model": {"style": "rule", "ground_truth": str(i)},
                   "extra_info": {"index": i, "tools": "[]"}} for i in range(rows)]).to_parquet(path)
    return path


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [0] * len(text.split())}


def test_load_prompts_keeps_the_selected_rows_in_verls_order(tmp_path):
    path = _parquet(tmp_path / "train.parquet", 50)
    render = lambda tok, messages, tools: messages[0]["content"]  # noqa: E731
    prompts, filtered = load_prompts(path, _Tok(), render, 64, max_samples=9, seed=5)
    assert [p.uid for p in prompts] == select_max_samples(50, 9, 5) and filtered == 0
    assert [p.ground_truth for p in prompts] == [str(i) for i in select_max_samples(50, 9, 5)]
    assert len(load_prompts(path, _Tok(), render, 64)[0]) == 50


def test_spec_bounds_and_verl_config_passes_it_through():
    from pydantic import ValidationError

    from registry.loader import load_spec
    from registry.spec import Spec
    from runners.verl.config import build_config

    spec = load_spec(ROOT / "specs" / "verl7.yaml").spec
    assert spec.train.train_max_samples == -1
    data = spec.model_dump(mode="json")
    data.pop("extends", None)
    data["train"]["train_max_samples"] = 64
    changed = Spec.model_validate(data)
    config = build_config(changed.train, changed, model_path="/m", train_files="/t.parquet", val_files="/v.parquet",
                          checkpoint_dir="/c", env_vars={})
    assert config.config["data"]["train_max_samples"] == 64 and config.config["data"]["seed"] == changed.train.seed
    data["train"]["train_max_samples"] = -2
    with pytest.raises(ValidationError, match="greater than or equal to -1"):
        Spec.model_validate(data)


VERL_SCRIPT = r"""
import json, sys
from omegaconf import OmegaConf
from verl.utils.dataset.rl_dataset import RLHFDataset
out = {}
for total, n, seed in json.loads(sys.argv[2]):
    cfg = OmegaConf.create({"shuffle": True, "seed": seed, "filter_overlong_prompts": False,
                            "cache_dir": sys.argv[3]})
    ds = RLHFDataset(data_files=[f"{sys.argv[1]}/rows{total}.parquet"], tokenizer=None, config=cfg, max_samples=n)
    out[f"{total},{n},{seed}"] = [int(r["extra_info"]["index"]) for r in ds.dataframe]
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not VERL_PYTHON.exists(), reason=".venv-verl is absent: scripts/setup-verl-venv.sh (CI builds it)")
def test_the_builtin_keeps_exactly_the_rows_verls_rlhfdataset_keeps(tmp_path):
    for total in (10, 50):
        _parquet(tmp_path / f"rows{total}.parquet", total)
    proc = subprocess.run([str(VERL_PYTHON), "-c", VERL_SCRIPT, str(tmp_path), json.dumps(CASES), str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    verl_rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(verl_rows) == len(CASES)
    for total, n, seed in CASES:
        assert select_max_samples(total, n, seed) == verl_rows[f"{total},{n},{seed}"], (total, n, seed)
