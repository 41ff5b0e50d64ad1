"""Multi-turn, tool-executing rollouts in the builtin trainer (train.rollout.multi_turn): token
layout and masks against the chat template, tool answers (executed, replayed, truncated, refused),
GRPO / EGPO / loss / KL on non-contiguous masks by hand, and the per-step round entropy."""

from __future__ import annotations

import json
import math

import _multi_turn_task as T
import pytest
import torch

from registry.errors import InputDataError, UsageError
from registry.spec.train import MultiTurnSpec
from runners.common.advantages import egpo, egpo_token, grpo, think_span_mask
from runners.common.entropy import normalized_entropy
from runners.common.tools import ToolAnswerer
from runners.modeling import load_model, render_prompt, render_text
from runners.train.forward import batched_token_stats
from runners.train.loss import agg_loss, kl_penalty, policy_loss
from runners.train.multi_turn import MultiTurnRollout, ToolTurns, build, truncate_tool_text, turn_metrics
from runners.train.round_entropy import round_metrics, round_records, write_step_file

TOOL_TURN = "<|im_end|>\n<|im_start|>user\n<tool_response>\n{}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    torch.manual_seed(0)
    return load_model(tiny_model_dir, "float32", "cpu")


def _rollout(tok, spec: MultiTurnSpec | None = None, tools=None, mode="tools_config") -> MultiTurnRollout:
    spec = spec or MultiTurnSpec(enable=True, tool_source="tools_config", tools_config="unused.yaml")
    return MultiTurnRollout(spec, tok, ToolAnswerer(mode, {"lookup": T.lookup} if tools is None else tools))


def _run(model, tok, scripts, prompts, *, spec=None, tools=None, mode="tools_config", max_len=120, n=1):
    forced = T.ForcedModel(model, tok, scripts)
    return _rollout(tok, spec, tools, mode)(forced, tok, prompts, n=n, temperature=1.0, top_p=1.0,
                                            max_response_length=max_len)


def _row(batch, i):
    """(response ids, response mask) of row i without the right padding."""
    valid = batch.attention_mask[i, batch.prompt_length:].bool()
    return batch.response_ids[i][valid].tolist(), batch.response_mask[i][valid].tolist()


def test_tool_round_tokens_and_masks_follow_the_chat_template(tiny):
    model, tok = tiny
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1], "taskB": [T.ROUND1]},
                 [T.prompt(tok, 0, "taskA"), T.prompt(tok, 1, "taskB")], n=2)
    assert batch.group_ids == [0, 0, 1, 1]
    r0, r1, tool = T.tokens(tok, T.ROUND0), T.tokens(tok, T.ROUND1) + [eos], T.tokens(tok, TOOL_TURN.format("value-of-k1"))
    for i in (0, 1):
        ids, mask = _row(batch, i)
        assert ids == r0 + tool + r1
        assert mask == [1] * len(r0) + [0] * len(tool) + [1] * len(r1)  # tool tokens never in the mask
        # the whole sequence is the chat template's rendering of the conversation
        convo = [{"role": "user", "content": "taskA: look up k1"}, {"role": "assistant", "content": T.ROUND0},
                 {"role": "tool", "content": "value-of-k1"}, {"role": "assistant", "content": T.ROUND1}]
        prompt = batch.input_ids[i, : batch.prompt_length][batch.attention_mask[i, : batch.prompt_length].bool()]
        assert tok.decode(prompt.tolist() + ids) == render_text(tok, convo).removesuffix("\n")
        assert batch.turns[i].round_starts == [0, len(r0) + len(tool)]
        assert batch.turns[i].round_lengths == [len(r0), len(r1)]
        assert batch.turns[i].finish == "end" and batch.turns[i].tool_rounds == 1
        # the reward reads the last assistant turn; the trajectory is in extra_info
        assert batch.texts[i] == T.ROUND1
        assert "value-of-k1" in batch.extra_infos[i]["trajectory"] and batch.extra_infos[i]["tool_rounds"] == 1
        # the outcome reward sits on the last model token, not on a tool token
        rewards_at = batch.response_mask[i].nonzero().max()
        batch.scores = torch.ones(4)
        assert batch.token_level_rewards()[i].nonzero().flatten().tolist() == [int(rewards_at)]
    ids, mask = _row(batch, 2)
    assert ids == r1 and mask == [1] * len(r1) and batch.turns[2].tool_rounds == 0
    # EGPO's think span, per assistant turn: "find it" and "now answer", never the tool turn
    think = think_span_mask(batch.response_ids, batch.response_mask, *(tok.convert_tokens_to_ids(t) for t in ("<think>", "</think>")))
    span_text = [tok.decode([t for t, m in zip(batch.response_ids[0].tolist(), think[0].tolist()) if m])]
    assert span_text == ["find itnow answer"]
    assert turn_metrics(batch.turns)["rollout/tool_rounds_mean"] == 0.5


