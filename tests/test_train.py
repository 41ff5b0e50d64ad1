"""The builtin train stage end to end on a tiny warm-started model: metrics in a real MLflow store,
artifacts and checkpoint layout, resume after a crash, bad input, and (slow) that GRPO and EGPO
both learn."""

from __future__ import annotations

import json

import _train_task as task
import pytest
import torch

from registry.errors import InputDataError
from runners.train import run
from runners.train.rollout import RolloutBatch, response_mask_from

VERL_KEYS = [
    "critic/score/mean", "critic/advantages/mean", "critic/advantages/std", "actor/pg_loss", "actor/kl_loss",
    "actor/pg_clipfrac", "actor/grad_norm", "actor/lr", "actor/entropy", "response_length/mean",
    "response_length/max", "response_length/clip_ratio", "perf/throughput", "train/reward_mean",
    "egpo/bonus_mean", "egpo/bonus_clip_frac",
]


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    torch.set_num_threads(1)
    return task.cached_task(tmp_path_factory)


def _new_run(client):
    exp = client.get_experiment_by_name("train-tests") or client.get_experiment(client.create_experiment("train-tests"))
    from registry.tracking import Tracker

    return Tracker(client, client.create_run(exp.experiment_id).info.run_id)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def test_two_steps_log_metrics_checkpoints_and_outputs(warm, make_ctx, tracker):
    parquet, model_dir = warm
    spec = task.train_spec("egpo", total_training_steps=2, save_freq=1, test_freq=2, val_max_prompts=4)
    inputs = {"convert.train": parquet, "convert.test": parquet, "sft.model": model_dir}
    ctx = make_ctx("train", spec, inputs=inputs, tracker=tracker)
    result = run(ctx.spec.train, ctx)
    tracker.flush()

    client = tracker.client
    for key in VERL_KEYS:
        assert [s for s, _ in _history(client, tracker.run_id, key)] == [1, 2], key
    entropy = _history(client, tracker.run_id, "actor/entropy")
    history = json.loads((ctx.out_dir / "entropy_history.json").read_text())
    assert history == [{"step": s, "entropy": pytest.approx(v, rel=1e-6)} for s, v in entropy]
    assert all(0 < h["entropy"] < 10 for h in history)

    ckpt = ctx.work_dir / "checkpoints"
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == "2"
    for step in (1, 2):
        assert (ckpt / f"global_step_{step}" / "model" / "config.json").is_file()
        assert (ckpt / f"global_step_{step}" / "model" / "tokenizer_config.json").is_file()
        assert (ckpt / f"global_step_{step}" / "trainer_state.pt").is_file()
    assert (result.outputs["checkpoints"] / "global_step_2" / "model" / "model.safetensors").is_file()
    final = result.outputs["model"]
    from runners.modeling import load_model

    policy, _ = load_model(final, "float32", "cpu")
    step2, _ = load_model(ckpt / "global_step_2" / "model", "float32", "cpu")
    assert all(torch.equal(a, b) for a, b in zip(policy.parameters(), step2.parameters()))
    rewards = [v for _, v in _history(client, tracker.run_id, "train/reward_mean")]
    assert result.metrics["train/reward_mean_first"] == pytest.approx(rewards[0])
    assert result.metrics["train/reward_mean_last"] == pytest.approx(rewards[-1])
    assert result.metrics["actor/entropy_last"] == pytest.approx(entropy[-1][1], rel=1e-6)
    assert result.metrics["train/steps"] == 2
    val = _history(client, tracker.run_id, "val/reward_mean")
    assert [s for s, _ in val] == [2] and 0 <= val[0][1] <= 1
    assert result.metrics["val/reward_mean_last"] == pytest.approx(val[0][1])
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"entropy_history.json", "metrics_history.jsonl"} <= artifacts


