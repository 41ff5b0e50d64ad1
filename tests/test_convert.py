"""Convert stage (runners/convert): verl columns, determinism, splits, streaming, bad records, MLflow."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from registry.errors import InputDataError
from runners import convert
from runners.convert import reader as reader_mod
from runners.synth_data import generate_records, write_json

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"}]}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_convert(make_ctx, data: dict, name="ctx", tracker=None):
    ctx = make_ctx("convert", {"data": data}, tracker=tracker, name=name)
    return convert.run(ctx.spec.data, ctx), ctx


def read(path):
    return pq.read_table(path)


# -- columns and types, exactly as verl reads them --------------------------------------------
def test_columns_and_types_match_verl(make_ctx, tmp_path):
    src = write_json(tmp_path / "in.json", 60, seed=0)
    result, _ = run_convert(make_ctx, {"source": str(src), "max_samples": None, "test_size": 0.1})
    table = read(result.outputs["train"])
    assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert table.schema.field("data_source").type == pa.string()
    assert table.schema.field("ability").type == pa.string()
    assert table.schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert table.schema.field("reward_model").type == pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    assert table.schema.field("extra_info").type == pa.struct([
        ("split", pa.string()), ("index", pa.int64()), ("source_index", pa.int64()), ("tools", pa.string())])

    source = json.loads(src.read_text())
    rows = table.to_pylist() + read(result.outputs["test"]).to_pylist()
    assert len(rows) == 60
    for row in rows:
        rec = source[row["extra_info"]["source_index"]]
        assert row["data_source"] == "hardgen" and row["ability"] == "function_call"
        assert row["prompt"] == rec["messages"][:-1]
        assert row["reward_model"] == {"style": "rule", "ground_truth": rec["messages"][-1]["content"]}
        assert json.loads(row["extra_info"]["tools"]) == rec["tools"]
    for split in ("train", "test"):
        split_rows = [r for r in rows if r["extra_info"]["split"] == split]
        assert [r["extra_info"]["index"] for r in split_rows] == list(range(len(split_rows)))


def test_pandas_reads_like_verl(make_ctx, tmp_path):
    # verl's RLHFDataset: datasets.load_dataset("parquet") / pandas; prompt must be a list of dicts
    import pandas as pd

    result, _ = run_convert(make_ctx, {"synthetic": {"num_records": 30}})
    df = pd.read_parquet(result.outputs["train"])
    prompt = list(df.iloc[0]["prompt"])
    assert prompt[0]["role"] == "system" and isinstance(prompt[-1]["content"], str)
    assert df.iloc[0]["reward_model"]["style"] == "rule"


# -- split sizes and selection ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "max_samples", "test_size", "train", "test"),
    [(300, 200, 0.05, 190, 10), (300, None, 0.1, 270, 30), (50, 1000, 0.05, 47, 3), (100, 100, 0.07, 93, 7), (2, None, 0.5, 1, 1)],
)
def test_split_sizes(make_ctx, tmp_path, n, max_samples, test_size, train, test):
    src = write_json(tmp_path / "in.json", n, seed=0)
    result, _ = run_convert(make_ctx, {"source": str(src), "max_samples": max_samples, "test_size": test_size})
    assert read(result.outputs["train"]).num_rows == train
    assert read(result.outputs["test"]).num_rows == test
    assert result.metrics == {"convert/rows_train": train, "convert/rows_test": test}


def test_shuffle_off_keeps_the_first_records_in_order(make_ctx, tmp_path):
    src = write_json(tmp_path / "in.json", 50, seed=0)
    result, _ = run_convert(make_ctx, {"source": str(src), "max_samples": 20, "test_size": 0.1, "shuffle": False})
    assert [r["source_index"] for r in read(result.outputs["train"]).column("extra_info").to_pylist()] == list(range(18))
    assert [r["source_index"] for r in read(result.outputs["test"]).column("extra_info").to_pylist()] == [18, 19]


def test_shuffle_selects_a_seeded_sample(make_ctx, tmp_path):
    src = write_json(tmp_path / "in.json", 200, seed=0)
    picked = []
    for seed in (1, 2):
        result, _ = run_convert(make_ctx, {"source": str(src), "max_samples": 50, "seed": seed}, name=f"s{seed}")
        picked.append(sorted(r["source_index"] for r in read(result.outputs["test"]).column("extra_info").to_pylist()))
    assert picked[0] != picked[1]
    assert max(picked[0] + picked[1]) > 50  # not just the first 50 records


def test_test_size_leaving_no_train_rows_is_an_error(make_ctx, tmp_path):
    src = write_json(tmp_path / "in.json", 3, seed=0)
    with pytest.raises(InputDataError, match="leaves no training rows"):
        run_convert(make_ctx, {"source": str(src), "test_size": 0.9})


# -- determinism ------------------------------------------------------------------------------
def test_same_input_and_seed_give_byte_identical_parquet(make_ctx, tmp_path):
    src = write_json(tmp_path / "in.json", 120, seed=0)
    data = {"source": str(src), "max_samples": 80, "seed": 7, "batch_size": 16}
    a, _ = run_convert(make_ctx, data, name="a")
    b, _ = run_convert(make_ctx, data, name="b")
    for split in ("train", "test"):
        assert a.outputs[split] != b.outputs[split]
        assert a.outputs[split].read_bytes() == b.outputs[split].read_bytes()
    c, _ = run_convert(make_ctx, {**data, "seed": 8}, name="c")
    assert c.outputs["test"].read_bytes() != a.outputs["test"].read_bytes()


def test_synthetic_source_is_deterministic_and_kept(make_ctx):
    data = {"synthetic": {"num_records": 40, "seed": 3}, "max_samples": None}
    a, _ = run_convert(make_ctx, data, name="a")
    b, _ = run_convert(make_ctx, data, name="b")
    assert a.outputs["train"].read_bytes() == b.outputs["train"].read_bytes()
    assert json.loads(a.outputs["source"].read_text()) == list(generate_records(40, seed=3))


# -- input formats and streaming --------------------------------------------------------------
def test_jsonl_and_json_array_give_the_same_rows(make_ctx, tmp_path):
    records = list(generate_records(40, seed=1))
    as_array = tmp_path / "a.json"
    as_array.write_text(json.dumps(records))
    as_jsonl = write_jsonl(tmp_path / "b.jsonl", records)
    hardgen_style = write_jsonl(tmp_path / "c.json", records)  # JSONL content behind a .json name
    results = [run_convert(make_ctx, {"source": str(p)}, name=p.stem)[0] for p in (as_array, as_jsonl, hardgen_style)]
    tables = [read(r.outputs["train"]).to_pylist() for r in results]
    assert tables[0] == tables[1] == tables[2]


def test_streams_a_json_array_in_small_chunks(make_ctx, tmp_path, monkeypatch):
    src = write_json(tmp_path / "in.json", 150, seed=2)
    whole, _ = run_convert(make_ctx, {"source": str(src), "max_samples": None}, name="whole")
    monkeypatch.setattr(reader_mod, "CHUNK_CHARS", 97)  # many records span chunk borders
    seen = []
    real_iter = reader_mod.RecordReader.__iter__

    def spy(self):
        for rec in real_iter(self):
            seen.append(rec.index)
            yield rec

    monkeypatch.setattr(reader_mod.RecordReader, "__iter__", spy)
    streamed, _ = run_convert(make_ctx, {"source": str(src), "max_samples": None, "batch_size": 8}, name="streamed")
    assert seen == list(range(150)) * 2  # two passes, one record at a time
    for split in ("train", "test"):
        assert read(streamed.outputs[split]).to_pylist() == read(whole.outputs[split]).to_pylist()
    assert pq.ParquetFile(streamed.outputs["train"]).metadata.num_row_groups > 1  # written in batches


def test_memory_is_bounded_by_the_batch_not_the_file(make_ctx, tmp_path, monkeypatch):
    import mlflow.data  # noqa: F401  (imports allocate; keep them out of the measurement)
    import pandas  # noqa: F401

    monkeypatch.setattr(reader_mod, "CHUNK_CHARS", 16 * 1024)
    peaks, sizes = [], []
    for n in (200, 800):
        src = write_json(tmp_path / f"in{n}.json", n, seed=0)
        sizes.append(src.stat().st_size)
        tracemalloc.start()
        try:
            run_convert(make_ctx, {"source": str(src), "max_samples": None, "batch_size": 20}, name=f"m{n}")
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert sizes[1] > 1_200_000
    # 4x the file, about the same peak: memory follows the batch, not the file
    assert peaks[1] < 1.5 * peaks[0], (peaks, sizes)
    assert peaks[1] < sizes[1] / 2, (peaks, sizes)


def test_unknown_leading_byte_and_missing_file(make_ctx, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("hello")
    with pytest.raises(InputDataError, match="neither a JSON array"):
        run_convert(make_ctx, {"source": str(bad)})
    with pytest.raises(InputDataError, match="does not exist"):
        run_convert(make_ctx, {"source": str(tmp_path / "nope.json")})


# -- normalisation of record variants ---------------------------------------------------------
def test_tools_variants_and_structured_tool_calls(make_ctx, tmp_path):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    openai_turn = {"role": "assistant", "content": None,
                   "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}
    records = [
        {**GOOD},  # no tools
        {**GOOD, "tools": json.dumps(tools)},  # tools as a JSON string
        {"messages": [{"role": "user", "content": "q"}, openai_turn, {"role": "tool", "content": "{}"},
                      {"role": "assistant", "content": [{"type": "text", "text": "done"}]}], "tools": tools},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    result, _ = run_convert(make_ctx, {"source": str(src), "test_size": 0.3, "shuffle": False})
    rows = read(result.outputs["train"]).to_pylist() + read(result.outputs["test"]).to_pylist()
    by_source = {r["extra_info"]["source_index"]: r for r in rows}
    assert by_source[0]["extra_info"]["tools"] is None
    assert json.loads(by_source[1]["extra_info"]["tools"]) == tools
    assert by_source[2]["prompt"][1] == {"role": "assistant",
                                         "content": "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>"}
    assert by_source[2]["reward_model"]["ground_truth"] == "done"


# -- bad records: every class, with fail and with skip ----------------------------------------
BAD_LINES = {
    "no messages": (json.dumps({"conversation": []}), "has no `messages`"),
    "empty messages": (json.dumps({"messages": []}), "non-empty list"),
    "last not assistant": (json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "role is 'user'"),
    "no prompt": (json.dumps({"messages": [{"role": "assistant", "content": "x"}]}), "no prompt"),
    "bad role": (json.dumps({"messages": [{"role": "robot", "content": "x"}, GOOD["messages"][1]]}), "role is 'robot'"),
    "not an object": ("[1, 2]", "not an object"),
    "broken json": ('{"messages": [', "broken JSON"),
    "not utf-8": (b'{"messages": "\xff\xfe"}', "not UTF-8"),
    "bad tools": (json.dumps({**GOOD, "tools": 5}), "`tools` must be a list"),
}


def _file_with_bad_record(tmp_path, bad) -> tuple:
    good = json.dumps(GOOD).encode()
    bad = bad if isinstance(bad, bytes) else bad.encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([good, good, bad, good, good]) + b"\n")
    return path


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_bad_record_fails_with_file_record_and_fix(make_ctx, tmp_path, kind):
    line, reason = BAD_LINES[kind]
    src = _file_with_bad_record(tmp_path, line)
    with pytest.raises(InputDataError) as exc:
        run_convert(make_ctx, {"source": str(src), "on_error": "fail"})
    msg = str(exc.value)
    assert str(src) in msg and "record 2 (line 3)" in msg and reason in msg
    assert "on_error: skip" in msg


@pytest.mark.parametrize("kind", sorted(BAD_LINES))
def test_bad_record_is_skipped_and_logged(make_ctx, tmp_path, null_tracker, kind):
    line, reason = BAD_LINES[kind]
    src = _file_with_bad_record(tmp_path, line)
    result, _ = run_convert(make_ctx, {"source": str(src), "on_error": "skip", "test_size": 0.25})
    assert result.info["rows_train"] + result.info["rows_test"] == 4
    assert ("convert/records_skipped", 1.0, 0) in null_tracker.metrics
    skipped = json.loads(null_tracker.artifacts["convert/skipped_records.json"])
    assert skipped["count"] == 1
    assert skipped["sample"][0]["index"] == 2 and skipped["sample"][0]["line"] == 3
    assert reason in skipped["sample"][0]["reason"]
    sources = {r["source_index"] for t in ("train", "test") for r in read(result.outputs[t]).column("extra_info").to_pylist()}
    assert sources == {0, 1, 3, 4}


def test_non_utf8_record_in_a_json_array(make_ctx, tmp_path, null_tracker):
    good = json.dumps(GOOD).encode()
    src = tmp_path / "in.json"
    src.write_bytes(b"[" + b",".join([good, good, b'{"messages": "\xff"}', good]) + b"]")
    with pytest.raises(InputDataError, match="record 2: not UTF-8"):
        run_convert(make_ctx, {"source": str(src)})
    result, _ = run_convert(make_ctx, {"source": str(src), "on_error": "skip", "test_size": 0.34}, name="skip")
    assert result.info["records_skipped"] == 1


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_broken_json_array_fails_even_with_skip(make_ctx, tmp_path, on_error):
    good = json.dumps(GOOD)
    src = tmp_path / "in.json"
    src.write_text(f"[{good}, {good}, {{\"messages\": [}}, {good}]")
    with pytest.raises(InputDataError, match="broken JSON array in record 2.*JSONL"):
        run_convert(make_ctx, {"source": str(src), "on_error": on_error})


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize(("name", "content", "match"), [
    ("empty.json", "", "empty"), ("blank.jsonl", "\n\n  \n", "no records"), ("empty.json", "[ ]", "array is empty"),
])
def test_empty_inputs(make_ctx, tmp_path, on_error, name, content, match):
    src = tmp_path / name
    src.write_text(content)
    with pytest.raises(InputDataError, match=match):
        run_convert(make_ctx, {"source": str(src), "on_error": on_error})


def test_all_records_skipped_is_an_error(make_ctx, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"x": 1}, {"y": 2}, GOOD])
    with pytest.raises(InputDataError, match="only 1 valid record"):
        run_convert(make_ctx, {"source": str(src), "on_error": "skip"})


# -- token statistics -------------------------------------------------------------------------
def test_token_stats_with_a_local_tokenizer(make_ctx, null_tracker, tiny_model_dir):
    run_convert(make_ctx, {"synthetic": {"num_records": 40}, "tokenizer": str(tiny_model_dir)})
    metrics = {k: v for k, v, _ in null_tracker.metrics}
    for split in ("train", "test"):
        for kind in ("prompt", "response"):
            p = f"convert/{split}/{kind}_tokens"
            assert 0 < metrics[f"{p}_p50"] <= metrics[f"{p}_p95"] <= metrics[f"{p}_max"]
            assert metrics[f"{p}_mean"] <= metrics[f"{p}_max"]
    # prompts carry the system turn, the user turn and the tool schemas: longer than answers
    assert metrics["convert/train/prompt_tokens_mean"] > metrics["convert/train/response_tokens_mean"]
    assert metrics["convert/token_stats_template_fallbacks"] == 0


def test_token_stats_bad_dir(make_ctx, tmp_path):
    with pytest.raises(InputDataError, match="not a tokenizer directory"):
        run_convert(make_ctx, {"synthetic": {"num_records": 10}, "tokenizer": str(tmp_path)})


# -- MLflow: a real store ---------------------------------------------------------------------
def test_logs_datasets_digests_and_counts_to_mlflow(make_ctx, tmp_path, tracker):
    from runners.convert.writer import file_sha256

    records = [json.dumps(r) for r in generate_records(60, seed=0)]
    records.insert(5, '{"broken": ')
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(records) + "\n")
    result, _ = run_convert(make_ctx, {"source": str(src), "on_error": "skip", "max_samples": 40, "test_size": 0.1},
                            tracker=tracker)
    tracker.flush()
    run = tracker.client.get_run(tracker.run_id)
    assert run.data.metrics["convert/rows_train"] == 36
    assert run.data.metrics["convert/rows_test"] == 4
    assert run.data.metrics["convert/records_skipped"] == 1
    assert run.data.metrics["convert/records_read"] == 61
    params = run.data.params
    assert params["train_sha256"] == file_sha256(result.outputs["train"])
    assert params["test_sha256"] == file_sha256(result.outputs["test"])
    assert params["input_sha256"] == file_sha256(src)
    assert params["records_skipped"] == "1"

    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "test"}
    assert inputs["train"].name == "hardgen-train"
    assert inputs["train"].digest == params["train_sha256"][:32]
    assert inputs["test"].digest == params["test_sha256"][:32]
    assert str(src) in inputs["train"].source
    assert json.loads(inputs["test"].profile)["num_rows"] == 4

    local = tracker.client.download_artifacts(tracker.run_id, "convert/skipped_records.json", str(tmp_path))
    skipped = json.loads(Path(local).read_text())
    assert skipped["count"] == 1 and skipped["sample"][0]["line"] == 6


def test_describe_names_the_settings(make_ctx):
    ctx = make_ctx("convert", {"data": {"synthetic": {"num_records": 10, "seed": 4}, "seed": 9}})
    text = convert.describe(ctx.spec.data, ctx.spec)
    assert "synthetic (10 records, seed 4)" in text and "seed=9" in text


def test_external_inputs_name_the_source_file(make_ctx, tmp_path, monkeypatch):
    from pathlib import Path as P

    monkeypatch.setenv("RLREG_TEST_DATA", str(tmp_path))
    ctx = make_ctx("convert", {"data": {"source": "$RLREG_TEST_DATA/in.jsonl"}})
    assert convert.external_inputs(ctx.spec.data, P("/proj")) == {"data.source": tmp_path / "in.jsonl"}
    ctx = make_ctx("convert", {"data": {"source": "data/in.jsonl"}}, name="rel")
    assert convert.external_inputs(ctx.spec.data, P("/proj")) == {"data.source": P("/proj/data/in.jsonl")}
    ctx = make_ctx("convert", {"data": {"synthetic": {"num_records": 5}}}, name="syn")
    assert convert.external_inputs(ctx.spec.data, P("/proj")) == {}


def test_tools_in_system_prompt(make_ctx, tmp_path):
    from runners.convert.records import TOOLS_FOOTER

    records = list(generate_records(10, seed=0))
    records[0]["messages"] = records[0]["messages"][1:]  # no system turn: one is added
    src = write_jsonl(tmp_path / "in.jsonl", records)
    result, _ = run_convert(make_ctx, {"source": str(src), "tools_in_system_prompt": True, "shuffle": False,
                                       "test_size": 0.1})
    rows = read(result.outputs["train"]).to_pylist()
    first, second = rows[0], rows[1]
    assert first["prompt"][0]["role"] == "system" and first["prompt"][0]["content"].startswith("# Tools")
    assert first["prompt"][1:] == records[0]["messages"][:-1]
    system = second["prompt"][0]["content"]
    assert system.startswith(records[1]["messages"][0]["content"] + "\n\n# Tools")
    assert system.endswith(TOOLS_FOOTER)
    listed = system.split("<tools>")[2].split("</tools>")[0].strip().splitlines()  # [1]: the header text
    assert [json.loads(line) for line in listed] == records[1]["tools"]
    assert json.loads(second["extra_info"]["tools"]) == records[1]["tools"]  # kept either way
