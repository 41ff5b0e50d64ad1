"""runners.modeling: tiny model builder, chat template, assistant masks, loading, base-model resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from registry.errors import InputDataError, UsageError
from registry.spec.model import ModelSpec, TinyModelSpec
from runners.modeling import (
    FORMAT_TOKENS,
    IM_END,
    build_tiny_model,
    load_model,
    render_conversation,
    render_prompt,
    render_record_text,
    resolve_base_model,
)
from runners.synth_data import generate_records

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}]
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    {"role": "tool", "content": '{"temp": 3}'},
    {"role": "tool", "content": '{"wind": 9}'},
    {"role": "assistant", "content": "<think>Cold.</think>\n\n<tool_call>\n{\"name\": \"get_weather\", "
     "\"arguments\": {\"city\": \"Bergen\"}}\n</tool_call>"},
]


def write_verl_parquet(records: list[dict], path: Path) -> Path:
    """The convert stage's columns (domain.md §1) for records of OpenAI messages + tools."""
    rows = [{
        "data_source": "synthetic", "prompt": r["messages"][:-1], "ability": "function_call",
        "reward_model": {"style": "rule", "ground_truth": r["messages"][-1]["content"]},
        "extra_info": {"split": "train", "index": i, "tools": json.dumps(r.get("tools") or [])},
    } for i, r in enumerate(records)]
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_build_is_deterministic_and_seeded(tmp_path):
    texts = [render_record_text({"messages": r["messages"][:-1], "ground_truth": r["messages"][-1]["content"],
                                 "tools": r["tools"]}) for r in generate_records(20, seed=1)]
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, vocab_size=400)
    a = build_tiny_model(spec, texts, tmp_path / "a")
    b = build_tiny_model(spec, texts, tmp_path / "b")
    c = build_tiny_model(spec.model_copy(update={"seed": 1}), texts, tmp_path / "c")
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (c / "tokenizer.json").read_bytes()
    assert not list(tmp_path.glob(".a.*")), "temp build dirs are cleaned up"


def test_tiny_dir_loads_with_auto_classes(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = GenerationConfig.from_pretrained(tiny_model_dir)
    assert model.config.vocab_size == len(tok)
    assert gen.eos_token_id == tok.convert_tokens_to_ids(IM_END) == tok.eos_token_id
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    for token in ("<|im_start|>", IM_END, "<|endoftext|>", *FORMAT_TOKENS):
        ids = tok.encode(token, add_special_tokens=False)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == token
    # The format tokens survive skip_special_tokens (the reward parser needs them), control tokens do not.
    text = "<think>a</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>"
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) == text[: -len(IM_END)]
    # Round trip of arbitrary text through the saved tokenizer (NFC-normalised input).
    sample = 'Héllo  wörld\n\n{"a": [1, 2.5]}  123456 \t end'
    assert tok.decode(tok.encode(sample, add_special_tokens=False)) == sample


def test_llama_architecture_builds_and_keeps_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = TinyModelSpec(architecture="llama", hidden_size=32, num_layers=1, num_heads=2, vocab_size=300)
    out = build_tiny_model(spec, ["get_weather city Oslo <think>x</think>"] * 5, tmp_path / "llama")
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "llama"
    tok = AutoTokenizer.from_pretrained(out)
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    s = "get_weather city Oslo <think>x</think> ünï 42"
    assert tok.encode(s, add_special_tokens=False) == raw.encode(s).ids


