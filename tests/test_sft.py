"""SFT stage: batching, schedule, masked loss, a real run on the convert stage's parquet, resume."""

from __future__ import annotations

import math

import pytest
import torch

import runners.convert as convert
import runners.sft as sft
from registry.errors import InputDataError
from registry.spec.sft import SFTSpec
from runners.sft.data import BatchPlan, collate, load_examples

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}
FAST_SFT = {"max_steps": 4, "batch_size": 4, "warmup_steps": 1, "eval_every": 2, "eval_samples": 4,
            "format_samples": 3, "save_every": 2, "max_length": 1024}


def _spec(sft_overrides=None):
    return {
        "data": {"synthetic": {"num_records": 24, "seed": 0}, "test_size": 0.25, "seed": 1},
        "model": {"tiny": TINY, "device": "cpu"},
        "sft": {**FAST_SFT, **(sft_overrides or {})},
    }


@pytest.fixture()
def parquets(make_ctx):
    ctx = make_ctx("convert", _spec(), name="data")
    out = convert.run(ctx.spec.data, ctx).outputs
    return {"convert.train": out["train"], "convert.test": out["test"]}


def test_batch_plan_is_deterministic_epoch_complete_and_groups_lengths():
    lengths = [5, 100, 7, 90, 6, 95, 8, 99, 4, 97, 3, 91]
    plan = BatchPlan(lengths, seed=3, batch_size=2, micro_batches=3, group_by_length=False)
    again = BatchPlan(lengths, seed=3, batch_size=2, micro_batches=3, group_by_length=False)
    steps = [plan.step(s) for s in range(4)]
    assert steps == [again.step(s) for s in range(4)]
    assert all(len(step) == 3 and all(len(mb) == 2 for mb in step) for step in steps)
    flat = [i for step in steps for mb in step for i in mb]
    assert sorted(flat[:12]) == list(range(12)) and sorted(flat[12:]) == list(range(12)), "each epoch covers every example once"
    assert flat[:12] != flat[12:], "a new permutation per epoch"
    grouped = BatchPlan(lengths, seed=3, batch_size=2, micro_batches=1, group_by_length=True)
    padded = lambda p: sum(max(lengths[i] for i in p.step(s)[0]) * 2 for s in range(6))  # noqa: E731
    ungrouped = BatchPlan(lengths, seed=3, batch_size=2, micro_batches=1, group_by_length=False)
    assert padded(grouped) < padded(ungrouped)
    assert sorted(i for s in range(6) for i in grouped.step(s)[0]) == list(range(12))


def test_lr_schedule_warmup_then_cosine_or_constant():
    cosine = sft.lr_lambda(SFTSpec(max_steps=12, warmup_steps=2, schedule="cosine"))
    assert [cosine(0), cosine(1)] == [0.5, 1.0]
    assert cosine(2) == 1.0 and cosine(7) == pytest.approx(0.5) and cosine(12) == pytest.approx(0.0, abs=1e-12)
    constant = sft.lr_lambda(SFTSpec(max_steps=12, warmup_steps=2, schedule="constant"))
    assert constant(0) == 0.5 and constant(11) == 1.0
    with pytest.raises(ValueError, match="warmup_steps"):
        SFTSpec(max_steps=5, warmup_steps=5)


def test_masked_loss_counts_only_assistant_tokens(parquets, tiny_model_dir):
    from runners.modeling import load_model

    model, tok = load_model(tiny_model_dir, device="cpu")
    examples = load_examples(parquets["convert.train"], tok, max_length=1024, train_on="last_assistant")[0][:3]
    batch = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        loss, count = sft.masked_loss_sum(model, batch, torch.autocast("cpu", enabled=False))
        # Same value as the full-logits computation, restricted to assistant positions.
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    assert count == sum(sum(e.loss_mask[1:]) for e in examples)
    full = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), reduction="sum")
    assert float(loss) == pytest.approx(float(full), rel=1e-5)
    # Labels are the token ids exactly on assistant tokens and -100 elsewhere (prompt and padding).
    for row, e in enumerate(examples):
        labels = batch["labels"][row]
        expected = [t if m else -100 for t, m in zip(e.input_ids, e.loss_mask)]
        assert labels[: len(e.input_ids)].tolist() == expected and labels[len(e.input_ids):].eq(-100).all()
        assert 0 < sum(e.loss_mask) < len(e.input_ids)