def test_tool_tokens_never_reach_the_loss_or_kl(tiny):
    model, tok = tiny
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1]}, [T.prompt(tok, 0, "taskA")], n=2)
    mask = batch.response_mask
    R = batch.response_length
    stats = batched_token_stats(model, batch.input_ids, batch.attention_mask, R, 1.0, 8)
    log_prob = stats.log_prob.clone().requires_grad_(True)
    old = stats.log_prob.detach() - 0.1
    adv = torch.tensor([[1.0], [-1.0]]).expand_as(mask)
    ref = stats.log_prob.detach() + 0.2
    pl = policy_loss(log_prob, old, adv, mask, 0.2, 0.28)
    loss = agg_loss(pl.pg_losses, mask, "token-mean") + agg_loss(kl_penalty(log_prob, ref, "low_var_kl"), mask, "token-mean")
    loss.backward()
    assert torch.all(log_prob.grad[mask == 0] == 0)
    assert torch.all(log_prob.grad[mask == 1] != 0)
    # changing the log-probs of the tool tokens changes nothing
    tampered = torch.where(mask.bool(), stats.log_prob, stats.log_prob - 3.0)
    pl2 = policy_loss(tampered, old, adv, mask, 0.2, 0.28)
    same = float(agg_loss(pl.pg_losses.detach(), mask, "token-mean"))
    assert float(agg_loss(pl2.pg_losses, mask, "token-mean")) == pytest.approx(same)


# -- advantages and losses on a hand-built non-contiguous mask -----------------------------------

MASK = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]])
ENTROPY = torch.tensor([[0.2, 0.4, 9.0, 9.0, 0.6, 9.0], [0.1, 9.0, 9.0, 0.3, 0.5, 0.7]])  # 9.0: tool tokens
REWARDS = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])


def test_grpo_and_egpo_on_a_non_contiguous_mask_equal_the_hand_computation():
    a = 0.5 / (0.5**0.5 + 1e-6)  # group of two, scores 0 and 1: ∓0.5 / (std + eps)
    adv, _, _ = grpo(REWARDS, MASK, [0, 0])
    assert torch.allclose(adv, torch.tensor([[-a], [a]]) * MASK, rtol=1e-6)
    cfg = {"egpo_lambda": 1.0, "egpo_alpha": 2.0}
    # sequence EGPO: mean entropy over model tokens only — (0.2+0.4+0.6)/3 = 0.4, (0.1+0.3+0.5+0.7)/4 = 0.4
    adv, _, stats = egpo(REWARDS, MASK, [0, 0], config=cfg, entropy=ENTROPY, scope_mask=MASK)
    bonus = min(0.4, a / 2)
    assert torch.allclose(adv, torch.tensor([[-a + bonus], [a + bonus]]) * MASK, rtol=1e-6)
    assert stats["egpo/scope_entropy_mean"] == pytest.approx(0.4)
    # token EGPO: A_t + min(λ·H_t, |A|/α) on model tokens; tool tokens stay 0
    adv, _, _ = egpo_token(REWARDS, MASK, [0, 0], config=cfg, entropy=ENTROPY)
    want = [[-a + min(h, a / 2) if m else 0.0 for h, m in zip(ENTROPY[0].tolist(), MASK[0].tolist())],
            [a + min(h, a / 2) if m else 0.0 for h, m in zip(ENTROPY[1].tolist(), MASK[1].tolist())]]
    assert torch.allclose(adv, torch.tensor(want), rtol=1e-6)