def test_crash_then_rerun_resumes_and_continues_the_curves(warm, make_ctx, tracker, monkeypatch):
    from runners.train import loop

    parquet, model_dir = warm
    inputs = {"convert.train": parquet, "sft.model": model_dir}
    spec = task.train_spec("grpo", total_training_steps=3, save_freq=2)

    # Reference: the same training without a crash.
    full_ctx = make_ctx("train", spec, inputs=inputs, name="full")
    full = run(full_ctx.spec.train, full_ctx)
    full_steps = {}
    for key, value, step in full_ctx.tracker.metrics:
        full_steps.setdefault(step, {})[key] = value

    # Crash in step 3 (after the step-2 checkpoint), while generating.
    real_generate = loop.generate_rollouts
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected crash")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(loop, "generate_rollouts", crashing)
    first = make_ctx("train", spec, inputs=inputs, name="crash", tracker=tracker)
    with pytest.raises(RuntimeError, match="injected crash"):
        run(first.spec.train, first)
    tracker.flush()
    monkeypatch.setattr(loop, "generate_rollouts", real_generate)
    assert (first.work_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text() == "2"

    # Rerun: same work_dir, a new MLflow run.
    second_tracker = _new_run(tracker.client)
    second = make_ctx("train", spec, inputs=inputs, name="crash", tracker=second_tracker)
    result = run(second.spec.train, second)
    second_tracker.flush()
    client = tracker.client
    assert client.get_run(second_tracker.run_id).data.tags["rlreg.resumed_from_step"] == "2"
    assert result.info["resumed_from_step"] == 2
    for key in ("critic/score/mean", "actor/entropy", "actor/pg_loss"):
        crashed = _history(client, tracker.run_id, key)
        resumed = _history(client, second_tracker.run_id, key)
        assert [s for s, _ in crashed] == [1, 2]
        assert [s for s, _ in resumed] == [1, 2, 3], key
        assert [v for _, v in resumed[:2]] == pytest.approx([v for _, v in crashed])  # re-logged as it was
        # the resumed step 3 is the step the uninterrupted run took (same data, RNG, optimizer)
        assert resumed[2][1] == pytest.approx(full_steps[3][key], rel=1e-4, abs=1e-6), key
    assert len(json.loads((second.out_dir / "entropy_history.json").read_text())) == 3
    from runners.modeling import load_model

    a, _ = load_model(full.outputs["model"], "float32", "cpu")
    b, _ = load_model(result.outputs["model"], "float32", "cpu")
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.parameters(), b.parameters()))


def test_bad_inputs_are_named(warm, make_ctx, tmp_path):
    import pandas as pd

    parquet, model_dir = warm
    broken = tmp_path / "broken.parquet"
    pd.DataFrame([{"prompt": [{"role": "user", "content": "hi"}]}]).to_parquet(broken)
    ctx = make_ctx("train", task.train_spec(), inputs={"convert.train": broken, "sft.model": model_dir})
    with pytest.raises(InputDataError, match=r"broken\.parquet.*reward_model.*convert stage"):
        run(ctx.spec.train, ctx)
    ctx = make_ctx("train", task.train_spec(train_batch_size=32, ppo_mini_batch_size=32),
                   inputs={"convert.train": parquet, "sft.model": model_dir}, name="big")
    with pytest.raises(InputDataError, match="fewer than train_batch_size=32.*lower train.train_batch_size"):
        run(ctx.spec.train, ctx)


def test_response_mask_and_reward_placement():
    EOS, PAD = 9, 0
    responses = torch.tensor([[5, 6, EOS, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]])
    mask, truncated = response_mask_from(responses, {EOS})
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert truncated.tolist() == [False, True, False]
    batch = RolloutBatch(
        input_ids=torch.cat([torch.ones(3, 2, dtype=torch.long), responses], 1), attention_mask=torch.ones(3, 6),
        response_mask=mask, prompt_length=2, group_ids=[0, 0, 0], ground_truths=[None] * 3, texts=[""] * 3,
        truncated=truncated, prompt_tokens=torch.full((3,), 2), generate_seconds=0.0, scores=torch.tensor([1.0, 0.5, 2.0]),
    )
    assert batch.token_level_rewards().tolist() == [[0, 0, 1, 0], [0, 0, 0, 0.5], [2, 0, 0, 0]]


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["grpo", "egpo"])
def test_rl_lifts_the_reward(warm, make_ctx, estimator):
    """Before RL the warm model picks the rewarded tool ≈ 1 time in 4; after 10 steps it should
    clearly prefer it (measured on 64 fresh samples, not on the training batches)."""
    parquet, model_dir = warm
    spec = task.train_spec(estimator, total_training_steps=10)
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir}, name=estimator)
    result = run(ctx.spec.train, ctx)
    before = task.sampled_reward(model_dir)
    after = task.sampled_reward(result.outputs["model"])
    assert 0.05 < before < 0.5
    assert after >= before + 0.25, (before, after)
    rewards = [v for k, v, _ in ctx.tracker.metrics if k == "train/reward_mean"]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:2]) / 2


