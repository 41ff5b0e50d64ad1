"""`data.split: hardtry` puts the same records in train and test, in the same row order, as the
user's converter (hardtry convert_messages_to_verl.py: Hugging Face datasets shuffle/select/
train_test_split). The expected record numbers in tests/fixtures/hardtry_split.json were computed
by running those datasets calls (scripts/hardtry_split_fixture.py), so no datasets import here."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runners import convert

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "hardtry_split.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


def _input(path: Path, n: int) -> Path:
    # record i is recognisable by its text and by extra_info.source_index
    rows = [{"messages": [{"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"<tool_call>\n{{\"name\": \"f{i}\", \"arguments\": {{}}}}\n</tool_call>"}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(parquet: Path) -> list[dict]:
    return pq.read_table(parquet).to_pylist()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"n{c['records']}-max{c['max_samples']}-shuffle{c['shuffle']}-t{c['test_size']}")
def test_same_records_in_the_same_order_as_hardtry(make_ctx, tmp_path, case):
    src = _input(tmp_path / "in.jsonl", case["records"])
    ctx = make_ctx("convert", {"data": {
        "source": str(src), "split": "hardtry", "max_samples": case["max_samples"], "shuffle": case["shuffle"],
        "test_size": case["test_size"], "seed": case["seed"]}})
    result = convert.run(ctx.spec.data, ctx)
    for split in ("train", "test"):
        rows = _rows(result.outputs[split])
        assert [r["extra_info"]["source_index"] for r in rows] == case[split]
        assert [r["prompt"][0]["content"] for r in rows] == [f"q{i}" for i in case[split]]
        # like their map(with_indices=True): index = the row's position in its split
        assert [r["extra_info"]["index"] for r in rows] == list(range(len(case[split])))
        assert {r["extra_info"]["split"] for r in rows} == {split}


def test_verl7_setting_differs_from_the_rlreg_split(make_ctx, tmp_path):
    case = CASES[0]  # 1000 of 1200, no shuffle, test 0.05, seed 42: what verl7/verl8 ran
    src = _input(tmp_path / "in.jsonl", case["records"])
    ctx = make_ctx("convert", {"data": {"source": str(src), "split": "rlreg", "max_samples": 1000, "shuffle": False,
                                        "test_size": 0.05, "seed": 42}})
    result = convert.run(ctx.spec.data, ctx)
    tail = [r["extra_info"]["source_index"] for r in _rows(result.outputs["test"])]
    assert tail == list(range(950, 1000))
    assert len(set(tail) & set(case["test"])) < 10  # the old split was not hardtry's
    assert set(case["train"]) | set(case["test"]) == set(range(1000))  # hardtry took the first 1000


def test_hardtry_split_is_byte_identical_on_rerun(make_ctx, tmp_path):
    src = _input(tmp_path / "in.jsonl", 60)
    digests = []
    for name in ("a", "b"):
        ctx = make_ctx("convert", {"data": {"source": str(src), "split": "hardtry", "max_samples": 40,
                                            "shuffle": True, "seed": 42}}, name=name)
        out = convert.run(ctx.spec.data, ctx).outputs
        digests.append((out["train"].read_bytes(), out["test"].read_bytes()))
    assert digests[0] == digests[1]
