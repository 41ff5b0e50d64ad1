"""Dynamic sampling (DAPO / verl's ``algorithm.filter_groups``) in the builtin trainer: uniform
groups are dropped, the batch is refilled from later prompts, the retry bound holds, the
informative share is logged, and (train stage) the kept batch carries a gradient in every group."""

from __future__ import annotations

import _train_task as task
import pytest
import torch

from registry.spec.train import TrainSpec
from runners.train.dynamic_sampling import informative_groups, sample_step
from runners.train.prompts import Prompt
from runners.train.rollout import RolloutBatch

PAD = 0
N = 4


def _prompts(count: int = 100) -> list[Prompt]:
    # prompt uid u has u % 3 + 2 tokens, so generation batches differ in prompt width
    return [Prompt(u, list(range(1, u % 3 + 3)), f"gt{u}", [], None) for u in range(count)]


def _fake_rollout(reward_of):
    """A scored batch: row j of prompt u gets reward reward_of(u, j); response width varies by batch."""

    def rollout(prompts: list[Prompt]) -> RolloutBatch:
        P = max(len(p.input_ids) for p in prompts)
        R = 2 + (prompts[0].uid // 4) % 3  # with batches of 4 prompts: 2, 3, 4, 2, ...
        rows = [(p, j) for p in prompts for j in range(N)]
        ids = torch.full((len(rows), P + R), PAD, dtype=torch.long)
        attn = torch.zeros_like(ids)
        rmask = torch.zeros((len(rows), R))
        for i, (p, j) in enumerate(rows):
            ids[i, P - len(p.input_ids) : P] = torch.tensor(p.input_ids)
            attn[i, P - len(p.input_ids) : P] = 1
            length = 1 + (p.uid + j) % R
            ids[i, P : P + length] = 100 + p.uid  # response tokens name their prompt
            attn[i, P : P + length] = 1
            rmask[i, :length] = 1
        return RolloutBatch(
            input_ids=ids, attention_mask=attn, response_mask=rmask, prompt_length=P,
            group_ids=[p.uid for p, _ in rows], ground_truths=[p.ground_truth for p, _ in rows],
            texts=[f"{p.uid}/{j}" for p, j in rows], truncated=torch.zeros(len(rows), dtype=torch.bool),
            prompt_tokens=torch.tensor([len(p.input_ids) for p, _ in rows]), generate_seconds=1.0,
            scores=torch.tensor([float(reward_of(p.uid, j)) for p, j in rows]),
        )

    return rollout


def _draw(batch_size: int):
    prompts = _prompts()
    return lambda i: prompts[(i * batch_size) % 100 : (i * batch_size) % 100 + batch_size]


def _mixed_when(informative: set[int]):
    return lambda u, j: float(j == 0) if u in informative else 1.0


def test_uniform_groups_are_dropped_and_the_batch_refilled_from_later_prompts():
    informative = {1, 4, 6, 9, 10, 13, 15}  # batches of 4 prompts: 1 | 4 | 6 | 9,10 | 13,15
    sampled = sample_step(_draw(4), _fake_rollout(_mixed_when(informative)), cursor=0, groups_wanted=4,
                          enable=True, max_num_gen_batches=10, pad_id=PAD)
    batch = sampled.batch
    # prompts 1, 4, 6 and 9 fill the batch after 3 generation batches (0-3, 4-7, 8-11); 10 is surplus
    assert sampled.cursor == 3
    assert [t.split("/")[0] for t in batch.texts] == [str(u) for u in (1, 4, 6, 9) for _ in range(N)]
    assert all(informative_groups(batch)) and len(informative_groups(batch)) == 4
    assert batch.group_ids == [g for g in range(4) for _ in range(N)]
    m = sampled.metrics
    assert m["rollout/num_gen_batches"] == 3
    assert m["rollout/informative_share"] == pytest.approx(5 / 12)  # 1, 4, 6, 9, 10 of the 12 groups generated
    assert m["training/filter_groups/evicted_samples"] == 7 * N
    assert m["training/filter_groups/discarded_surplus_samples"] == N  # prompt 10
    assert m["rollout/filter_groups_exhausted"] == 0
    assert m["rollout/reward_mean_generated"] == pytest.approx((7 * N + 5 * 1) / (12 * N))
    # the merged layout: prompts left-padded, responses right-padded, every token of a row kept
    for i, text in enumerate(batch.texts):
        u = int(text.split("/")[0])
        prompt = batch.input_ids[i, : batch.prompt_length][batch.attention_mask[i, : batch.prompt_length].bool()]
        assert prompt.tolist() == list(range(1, u % 3 + 3))
        response = batch.response_ids[i][batch.response_mask[i].bool()]
        assert response.tolist() == [100 + u] * (1 + (u + i % N) % (2 + (u // 4) % 3))
    assert batch.input_ids.shape[0] == batch.attention_mask.shape[0] == 4 * N
    assert batch.generate_seconds == 3.0


def test_surplus_of_the_last_batch_is_discarded_as_in_verl():
    sampled = sample_step(_draw(4), _fake_rollout(_mixed_when({0, 1, 2, 5, 6})), cursor=0, groups_wanted=4,
                          enable=True, max_num_gen_batches=10, pad_id=PAD)
    assert sampled.cursor == 2
    assert [t.split("/")[0] for t in sampled.batch.texts[::N]] == ["0", "1", "2", "5"]
    assert sampled.metrics["training/filter_groups/discarded_surplus_samples"] == N  # prompt 6


def test_retry_bound_is_respected_and_the_batch_keeps_its_size():
    calls = []
    rollout = _fake_rollout(lambda u, j: 1.0)  # every group uniform: nothing to learn from

    def counting(prompts):
        calls.append(prompts[0].uid)
        return rollout(prompts)

    sampled = sample_step(_draw(4), counting, cursor=5, groups_wanted=4, enable=True, max_num_gen_batches=3,
                          pad_id=PAD)
    assert len(calls) == 3 and sampled.cursor == 8
    assert sampled.metrics["rollout/filter_groups_exhausted"] == 1
    assert sampled.metrics["rollout/informative_share"] == 0
    assert len(sampled.batch.texts) == 4 * N  # topped up with uniform groups (zero advantage)
    assert len(set(sampled.batch.group_ids)) == 4


def test_a_prompt_drawn_twice_in_one_step_forms_two_groups():
    # an epoch boundary inside a step: prompt 7 comes back in the next generation batch
    draw = lambda i: [Prompt(7, [1, 2], "gt", [], None), Prompt(50 + i, [1, 2], "gt", [], None)]  # noqa: E731
    sampled = sample_step(draw, _fake_rollout(_mixed_when({7})), cursor=0, groups_wanted=2,
                          enable=True, max_num_gen_batches=2, pad_id=PAD)
    assert [t.split("/")[0] for t in sampled.batch.texts] == ["7"] * (2 * N)
    assert sampled.batch.group_ids == [0] * N + [1] * N


def test_without_filtering_one_batch_is_drawn_and_the_share_still_logged():
    sampled = sample_step(_draw(4), _fake_rollout(_mixed_when({1})), cursor=2, groups_wanted=4, enable=False,
                          max_num_gen_batches=10, pad_id=PAD)
    assert sampled.cursor == 3 and len(sampled.batch.texts) == 4 * N
    assert sampled.metrics == {"rollout/informative_share": 0.0, "rollout/reward_mean_generated": 1.0}


def test_spec_defaults_and_bounds():
    fg = TrainSpec().algorithm.filter_groups
    assert (fg.enable, fg.metric, fg.max_num_gen_batches) == (False, "reward", 10)
    with pytest.raises(ValueError):
        TrainSpec.model_validate({"algorithm": {"filter_groups": {"max_num_gen_batches": -1}}})
    with pytest.raises(ValueError):
        TrainSpec.model_validate({"algorithm": {"filter_groups": {"metric": "acc"}}})


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    torch.set_num_threads(1)
    return task.cached_task(tmp_path_factory)


def test_train_stage_keeps_only_groups_with_mixed_rewards(warm, make_ctx):
    """Real trainer, real model: with filtering on, every kept group has a nonzero advantage
    (adv/zero_adv_frac = 0) unless the bound was hit, and the cursor is checkpointed."""
    parquet, model_dir = warm
    spec = task.train_spec("grpo", total_training_steps=2, save_freq=1,
                           algorithm={"filter_groups": {"enable": True, "max_num_gen_batches": 4}})
    ctx = make_ctx("train", spec, inputs={"convert.train": parquet, "sft.model": model_dir})
    from runners.train import run

    run(ctx.spec.train, ctx)
    logged: dict[str, list[float]] = {}
    for key, value, _ in ctx.tracker.metrics:
        logged.setdefault(key, []).append(value)
    assert len(logged["rollout/informative_share"]) == 2
    assert all(0 <= s <= 1 for s in logged["rollout/informative_share"])
    assert all(1 <= b <= 4 for b in logged["rollout/num_gen_batches"])
    for zero, exhausted in zip(logged["adv/zero_adv_frac"], logged["rollout/filter_groups_exhausted"]):
        assert exhausted == 1 or zero == 0
    state = torch.load(ctx.work_dir / "checkpoints" / "global_step_2" / "trainer_state.pt", weights_only=True)
    assert state["extra"]["gen_cursor"] == sum(logged["rollout/num_gen_batches"])


def test_resume_continues_the_prompt_stream_where_filtering_left_it(warm, make_ctx):
    """A run stopped after step 2 and resumed for step 3 draws the same generation batches at step
    3 as an uninterrupted run (the cursor comes from the checkpoint, not from the step number)."""
    from runners.train import run

    parquet, model_dir = warm
    inputs = {"convert.train": parquet, "sft.model": model_dir}
    fg = {"filter_groups": {"enable": True, "max_num_gen_batches": 3}}
    # n=2: most groups are uniform, so steps draw extra batches and the cursor runs ahead of the step
    ro = {"n": 2, "temperature": 1.0, "max_prompt_length": 64, "max_response_length": 28}

    def step3(ctx):
        return {k: v for k, v, s in ctx.tracker.metrics if s == 3}

    whole = make_ctx("train", task.train_spec("grpo", total_training_steps=3, save_freq=3, algorithm=fg, rollout=ro), inputs=inputs,
                     name="whole")
    run(whole.spec.train, whole)
    first = make_ctx("train", task.train_spec("grpo", total_training_steps=2, save_freq=1, algorithm=fg, rollout=ro),
                     inputs=inputs, name="resumed")
    run(first.spec.train, first)
    again = make_ctx("train", task.train_spec("grpo", total_training_steps=3, save_freq=1, algorithm=fg, rollout=ro),
                     inputs=inputs, name="resumed")
    run(again.spec.train, again)
    drawn = sum(v for k, v, s in whole.tracker.metrics if k == "rollout/num_gen_batches" and s <= 2)
    assert drawn > 2, "precondition: filtering drew extra batches before step 3"
    a, b = step3(whole), step3(again)
    assert b["rollout/num_gen_batches"] == a["rollout/num_gen_batches"]
    assert b["rollout/reward_mean_generated"] == pytest.approx(a["rollout/reward_mean_generated"])
    assert b["train/epoch"] == a["train/epoch"]

    def cursor(ctx):
        state = torch.load(ctx.work_dir / "checkpoints" / "global_step_3" / "trainer_state.pt", weights_only=True)
        return state["extra"]["gen_cursor"]

    assert cursor(again) == cursor(whole) > 3
