"""The builtin SFT stage for real-model settings: epochs and gradient accumulation (step counts),
truncation, and LoRA through peft merged into a full model that the train stage consumes."""

from __future__ import annotations

import math

import pytest
import torch

import runners.convert as convert
import runners.sft as sft
from registry.spec.sft import SFTSpec
from runners.sft.data import load_examples

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}
FAST_SFT = {"batch_size": 4, "warmup_steps": 1, "eval_every": 100, "eval_samples": 4, "format_samples": 0,
            "save_every": 100, "max_length": 1024, "lr": 5e-3}


def _spec(sft_section):
    return {
        "data": {"synthetic": {"num_records": 24, "seed": 0}, "test_size": 0.25, "seed": 1},
        "model": {"tiny": TINY, "device": "cpu"},
        "reward": {"function": "think_tool_call"},
        "sft": {**FAST_SFT, **sft_section},
        "train": {"rollout": {"n": 2, "max_prompt_length": 512, "max_response_length": 8},
                  "train_batch_size": 2, "ppo_mini_batch_size": 2, "total_training_steps": 1,
                  "save_freq": -1, "test_freq": -1},
    }


@pytest.fixture()
def parquets(make_ctx):
    ctx = make_ctx("convert", _spec({}), name="data")
    out = convert.run(ctx.spec.data, ctx).outputs
    return {"convert.train": out["train"], "convert.test": out["test"]}


def test_epochs_set_the_step_count_from_rows_batch_and_grad_accum():
    spec = SFTSpec(epochs=2, batch_size=4, grad_accum=2, warmup_steps=1)
    assert sft.total_steps(spec, 18) == math.ceil(2 * 18 / 8) == 5
    assert sft.total_steps(SFTSpec(epochs=0.5, batch_size=4, warmup_steps=0), 18) == 3
    assert sft.total_steps(SFTSpec(max_steps=7, warmup_steps=1), 18) == 7, "without epochs, max_steps"
    cosine = sft.lr_lambda(spec, 5)
    assert cosine(5) == pytest.approx(0.0, abs=1e-12), "cosine reaches 0 at the epoch-derived end"
    SFTSpec(epochs=1, max_steps=5, warmup_steps=10)  # warmup is checked against the run's steps at run time


def test_run_with_epochs_and_grad_accum_logs_every_step(make_ctx, parquets, null_tracker):
    ctx = make_ctx("sft", _spec({"epochs": 2, "grad_accum": 2}), inputs=parquets)
    result = sft.run(ctx.spec.sft, ctx)
    rows = result.info["train_examples"]
    assert rows == 18
    expected = math.ceil(2 * rows / (4 * 2))
    assert result.info["steps"] == expected
    assert [s for k, _, s in null_tracker.metrics if k == "sft/loss"] == list(range(1, expected + 1))


def test_warmup_longer_than_the_epoch_run_is_a_usage_error(make_ctx, parquets):
    from registry.errors import UsageError

    ctx = make_ctx("sft", _spec({"epochs": 1, "batch_size": 16, "warmup_steps": 5}), inputs=parquets)
    with pytest.raises(UsageError, match="warmup_steps"):
        sft.run(ctx.spec.sft, ctx)


def test_truncation_cuts_instead_of_skipping(parquets, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    full, _ = load_examples(parquets["convert.train"], tok, max_length=4096, train_on="all_assistant")
    limit = sorted(len(e.input_ids) for e in full)[len(full) // 2]
    deleted, skipped = load_examples(parquets["convert.train"], tok, max_length=limit, train_on="all_assistant")
    assert skipped > 0 and all(len(e.input_ids) <= limit for e in deleted)
    for side in ("left", "right"):
        cut, skipped_cut = load_examples(parquets["convert.train"], tok, max_length=limit, train_on="all_assistant", truncation=side)
        assert len(cut) + skipped_cut == len(full) and len(cut) > len(deleted)
        assert all(len(e.input_ids) <= limit and any(e.loss_mask) for e in cut)
        long = next(i for i, e in enumerate(full) if len(e.input_ids) > limit)
        original = full[long].input_ids
        kept = next(e for e in cut if e.ground_truth == full[long].ground_truth and e.prompt == full[long].prompt)
        assert kept.input_ids == (original[-limit:] if side == "left" else original[:limit])


def test_lora_sft_merges_into_a_full_model_the_train_stage_consumes(make_ctx, parquets, null_tracker):
    from transformers import AutoModelForCausalLM

    from runners.modeling import resolve_base_model
    from runners.train import run as train_run

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    ctx = make_ctx("sft", _spec({"max_steps": 4, "lora": lora}), inputs=parquets)
    result = sft.run(ctx.spec.sft, ctx)
    out = result.outputs["model"]
    assert result.info["lora"] is True
    assert not (out / "adapter_config.json").exists(), "merged: a plain model dir, not an adapter"
    merged = AutoModelForCausalLM.from_pretrained(out)
    base_dir = resolve_base_model(ctx.spec.model, train_parquet=parquets["convert.train"], cache_dir=ctx.work_dir / "base",
                                  resolve_path=ctx.resolve_path)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    merged_sd, base_sd = merged.state_dict(), base.state_dict()
    assert merged_sd.keys() == base_sd.keys(), "no lora_A/lora_B or base_layer keys left"
    changed = {k for k in base_sd if not torch.equal(base_sd[k], merged_sd[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) and k.endswith("weight") for k in changed), changed
    trainable = int(null_tracker.tags["sft.trainable_params"])
    assert 0 < trainable < sum(p.numel() for p in base.parameters()) / 5

    train_ctx = make_ctx("train", ctx.spec, inputs={"convert.train": parquets["convert.train"], "sft.model": out}, name="rl")
    trained = train_run(train_ctx.spec.train, train_ctx)
    assert trained.metrics["train/steps"] == 1
    assert AutoModelForCausalLM.from_pretrained(trained.outputs["model"]).config.hidden_size == TINY["hidden_size"]


def test_missing_peft_is_a_clear_error(monkeypatch):
    import sys

    from registry.errors import MissingExtra
    from registry.spec.sft import LoraSpec
    from runners.sft import lora

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingExtra, match=r"peft.*rl-registry\[lora\]"):
        lora.wrap(torch.nn.Linear(2, 2), LoraSpec())
