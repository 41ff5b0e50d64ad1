"""Generate-stage inputs: datasets save_to_disk directories (fixtures written by the datasets library
itself, tests/fixtures/hf/make_fixtures.py) read with pyarrow, local dataset dirs with splits, Hub ids
refused, and the auto / generic / custom adapters."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from registry.errors import InputDataError, UsageError
from runners.generate.adapters import DatasetAdapter, adapt, load_adapter
from runners.generate.sources import check_not_hub_id, load_source

HF = Path(__file__).parent / "fixtures" / "hf"


def _spec(**kw):
    base = {"adapter": "auto", "adapter_options": {}, "messages_field": None, "prompt_field": None,
            "response_field": None}
    return SimpleNamespace(**{**base, **kw})


def test_save_to_disk_dataset_and_datasetdict_splits():
    rows = load_source(HF / "single")
    assert [r["question"] for r in rows][:2] == ["What is 0 + 0?", "What is 1 + 1?"]
    assert rows[3]["meta"] == {"level": 1}
    train = load_source(HF / "dict", "train")
    test = load_source(HF / "dict", "test")
    assert len(train) == 5 and len(test) == 3 and test[0]["messages"][1]["content"] == "hello 0"
    prompts = adapt(test, HF / "dict", _spec())
    assert prompts[2].messages == [{"role": "user", "content": "hi 2"}] and prompts[2].reference == "hello 2"
    auto = adapt(train, HF / "dict", _spec())
    assert auto[1].messages[0]["content"] == "What is 1 + 1?" and auto[1].reference == "2"


@pytest.mark.parametrize("split, message", [
    (None, "a DatasetDict with splits ['train', 'test']; set generate.split"),
    ("validation", "no split 'validation' (splits: train, test)"),
])
def test_datasetdict_needs_a_valid_split(split, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        load_source(HF / "dict", split)


def test_local_dataset_dir_with_split_files(tmp_path):
    import pandas as pd

    (tmp_path / "data").mkdir()
    pd.DataFrame({"prompt": ["a", "b"]}).to_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "test.jsonl").write_text(json.dumps({"prompt": "c"}) + "\n")
    assert [r["prompt"] for r in load_source(tmp_path, "train")] == ["a", "b"]
    assert [r["prompt"] for r in load_source(tmp_path, "test")] == ["c"]
    with pytest.raises(UsageError, match="no files for split 'dev'"):
        load_source(tmp_path, "dev")
    with pytest.raises(UsageError, match="set generate.split"):
        load_source(tmp_path)
    with pytest.raises(UsageError, match="is a single file"):
        load_source(tmp_path / "test.jsonl", "test")


def test_hub_ids_are_refused_with_the_way_to_bring_them_here(tmp_path):
    with pytest.raises(UsageError, match=r"looks like a Hugging Face Hub id.*save_to_disk\(DIR\)"):
        check_not_hub_id("agentica-org/DeepScaleR-Preview-Dataset", tmp_path / "agentica-org/DeepScaleR")
    check_not_hub_id("data/prompts.jsonl", HF / "single")  # exists: a local path
    with pytest.raises(InputDataError, match="dataset does not exist"):
        load_source(tmp_path / "missing")


def test_generic_adapter_uses_only_the_named_fields():
    rows = [{"q": "hi", "a": "hello", "prompt": "not this one"}]
    out = adapt(rows, Path("x.json"), _spec(adapter="generic", prompt_field="q", response_field="a"))
    assert out[0].messages == [{"role": "user", "content": "hi"}] and out[0].reference == "hello"
    with pytest.raises(UsageError, match="generic needs generate.prompt_field or generate.messages_field"):
        adapt(rows, Path("x.json"), _spec(adapter="generic"))
    with pytest.raises(InputDataError, match="x.json: record 0: field 'missing' is missing"):
        adapt(rows, Path("x.json"), _spec(adapter="generic", prompt_field="missing"))
    chats = adapt([{"conv": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "r"}]}],
                  Path("x.json"), _spec(adapter="generic", messages_field="conv"))
    assert chats[0].messages == [{"role": "user", "content": "u"}] and chats[0].reference == "r"


CUSTOM = '''
from runners.generate.adapters import DatasetAdapter


class MathAdapter(DatasetAdapter):
    def messages(self, record):
        return [{"role": "system", "content": self.options.get("system", "Think.")},
                {"role": "user", "content": record["question"]}]

    def reference(self, record):
        return record.get("answer")


class NotAnAdapter:
    pass
'''


@pytest.fixture()
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "my_adapters.py").write_text(textwrap.dedent(CUSTOM))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_adapters"


def test_custom_adapter_by_dotted_path_with_options(custom_module):
    rows = load_source(HF / "dict", "train")
    spec = _spec(adapter=f"{custom_module}.MathAdapter", adapter_options={"system": "Be brief."})
    out = adapt(rows, HF / "dict", spec)
    assert out[4].messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 4 + 4?"}]
    assert out[4].reference == "8" and out[4].original["meta"] == {"level": 0}
    assert isinstance(load_adapter(f"{custom_module}:MathAdapter", {}), DatasetAdapter)
    with pytest.raises(InputDataError, match=r"record 0: adapter MathAdapter: KeyError"):
        adapt([{"nope": 1}], Path("d.jsonl"), _spec(adapter=f"{custom_module}.MathAdapter"))


@pytest.mark.parametrize("path, message", [
    ("my_adapters.NotAnAdapter", "is not a subclass of runners.generate.adapters.DatasetAdapter"),
    ("my_adapters.Missing", "cannot import 'my_adapters.Missing'"),
    ("nomodule", "is not auto, generic or a dotted path"),
])
def test_bad_custom_adapters_are_usage_errors(custom_module, path, message):
    with pytest.raises(UsageError, match=message):
        load_adapter(path, {})


def test_the_stage_reads_a_save_to_disk_split_through_a_custom_adapter(make_ctx, tiny_model_dir, custom_module):
    import torch

    from runners.generate import run
    from runners.generate.writer import read_jsonl

    torch.set_num_threads(1)
    ctx = make_ctx("generate", {"model": {"path": str(tiny_model_dir), "device": "cpu"}, "generate": {
        "dataset": str(HF / "dict"), "split": "train", "adapter": f"{custom_module}.MathAdapter",
        "adapter_options": {"system": "S"}, "num_samples": 2, "batch_size": 2, "max_new_tokens": 3}})
    result = run(ctx.spec.generate, ctx)
    rows = read_jsonl(result.outputs["data"])
    assert [r["sample_idx"] for r in rows] == [0, 1]
    assert rows[1]["messages"][:2] == [{"role": "system", "content": "S"}, {"role": "user", "content": "What is 1 + 1?"}]
    assert rows[1]["reference_response"] == "2"
    assert 0.0 <= result.metrics["generate/alpha_outside_range_fraction"] <= 1.0
    assert result.metrics["generate/alpha_gap_fallbacks"] >= 0 and "generate/alpha_max_rel_kl_gap" in result.metrics
