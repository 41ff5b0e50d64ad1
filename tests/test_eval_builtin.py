"""Builtin eval: scoring of single responses, and the whole stage on a real tiny model, a real
convert-stage parquet and a real MLflow store (repeats, CI metrics, predictions table)."""

from __future__ import annotations

import json
import math

import pytest
from test_bfcl_match import bfcl_wheel_path

from registry.context import StageContext
from registry.errors import UsageError
from registry.spec import Spec
from registry.tracking import NullTracker
from runners.eval.records import EvalRecord
from runners.eval.scoring import score_sample
from runners.reward import REWARD_FUNCTIONS

GT = '<think>weather</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
REC = EvalRecord(id="7", messages=[{"role": "user", "content": "weather in Paris in celsius?"}], tools=[],
                 kind="reward", ground_truth=GT)
THINK = REWARD_FUNCTIONS["think_tool_call"]


def _score(response, record=REC, fn=THINK, think=True):
    return score_sample(record, response, fn, think)


def test_exact_answer_scores_everywhere():
    s = _score(GT)
    assert (s.score, s.format_valid, s.tool_name_correct, s.args_correct) == (1.0, 1.0, 1.0, 1.0)
    assert s.calls == [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]


def test_missing_think_fails_strict_but_not_arguments():
    answer = GT.split("\n\n", 1)[1]
    s = _score(answer)
    assert (s.score, s.format_valid, s.tool_name_correct, s.args_correct) == (0.0, 0.0, 1.0, 1.0)
    assert "think" in s.error
    relaxed = _score(answer, fn=REWARD_FUNCTIONS["tool_call"], think=False)
    assert (relaxed.score, relaxed.format_valid) == (1.0, 1.0)


def test_wrong_argument_keeps_name_credit():
    s = _score(GT.replace("Paris", "Rome"))
    assert (s.score, s.format_valid, s.tool_name_correct, s.args_correct) == (0.0, 1.0, 1.0, 0.0)


def test_malformed_call_and_prose():
    s = _score("<think>x</think>\n\n<tool_call>{not json</tool_call>")
    assert (s.score, s.format_valid, s.tool_name_correct, s.args_correct) == (0.0, 0.0, 0.0, 0.0)
    assert s.calls is None and s.error
    prose = _score("<think>x</think>\n\nIt is sunny.")
    assert prose.format_valid == 0.0 and prose.calls == []


def test_bfcl_record_scored_with_bfcl_rules():
    doc = {"name": "calc_area", "parameters": {"type": "dict", "required": ["base"], "properties": {
        "base": {"type": "float"}, "unit": {"type": "string"}}}}
    rec = EvalRecord(id="simple_python_0", messages=[], tools=[], kind="bfcl", functions=[doc],
                     category="simple_python", ground_truth=[{"calc_area": {"base": [10.0], "unit": ["cm", ""]}}])
    ok = '<think>a</think>\n\n<tool_call>\n{"name": "calc_area", "arguments": {"base": 10}}\n</tool_call>'
    s = _score(ok, record=rec)
    assert (s.score, s.args_correct, s.tool_name_correct) == (1.0, 1.0, 1.0)  # int accepted for float
    bad = _score(ok.replace('"base": 10', '"base": 11'), record=rec)
    assert (bad.score, bad.args_correct, bad.tool_name_correct) == (0.0, 0.0, 1.0)
    assert bad.error == "value_error:others"


# -- the whole stage -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    """convert.test from the real convert runner on synthetic data, and a tiny model built locally."""
    import torch

    from registry.spec.model import TinyModelSpec
    from runners import convert
    from runners.modeling import build_tiny_model, texts_from_parquet

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval-inputs")
    spec = Spec.model_validate({"name": "conv", "data": {"synthetic": {"num_records": 60, "seed": 0},
                                                          "test_size": 0.2, "max_samples": 60}})
    out = root / "convert"
    out.mkdir()
    ctx = StageContext(stage="convert", spec=spec, out_dir=out, work_dir=root / "w", inputs={},
                       tracker=NullTracker(), project_root=root)
    result = convert.run(spec.data, ctx)
    model = build_tiny_model(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, vocab_size=400),
                             texts_from_parquet(result.outputs["train"]), root / "tiny")
    return {"convert.test": result.outputs["test"], "sft.model": model}