def test_egpo_token_with_response_scope_and_micro_batches(warm, make_ctx):
    parquet, model_dir = warm
    spec = task.train_spec("egpo_token", total_training_steps=1, micro_batch_size=3,
                           algorithm={"entropy_scope": "response", "loss_agg_mode": "seq-mean-token-mean",
                                      "entropy_coeff": 0.001})
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir})
    result = run(ctx.spec.train, ctx)
    logged = {k: v for k, v, _ in ctx.tracker.metrics}
    assert logged["egpo/empty_scope_frac"] == 0.0  # the response scope is never empty
    assert logged["egpo/bonus_mean"] >= 0.0
    assert "actor/entropy_loss" in logged and logged["actor/grad_norm"] > 0
    assert result.metrics["train/steps"] == 1


def test_generation_in_chunks_equals_one_batch(warm):
    from runners.modeling import load_model, render_prompt
    from runners.train.prompts import load_prompts
    from runners.train.rollout import generate_rollouts

    parquet, model_dir = warm
    model, tok = load_model(model_dir, "float32", "cpu")
    prompts = load_prompts(parquet, tok, render_prompt, 64)[0][:3]
    kwargs = {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_response_length": 28, "do_sample": False}
    whole = generate_rollouts(model, tok, prompts, **kwargs)
    chunked = generate_rollouts(model, tok, prompts, generation_batch_size=4, **kwargs)
    assert whole.texts == chunked.texts
    assert torch.equal(whole.response_mask, chunked.response_mask)
    assert whole.group_ids == [prompts[0].uid] * 2 + [prompts[1].uid] * 2 + [prompts[2].uid] * 2
    assert all("</think>" in t for t in whole.texts)  # the warm model answers in the think format


def test_custom_reward_file_scores_the_rollouts(warm, make_ctx, tmp_path):
    # reward.path: the builtin trainer calls the file with verl's signature, kwargs included
    from runners.reward_file import RewardFunctionError

    parquet, model_dir = warm
    reward = tmp_path / "const.py"
    reward.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None, value=0.0, **kw):\n"
                      "    assert data_source == 'hardgen'\n"
                      "    return {'score': value, 'note': 'x'}\n")
    spec = task.train_spec("grpo", total_training_steps=1)
    spec["reward"] = {"path": str(reward), "kwargs": {"value": 0.75}}
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir}, name="custom")
    result = run(ctx.spec.train, ctx)
    assert result.metrics["train/reward_mean_first"] == pytest.approx(0.75)
    reward.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kw):\n"
                      "    return [1]\n")
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir}, name="bad")
    with pytest.raises(RewardFunctionError, match=r"const.py: compute_score returned \[1\] \(list\), not a finite number, for solution_str="):
        run(ctx.spec.train, ctx)


def test_think_scope_gets_the_prompt_ids(warm, make_ctx, monkeypatch):
    """The builtin trainer hands think_span_mask the left-padded prompts of the batch, so a chat
    template that opens <think> in the prompt (Qwen3-Thinking) is seen (tests/test_think_scope.py)."""
    import runners.train.loop as loop

    seen = []
    real = loop.think_span_mask

    def spy(response_ids, mask, open_id, close_id, prompt_ids=None):
        seen.append((response_ids.shape, None if prompt_ids is None else prompt_ids.clone()))
        return real(response_ids, mask, open_id, close_id, prompt_ids=prompt_ids)

    monkeypatch.setattr(loop, "think_span_mask", spy)
    parquet, model_dir = warm
    spec = task.train_spec("egpo", total_training_steps=1)
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir})
    run(ctx.spec.train, ctx)
    (shape, prompts), = seen
    assert prompts is not None and prompts.shape[0] == shape[0]
    from transformers import AutoTokenizer

    pad = AutoTokenizer.from_pretrained(model_dir).pad_token_id
    assert (prompts[:, -1] != pad).all()  # left-padded: every prompt ends at the last column