def test_loss_aggregation_and_kl_on_a_non_contiguous_mask():
    values = ENTROPY
    assert float(agg_loss(values, MASK, "token-mean")) == pytest.approx((0.2 + 0.4 + 0.6 + 0.1 + 0.3 + 0.5 + 0.7) / 7)
    assert float(agg_loss(values, MASK, "seq-mean-token-mean")) == pytest.approx((0.4 + 0.4) / 2)
    lp = torch.zeros_like(MASK)
    ref = torch.where(MASK.bool(), torch.full_like(MASK, 0.5), torch.full_like(MASK, 5.0))
    k3 = math.exp(0.5) - 0.5 - 1
    assert float(agg_loss(kl_penalty(lp, ref, "low_var_kl"), MASK, "token-mean")) == pytest.approx(k3)


def test_think_span_is_computed_per_assistant_turn():
    OPEN, CLOSE, X, TOOL = 3, 4, 7, 9
    ids = torch.tensor([[OPEN, X, CLOSE, X, TOOL, OPEN, TOOL, X, X, CLOSE, X]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.float)
    # turn 1: after its own <think>; turn 2 starts inside the block the tool turn's template opened
    assert think_span_mask(ids, mask, OPEN, CLOSE).tolist() == [[0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0]]


# -- tool answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("side, want", [
    ("left", "(truncated)...6789"), ("right", "0123...(truncated)"), ("middle", "01...(truncated)...89"),
])
def test_truncation_is_verls(side, want):
    # verl 0.9.1 ToolAgentLoop: characters, `left` keeps the end, `right` the start
    assert truncate_tool_text("0123456789", 4, side) == want
    assert truncate_tool_text("0123", 4, side) == "0123"


def test_replayed_answers_truncation_round_limit_and_budget(tiny):
    model, tok = tiny
    recorded = [{"role": "assistant", "content": T.ROUND0}, {"role": "tool", "content": "R" * 30 + "TAIL"}]
    spec = MultiTurnSpec(enable=True, max_tool_rounds=1, max_tool_response_length=10, tool_response_truncate_side="left")
    # calls twice, but only one tool answer may be read; replay answers from the record
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND0]}, [T.prompt(tok, 0, "taskA", recorded)],
                 spec=spec, tools={}, mode="replay")
    ids, mask = _row(batch, 0)
    tool = T.tokens(tok, TOOL_TURN.format("(truncated)..." + "R" * 6 + "TAIL"))
    r0 = T.tokens(tok, T.ROUND0)
    assert ids == r0 + tool + r0 and mask == [1] * len(r0) + [0] * len(tool) + [1] * len(r0)
    assert batch.turns[0].finish == "max_rounds" and batch.turns[0].tool_calls == 2 and batch.turns[0].tool_rounds == 1
    # a budget that leaves no room for the tool turn ends the trajectory before it (verl)
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1]}, [T.prompt(tok, 0, "taskA")], max_len=len(r0) + 5)
    ids, mask = _row(batch, 0)
    assert ids == r0 and batch.turns[0].finish == "length" and bool(batch.truncated[0])
    # a budget (model and tool tokens, as verl's response_length) that cuts the second turn
    lookup = T.tokens(tok, TOOL_TURN.format("value-of-k1"))
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1]}, [T.prompt(tok, 0, "taskA")],
                 max_len=len(r0) + len(lookup) + 3)
    ids, mask = _row(batch, 0)
    assert ids == r0 + lookup + T.tokens(tok, T.ROUND1)[:3] and sum(mask) == len(r0) + 3
    assert batch.turns[0].finish == "length" and batch.turns[0].round_lengths == [len(r0), 3]