EVAL = {"repeats": 3, "max_samples": 6, "batch_size": 4, "max_new_tokens": 12, "do_sample": True,
        "temperature": 1.0, "seed": 7}


def test_stage_logs_repeats_ci_and_predictions(make_ctx, tracker, eval_inputs):
    import runners.eval as ev

    ctx = make_ctx("eval", {"eval": EVAL, "reward": {"function": "think_tool_call"}},
                   inputs=eval_inputs, tracker=tracker)
    result = ev.run(ctx.spec.eval, ctx)
    tracker.flush()

    m = result.metrics
    assert m["eval/repeats"] == 3.0
    for name in ("accuracy", "format_valid_rate", "tool_name_accuracy", "arg_accuracy", "response_length"):
        mean, lo, hi = m[f"eval/{name}_mean"], m[f"eval/{name}_ci95_low"], m[f"eval/{name}_ci95_high"]
        assert lo <= mean <= hi or (math.isclose(lo, hi) and math.isclose(lo, mean))
    assert 0 < m["eval/response_length_mean"] <= 12

    client = tracker.client
    history = client.get_metric_history(tracker.run_id, "eval/accuracy")
    assert sorted(h.step for h in history) == [0, 1, 2]
    assert all(0.0 <= h.value <= 1.0 for h in history)

    rows = [json.loads(line) for line in result.outputs["predictions"].read_text().splitlines()]
    assert len(rows) == 6 * 3
    assert {r["repeat"] for r in rows} == {0, 1, 2} and {r["seed"] for r in rows} == {7, 8, 9}
    assert set(rows[0]) >= {"entry_id", "response", "parsed_calls", "expected", "correct", "reward", "prompt",
                            "prompt_sha"}
    # one stable entry id per prompt, the same in every repeat; the prompt text is the rendered prompt
    assert len({r["entry_id"] for r in rows}) == 6
    assert all(len({r["prompt_sha"] for r in rows if r["entry_id"] == e}) == 1 for e in {r["entry_id"] for r in rows})
    # sampling with distinct seeds: the repeats are not all identical
    by_repeat = [[r["response"] for r in rows if r["repeat"] == k] for k in range(3)]
    assert by_repeat[0] != by_repeat[1] or by_repeat[1] != by_repeat[2]
    # expected calls come from the parquet's ground truth
    assert all(isinstance(r["expected"], list) and r["expected"][0]["name"] for r in rows)

    inputs = client.get_run(tracker.run_id).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].tags[0].value == "eval"
    assert client.get_run(tracker.run_id).data.params["eval_set_digest"] == inputs[0].dataset.digest

    artifacts = {a.path for a in client.list_artifacts(tracker.run_id, "eval")}
    assert {"eval/entries.json", "eval/summary.json"} <= artifacts
    # read back through MLflow's public API, as the paired comparison does
    from analysis.entries import load_entries
    table = load_entries(client, tracker.run_id)
    assert len(table) == 18 and {t["repeat"] for t in table} == {0, 1, 2}
    per_repeat = [sum(t["correct"] for t in table if t["repeat"] == k) / 6 for k in range(3)]
    assert per_repeat == pytest.approx([h.value for h in sorted(history, key=lambda h: h.step)])


def test_greedy_repeats_reuse_one_generation(make_ctx, eval_inputs):
    import runners.eval as ev

    ctx = make_ctx("eval", {"eval": {**EVAL, "do_sample": False, "repeats": 2}}, inputs=eval_inputs)
    result = ev.run(ctx.spec.eval, ctx)
    assert result.metrics["eval/accuracy_std"] == 0.0
    assert "greedy" in result.info["note"]
    logged = [v for k, v, step in ctx.tracker.metrics if k == "eval/response_length"]
    assert len(logged) == 2 and logged[0] == logged[1]


