"""Generate stage I/O without models: dataset adapters (JSON/JSONL/parquet, field detection, errors)
and the resumable writer (torn lines, orphan diagnostics)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from registry.errors import InputDataError
from runners.generate.datasets import load_records, to_prompt_records
from runners.generate.writer import SampleWriter, read_jsonl


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_messages_records_split_off_the_reference_answer(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "ref"}], "id": 7, "tools": [{"name": "f"}]},
    ])
    [rec] = to_prompt_records(load_records(path), path)
    assert [m["role"] for m in rec.messages] == ["system", "user"]
    assert rec.reference == "ref" and rec.tools == [{"name": "f"}] and rec.original["id"] == 7


@pytest.mark.parametrize("field", ["prompt", "question", "instruction", "problem"])
def test_prompt_text_fields_are_auto_detected(tmp_path, field):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{field: "What is 2+2?", "answer": "4"}]))
    [rec] = to_prompt_records(load_records(path), path)
    assert rec.messages == [{"role": "user", "content": "What is 2+2?"}]
    assert rec.reference == "4"


def test_named_fields_override_detection(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ignored", "q": "use me", "gold": "g"}])
    [rec] = to_prompt_records(load_records(path), path, prompt_field="q", response_field="gold")
    assert rec.messages[0]["content"] == "use me" and rec.reference == "g"


def test_verl_parquet_from_the_convert_stage(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame([{
        "data_source": "hardgen", "ability": "function_call",
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "call f"}],
        "reward_model": {"style": "rule", "ground_truth": "<tool_call>x</tool_call>"},
        "extra_info": {"split": "train", "index": 0, "tools": json.dumps([{"name": "f"}])},
    }]).to_parquet(path)
    [rec] = to_prompt_records(load_records(path), path)
    assert rec.messages[-1] == {"role": "user", "content": "call f"}
    assert rec.reference == "<tool_call>x</tool_call>" and rec.tools == [{"name": "f"}]
    json.dumps(rec.original)  # numpy values became JSON-able


def test_bad_records_name_the_file_record_and_fix(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok"}, {"body": "no prompt here"}])
    with pytest.raises(InputDataError, match=r"d.jsonl: record 1: no prompt field found.*prompt_field"):
        to_prompt_records(load_records(path), path)
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(InputDataError, match="b.jsonl: line 2: not valid JSON"):
        load_records(broken)
    with pytest.raises(InputDataError, match="does not exist"):
        load_records(tmp_path / "missing.json")


def test_writer_resumes_after_a_torn_line_and_drops_orphan_diagnostics(tmp_path):
    data, diag = tmp_path / "g.jsonl", tmp_path / "g.diagnostics.jsonl"
    w = SampleWriter(data, diag)
    w.write_batch([{"sample_idx": 0}, {"sample_idx": 1}], [{"sample_idx": 0}, {"sample_idx": 1}])
    # a crash mid-batch: diagnostics of 2 and 3 written, data of 2 torn, 3 never written
    with open(diag, "a") as fh:
        fh.write('{"sample_idx": 2}\n{"sample_idx": 3}\n')
    with open(data, "a") as fh:
        fh.write('{"sample_idx": 2, "mess')
    w2 = SampleWriter(data, diag)
    assert w2.done == {0, 1}
    assert [r["sample_idx"] for r in read_jsonl(data)] == [0, 1]
    assert [r["sample_idx"] for r in read_jsonl(diag)] == [0, 1]
    w2.write_batch([{"sample_idx": 2}], [{"sample_idx": 2}])
    assert [r["sample_idx"] for r in read_jsonl(data)] == [0, 1, 2]


def test_writer_refuses_a_hand_broken_file(tmp_path):
    data = tmp_path / "g.jsonl"
    data.write_text('{"sample_idx": 0}\nnot json\n')
    with pytest.raises(InputDataError, match="delete the file to start over"):
        SampleWriter(data, tmp_path / "d.jsonl")