def test_malformed_and_unknown_calls_get_error_answers(tiny):
    model, tok = tiny
    bad = "<tool_call>{not json}</tool_call>"
    unknown = '<tool_call>{"name": "nope", "arguments": {}}</tool_call>'
    batch = _run(model, tok, {"taskA": [bad, T.ROUND1], "taskB": [unknown, T.ROUND1]},
                 [T.prompt(tok, 0, "taskA"), T.prompt(tok, 1, "taskB")])
    assert [t.malformed for t in batch.turns] == [1, 0]
    assert [t.tool_errors for t in batch.turns] == [1, 1]
    assert "could not be parsed" in batch.extra_infos[0]["turns"][1]["content"]
    assert "unknown tool 'nope'" in batch.extra_infos[1]["turns"][1]["content"]


def test_refusals_name_the_field(tiny, tmp_path):
    model, tok = tiny

    class Ctx:
        def resolve_path(self, p):
            return tmp_path / p

    spec = MultiTurnSpec(enable=True)  # replay, no tools_config
    with pytest.raises(UsageError, match=r"train\.rollout\.multi_turn\.tool_source: replay: no training row") as exc:
        build(spec, tok, Ctx(), [T.prompt(tok, 0, "taskA")])
    assert exc.value.exit_code == 2
    assert build(spec, tok, Ctx(), [T.prompt(tok, 0, "taskA", [{"role": "assistant", "content": T.ROUND0},
                                                                {"role": "tool", "content": "x"}])])

    missing = MultiTurnSpec(enable=True, tool_source="tools_config", tools_config="nope.yaml")
    with pytest.raises(InputDataError, match=r"nope\.yaml: tools config not found \(train\.rollout\.multi_turn\.tools_config") as exc:
        build(missing, tok, Ctx(), [T.prompt(tok, 0, "taskA")])
    assert exc.value.exit_code == 2

    class NoTemplate:
        chat_template = None
        name_or_path = "plain-lm"

    with pytest.raises(UsageError, match=r"multi_turn\.enable: plain-lm: the tokenizer has no chat template"):
        ToolTurns(NoTemplate())


# -- per-step round entropy --------------------------------------------------------------------


def test_round_entropy_equals_a_direct_computation(tiny, tmp_path):
    model, tok = tiny
    k = 5
    batch = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1], "taskB": [T.ROUND1]},
                 [T.prompt(tok, 0, "taskA"), T.prompt(tok, 1, "taskB")])
    stats = batched_token_stats(model, batch.input_ids, batch.attention_mask, batch.response_length, 0.7, 8)
    vocab = model.get_output_embeddings().weight.shape[0]
    records = round_records(stats.entropy, batch.turns, k, vocab, step=3, uids=batch.group_ids)
    assert [(r["sample_idx"], r["round"], r["is_after_tool_call"]) for r in records] == [
        (0, 0, False), (0, 1, True), (1, 0, False)]
    for rec in records:  # one unpadded forward pass per round's context
        i = rec["sample_idx"]
        prompt = batch.input_ids[i, : batch.prompt_length][batch.attention_mask[i, : batch.prompt_length].bool()]
        ids, _ = _row(batch, i)
        start = batch.turns[i].round_starts[rec["round"]]
        seq = torch.tensor([prompt.tolist() + ids[: start + k]])
        with torch.no_grad():
            logits = model(input_ids=seq).logits[0, len(prompt) + start - 1 : len(prompt) + start + k - 1]
        want = float(normalized_entropy(logits, 0.7).mean())
        assert rec["entropy"] == pytest.approx(want, rel=1e-4)
        assert 0 < rec["entropy"] < 1 and rec["k_used"] == k and rec["step"] == 3
    metrics = round_metrics(records)
    assert metrics["rollout/entropy_after_tool/round_0"] == pytest.approx((records[0]["entropy"] + records[2]["entropy"]) / 2)
    assert metrics["rollout/entropy_after_tool/round_1"] == pytest.approx(records[1]["entropy"])
    path = write_step_file(tmp_path / "steps", 3, records)
    assert path.name == "entropy_step_3.json"
    from analysis.entropy_sources import file_sources

    (source,) = file_sources([str(tmp_path / "steps" / "entropy_step_*.json")])
    assert source.kind == "rounds" and [r["step"] for r in source.records] == [3, 3, 3]
    assert json.loads(path.read_text())[0].keys() >= {"sample_idx", "round", "entropy", "is_after_tool_call"}