def test_bfcl_eval_set_from_wheel(make_ctx, eval_inputs):
    import runners.eval as ev

    bfcl_wheel = bfcl_wheel_path()
    spec = {"eval": {**EVAL, "repeats": 2, "max_samples": 3,
                     "bfcl_data": {"category": "simple_python", "wheel": str(bfcl_wheel)}}}
    ctx = make_ctx("eval", spec, inputs={"sft.model": eval_inputs["sft.model"]})
    result = ev.run(ctx.spec.eval, ctx)
    rows = [json.loads(line) for line in result.outputs["predictions"].read_text().splitlines()]
    assert [r["entry_id"] for r in rows[:3]] == ["simple_python_0", "simple_python_1", "simple_python_2"]
    assert rows[0]["expected"] == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]
    assert result.info["eval_set"] == "bfcl:simple_python"


def test_no_model_is_a_usage_error(make_ctx, eval_inputs):
    import runners.eval as ev

    ctx = make_ctx("eval", {"eval": EVAL}, inputs={"convert.test": eval_inputs["convert.test"]})
    with pytest.raises(UsageError, match="no model"):
        ev.run(ctx.spec.eval, ctx)


def test_spec_rules():
    with pytest.raises(Exception, match="exactly one"):
        Spec.model_validate({"name": "x", "eval": {"bfcl_data": {}}})
    with pytest.raises(Exception, match="builtin backend"):
        Spec.model_validate({"name": "x", "eval": {"backend": "bfcl", "bfcl_data": {"category": "simple_python"}}})
    with pytest.raises(Exception, match="at least 2 ids"):
        Spec.model_validate({"name": "x", "eval": {"backend": "bfcl", "bfcl": {"test_ids": ["multi_turn_base_0"]}}})
    with pytest.raises(Exception, match="bfcl.test_ids"):
        Spec.model_validate({"name": "x", "eval": {"backend": "bfcl", "max_samples": 5}})


def test_small_model_decodes_single_threaded_then_restores(eval_inputs):
    import torch

    from runners.eval.generation import cpu_threads_for
    from runners.modeling import load_model

    model, _ = load_model(eval_inputs["sft.model"], "float32", "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads_for(model):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_custom_reward_file_decides_accuracy(make_ctx, tracker, eval_inputs, tmp_path):
    import runners.eval as ev

    reward = tmp_path / "always.py"
    reward.write_text("def score(data_source, solution_str, ground_truth, extra_info=None, full=1.0):\n"
                      "    return full\n")
    small = {**EVAL, "repeats": 1, "max_samples": 2}
    ctx = make_ctx("eval", {"eval": small, "reward": {"path": str(reward), "name": "score", "kwargs": {"full": 1.0}}},
                   inputs=eval_inputs, tracker=tracker)
    result = ev.run(ctx.spec.eval, ctx)
    assert result.metrics["eval/accuracy_mean"] == 1.0  # the file says every response is right
    tracker.flush()
    assert tracker.client.get_run(tracker.run_id).data.params["reward_function"] == f"{reward}:score"


def test_repeat_intervals_of_proportions_stay_in_unit_range():
    from runners.eval.summary import aggregate

    agg = aggregate([{"format_valid_rate": 1.0, "accuracy": 0.0, "response_length": 64.0},
                     {"format_valid_rate": 0.98, "accuracy": 0.02, "response_length": 66.0},
                     {"format_valid_rate": 1.0, "accuracy": 0.0, "response_length": 63.0}])
    assert agg["eval/format_valid_rate_ci95_high"] == 1.0 and agg["eval/format_valid_rate_ci95_low"] < 1.0
    assert agg["eval/accuracy_ci95_low"] == 0.0 and agg["eval/accuracy_ci95_high"] > 0.0
    assert agg["eval/response_length_ci95_low"] < 63.0  # not a proportion: not clipped