def test_chat_template_renders_tools_think_tool_turns(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = render_prompt(tok, CHAT[:-1], json.dumps(TOOLS))
    assert prompt.startswith(
        "<|im_start|>system\nBe brief.\n# Tools\n- get_weather(city: string, unit?: string in c|f): Weather for a city.<|im_end|>\n"
    )
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>' in prompt
    # Two consecutive tool turns share one user turn, each wrapped in <tool_response>.
    assert "<|im_start|>user\n<tool_response>\n{\"temp\": 3}\n</tool_response>\n<tool_response>\n{\"wind\": 9}\n</tool_response><|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert render_prompt(tok, CHAT[1:2]) == "<|im_start|>user\nWeather in Oslo?<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("train_on", ["all_assistant", "last_assistant"])
def test_render_conversation_masks_assistant_turns(tiny_model_dir, train_on):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids, mask = render_conversation(tok, CHAT, TOOLS, train_on=train_on)
    assert len(ids) == len(mask)
    prompt_ids = tok.encode(render_prompt(tok, CHAT[:-1], TOOLS), add_special_tokens=False)
    assert ids[: len(prompt_ids)] == prompt_ids, "the prompt tokenizes exactly as at generation time"
    trained = tok.decode([i for i, m in zip(ids, mask) if m])
    final = CHAT[-1]["content"] + IM_END
    if train_on == "last_assistant":
        assert trained == final
        assert sum(mask[: len(prompt_ids)]) == 0
    else:
        assert trained.endswith(final) and trained.startswith("<tool_call>\n{\"name\": \"get_weather\"")
    assert tok.decode(ids[len(prompt_ids):]) == final + "\n"
    short_ids, short_mask = render_conversation(tok, CHAT, TOOLS, max_length=10)
    assert short_ids == ids[:10] and len(short_mask) == 10


def test_load_model_pads_left_and_generates(tiny_model_dir):
    import torch

    model, tok = load_model(tiny_model_dir, dtype="float32", device="cpu")
    assert tok.padding_side == "left" and not model.training
    batch = tok([render_prompt(tok, CHAT[1:2]), render_prompt(tok, CHAT[:2], TOOLS)], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    width = batch["input_ids"].shape[1]
    assert out.shape[0] == 2 and width < out.shape[1] <= width + 3
    # Left padding: the shorter prompt's pads come first, so both prompts end where generation starts.
    assert batch["input_ids"][0, 0] == tok.pad_token_id and batch["attention_mask"][0, -1] == 1


def test_resolve_path_model_validates(tmp_path, tiny_model_dir):
    resolve = lambda p: Path(p)  # noqa: E731
    spec = ModelSpec(path=str(tiny_model_dir))
    assert resolve_base_model(spec, train_parquet=None, cache_dir=tmp_path, resolve_path=resolve) == tiny_model_dir
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no config.json"):
        resolve_base_model(ModelSpec(path=str(tmp_path / "empty")), train_parquet=None, cache_dir=tmp_path, resolve_path=resolve)
    with pytest.raises(InputDataError, match="does not exist"):
        resolve_base_model(ModelSpec(path=str(tmp_path / "nope")), train_parquet=None, cache_dir=tmp_path, resolve_path=resolve)


def test_resolve_tiny_builds_once_from_parquet(tmp_path):
    from transformers import AutoTokenizer

    parquet = write_verl_parquet(list(generate_records(16, seed=3)), tmp_path / "train.parquet")
    spec = ModelSpec(tiny=TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, vocab_size=400))
    kw = dict(train_parquet=parquet, cache_dir=tmp_path / "cache", resolve_path=Path)
    first = resolve_base_model(spec, **kw)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(spec, **kw) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp, "reused, not rebuilt"
    tok = AutoTokenizer.from_pretrained(first)
    # The tokenizer learnt the data: a tool name is a handful of tokens, not one per byte.
    assert len(tok.encode("get_weather", add_special_tokens=False)) <= 4
    other = resolve_base_model(spec.model_copy(update={"tiny": TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, vocab_size=400, seed=5)}), **kw)
    assert other != first
    with pytest.raises(UsageError, match="convert stage"):
        resolve_base_model(spec, train_parquet=None, cache_dir=tmp_path, resolve_path=Path)


def test_bad_parquet_names_the_file(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"prompt": [[{"role": "user", "content": "x"}]]}).to_parquet(bad)
    spec = ModelSpec(tiny=TinyModelSpec(vocab_size=300))
    with pytest.raises(InputDataError, match=r"bad\.parquet: missing column"):
        resolve_base_model(spec, train_parquet=bad, cache_dir=tmp_path, resolve_path=Path)


def test_cpu_threads_applies_only_when_set():
    import torch

    from runners.modeling import apply_cpu_threads

    before = torch.get_num_threads()
    try:
        apply_cpu_threads(ModelSpec(path="x", device="cpu"))
        assert torch.get_num_threads() == before
        apply_cpu_threads(ModelSpec(path="x", device="cpu", cpu_threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_bad_tools_json_names_the_row(tmp_path):
    records = list(generate_records(2, seed=0))
    parquet = write_verl_parquet(records, tmp_path / "train.parquet")
    frame = pd.read_parquet(parquet)
    frame.at[1, "extra_info"] = {**frame.at[1, "extra_info"], "tools": "[{not json"}
    frame.to_parquet(parquet)
    with pytest.raises(InputDataError, match=r"train\.parquet: row 1: extra_info\.tools is not a JSON list"):
        resolve_base_model(ModelSpec(tiny=TinyModelSpec(vocab_size=300)), train_parquet=parquet,
                           cache_dir=tmp_path, resolve_path=Path)