def test_rounds_by_step_averages_each_round_per_step():
    from analysis.entropy_sources import Source, rounds_by_step

    records = [{"sample_idx": 0, "round": 0, "entropy": 0.2, "step": 1}, {"sample_idx": 1, "round": 0, "entropy": 0.4, "step": 1},
               {"sample_idx": 0, "round": 1, "entropy": 0.9, "step": 1}, {"sample_idx": 0, "round": 0, "entropy": 0.5, "step": 2}]
    out = rounds_by_step(Source("run", records=records))
    assert [(s.label, s.history) for s in out] == [
        ("run round 0", [{"step": 1, "entropy": pytest.approx(0.3)}, {"step": 2, "entropy": 0.5}]),
        ("run round 1", [{"step": 1, "entropy": 0.9}])]


def test_generation_prompt_matches_render_prompt(tiny):
    # the tool turn ends with exactly the generation prompt render_prompt appends
    _, tok = tiny
    text = ToolTurns(tok).text(["x"])
    assert text.endswith(render_prompt(tok, [{"role": "user", "content": "u"}]).split("u<|im_end|>\n")[-1])


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_multi_turn_train_run_logs_round_entropy_and_tool_metrics(tmp_path_factory, tmp_path, make_ctx, tracker,
                                                                   mlflow_uri):
    """The warm-started model of _train_task calls a tool first; its tools run (tools_config), the
    run trains two steps and logs the per-round entropy and tool counts."""
    import _train_task as task
    from click.testing import CliRunner

    from analysis.entropy_cli import plot_entropy
    from runners.train import run

    torch.set_num_threads(1)
    parquet, model_dir = task.cached_task(tmp_path_factory)
    (tmp_path / "tools.py").write_text("def weather(**kwargs):\n    return 'sunny, 21 C'\n")
    (tmp_path / "tools.yaml").write_text("tools:\n" + "".join(f"  {t}: tools.py:weather\n" for t in task.TOOLS))
    spec = task.train_spec("egpo", total_training_steps=2, test_freq=2, val_max_prompts=2)
    spec["train"]["rollout"].update({"n": 4, "max_response_length": 60, "multi_turn": {
        "enable": True, "max_tool_rounds": 2, "tool_source": "tools_config", "tools_config": str(tmp_path / "tools.yaml"),
        "entropy_k": 8}})
    inputs = {"convert.train": parquet, "convert.test": parquet, "sft.model": model_dir}
    ctx = make_ctx("train", spec, inputs=inputs, tracker=tracker)
    result = run(ctx.spec.train, ctx)
    tracker.flush()
    client = tracker.client

    def series(key):
        return [m.step for m in sorted(client.get_metric_history(tracker.run_id, key), key=lambda m: m.step)]

    for key in ("rollout/entropy_after_tool/round_0", "rollout/entropy_after_tool/round_1", "rollout/tool_rounds_mean",
                "rollout/tool_errors", "train/reward_mean", "actor/pg_loss", "val/reward_mean"):
        assert series(key) == ([2] if key.startswith("val/") else [1, 2]), key
    files = sorted(p.name for p in result.outputs["entropy_steps"].iterdir())
    assert files == ["entropy_step_1.json", "entropy_step_2.json"]
    records = json.loads((result.outputs["entropy_steps"] / "entropy_step_1.json").read_text())
    assert {r["round"] for r in records} >= {0, 1} and all(0 < r["entropy"] < 1 for r in records)
    logged = client.get_metric_history(tracker.run_id, "rollout/entropy_after_tool/round_1")
    first = next(m.value for m in logged if m.step == 1)
    after = [r["entropy"] for r in records if r["round"] == 1]
    assert first == pytest.approx(sum(after) / len(after), rel=1e-6)
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id, "entropy_steps")}
    assert artifacts == {"entropy_steps/entropy_step_1.json", "entropy_steps/entropy_step_2.json"}
    out = tmp_path / "rounds.png"
    res = CliRunner().invoke(plot_entropy, ["--entropy_file", str(result.outputs["entropy_steps"] / "entropy_step_*.json"),
                                            "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    # per round, per step: from the files and from the run's artifacts
    for source in (["--entropy_file", str(result.outputs["entropy_steps"] / "entropy_step_*.json")],
                   ["--run", tracker.run_id, "--tracking-uri", mlflow_uri]):
        res = CliRunner().invoke(plot_entropy, [*source, "--by_step", "-o", str(tmp_path / "steps.png")])
        assert res.exit_code == 0, res.output
        assert "round 0: 2 steps" in res.output and "round 1: 2 steps" in res.output


def test_the_tools_config_and_its_files_are_in_the_cache_key(tmp_path):
    from registry.cache import external_digests
    from registry.spec import Spec

    (tmp_path / "tools.py").write_text("def f(**kw):\n    return 'a'\n")
    (tmp_path / "tools.yaml").write_text("tools:\n  f: tools.py:f\n  g: runners.demo_tools:lookup\n")
    spec = Spec.model_validate({"name": "k", "data": {"synthetic": {"num_records": 8}}, "model": {"tiny": {}},
                                "train": {"rollout": {"multi_turn": {"enable": True, "tool_source": "tools_config",
                                                                     "tools_config": str(tmp_path / "tools.yaml")}}}})
    before = external_digests("train", spec, tmp_path)
    assert set(before) == {"external:train.rollout.multi_turn.tools_config", "external:train.rollout.multi_turn.tools.f"}
    (tmp_path / "tools.py").write_text("def f(**kw):\n    return 'bb'\n")
    after = external_digests("train", spec, tmp_path)
    assert after["external:train.rollout.multi_turn.tools.f"] != before["external:train.rollout.multi_turn.tools.f"]


def test_dynamic_sampling_merge_keeps_tool_tokens_attended(tiny):
    from runners.train.dynamic_sampling import merge

    model, tok = tiny
    a = _run(model, tok, {"taskA": [T.ROUND0, T.ROUND1]}, [T.prompt(tok, 0, "taskA")], n=2)
    b = _run(model, tok, {"taskB": [T.ROUND1]}, [T.prompt(tok, 1, "taskB")], n=2)
    for batch in (a, b):
        batch.scores = torch.tensor([0.0, 1.0])
    merged = merge([(b, [0, 1]), (a, [0, 1])], tok.pad_token_id)
    assert merged.turns == b.turns + a.turns and merged.extra_infos == b.extra_infos + a.extra_infos
    R = a.response_length
    assert torch.equal(merged.attention_mask[2:, -R:][:, : a.response_length], a.attention_mask[:, -R:])
    assert torch.equal(merged.response_mask[2:, :R], a.response_mask)
    assert int(merged.attention_mask[2, -R:].sum()) > int(merged.response_mask[2].sum())  # tool tokens attended