def test_run_trains_logs_and_writes_a_loadable_model(make_ctx, parquets, null_tracker):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ctx = make_ctx("sft", _spec(), inputs=parquets)
    result = sft.run(ctx.spec.sft, ctx)
    out = result.outputs["model"]
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 32
    assert AutoTokenizer.from_pretrained(out).chat_template
    losses = [(s, v) for k, v, s in null_tracker.metrics if k == "sft/loss"]
    assert [s for s, _ in losses] == [1, 2, 3, 4] and all(math.isfinite(v) for _, v in losses)
    evals = [(s, v) for k, v, s in null_tracker.metrics if k == "sft/eval_loss"]
    assert [s for s, _ in evals[:3]] == [0, 2, 4] and evals[2][1] < evals[0][1], "eval loss falls from the random init"
    assert {"sft/lr", "sft/grad_norm", "sft/tokens_per_s"} <= {k for k, _, _ in null_tracker.metrics}
    assert set(result.metrics) == {"sft/final_loss", "sft/eval_loss", "sft/format_rate", "sft/reward_rate"}
    assert 0.0 <= result.metrics["sft/format_rate"] <= 1.0
    assert len(null_tracker.artifacts["sft_samples.json"]) == 3
    assert result.info["train_examples"] + result.info["skipped_too_long"] == 18
    assert result.info["resumed_from_step"] is None


def test_rerun_after_a_crash_resumes_and_matches_an_uninterrupted_run(make_ctx, parquets, monkeypatch):
    from safetensors.torch import load_file

    from registry.tracking import NullTracker

    straight = make_ctx("sft", _spec(), inputs=parquets, name="straight", tracker=NullTracker())
    reference = load_file(str(sft.run(straight.spec.sft, straight).outputs["model"] / "model.safetensors"))

    crashing = NullTracker()
    real_log = crashing.log_metrics

    def crash_at_step_3(metrics, step=None):
        if step == 3:
            raise RuntimeError("simulated crash")
        real_log(metrics, step)

    monkeypatch.setattr(crashing, "log_metrics", crash_at_step_3)
    ctx = make_ctx("sft", _spec(), inputs=parquets, name="crash", tracker=crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sft.run(ctx.spec.sft, ctx)
    assert (ctx.work_dir / "sft_checkpoints" / "step_2.pt").is_file()

    rerun_tracker = NullTracker()
    rerun = make_ctx("sft", _spec(), inputs=parquets, name="crash", tracker=rerun_tracker)
    result = sft.run(rerun.spec.sft, rerun)
    assert result.info["resumed_from_step"] == 2 and rerun_tracker.tags["sft.resumed_from_step"] == "2"
    assert [s for k, _, s in rerun_tracker.metrics if k == "sft/loss"] == [3, 4], "curves continue, not restart"
    resumed = load_file(str(result.outputs["model"] / "model.safetensors"))
    assert all(torch.equal(reference[k], resumed[k]) for k in reference), "resume is exact"


def test_overlong_rows_are_skipped_not_truncated(parquets, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    everything, none_skipped = load_examples(parquets["convert.train"], tok, max_length=10**6, train_on="all_assistant")
    lengths = sorted(len(e.input_ids) for e in everything)
    limit = lengths[len(lengths) // 2]
    kept, skipped = load_examples(parquets["convert.train"], tok, max_length=limit, train_on="all_assistant")
    assert none_skipped == 0 and skipped > 0 and len(kept) + skipped == len(everything)
    assert all(len(e.input_ids) <= limit and e.loss_mask[-2] == 1 for e in kept), "answers kept whole"
    with pytest.raises(InputDataError, match=r"train\.parquet: all \d+ rows are longer than sft.max_length=5"):
        load_examples(parquets["convert.train"], tok, max_length=5, train_on="all_assistant")


def test_parquet_without_convert_columns_is_a_clear_error(make_ctx, tmp_path):
    import pandas as pd

    bad = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["hello"]}).to_parquet(bad)
    ctx = make_ctx("sft", _spec(), inputs={"convert.train": bad})
    with pytest.raises(InputDataError, match=r"train\.parquet: missing column"):
        sft.run(ctx.spec.sft, ctx)


@pytest.mark.slow
def test_sft_model_emits_the_think_tool_call_format(sft_model_dir):
    from runners.modeling import load_model, render_prompt
    from runners.reward import parse_tool_calls, split_think
    from runners.sft.format_check import greedy_answers
    from runners.synth_data import generate_records

    model, tok = load_model(sft_model_dir, device="cpu")
    records = list(generate_records(12, seed=99))  # prompts the fixture never trained on
    answers = greedy_answers(model, tok, [(r["messages"][:-1], r["tools"]) for r in records], max_new_tokens=192, batch_size=12)
    assert render_prompt(tok, records[0]["messages"][:-1], records[0]["tools"]).endswith("<|im_start|>assistant\n")
    formatted = [a for a in answers if (p := split_think(a)) is not None and parse_tool_calls(p[1])]
    assert len(formatted) >= 7, answers  # an untrained model formats none
