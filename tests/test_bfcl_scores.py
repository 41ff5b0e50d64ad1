"""BFCL's headline number (issue 15): ``eval/accuracy`` of a BFCL run is the accuracy over the
categories run — BFCL's own per-category number — and BFCL's overall columns that count the
categories not run as 0 never become metrics. The score directories under tests/data/bfcl_scores
were written by bfcl-eval 2026.3.23's own writers (its generate.py says how)."""

from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path

import pytest

from registry.errors import UsageError
from runners.eval.scores import BFCL_AGGREGATES, category_scores, parse_score_csv, repeat_metrics
from runners.eval.summary import aggregate

DATA = Path(__file__).parent / "data" / "bfcl_scores"
ROOT = Path(__file__).resolve().parents[1]


def _csv(scenario: str, group: str) -> dict:
    return parse_score_csv((DATA / scenario / f"data_{group}.csv").read_text())[0]


def test_the_users_eval_headline_is_the_category_score_not_bfcls_overall():
    m = repeat_metrics(DATA / "multi_turn_base")
    # what BFCL wrote: Base 70.50 %, its "overall" columns 70.50 / 4 and 0.3 × that
    assert _csv("multi_turn_base", "multi_turn")["Base"] == pytest.approx(0.705)
    assert _csv("multi_turn_base", "multi_turn")["Multi Turn Overall Acc"] == pytest.approx(0.1762)
    assert _csv("multi_turn_base", "overall")["Overall Acc"] == pytest.approx(0.0529)
    assert _csv("multi_turn_base", "live")["Live Overall Acc"] == 0.0
    # what rlreg logs
    assert m["eval/accuracy"] == 141 / 200 == m["eval/multi_turn_base_accuracy"]
    assert m["eval/bfcl/multi_turn/base"] == pytest.approx(0.705)
    assert m["eval/bfcl/overall/multi_turn_base"] == pytest.approx(0.705)
    assert not [k for k in m if "overall_acc" in k or k.endswith(("/live_acc", "/multi_turn_acc"))]
    # and so the parent run (the aggregates the pipeline copies there) never shows 0.053
    parent = aggregate([m, {**m, "eval/accuracy": 0.715}])
    assert parent["eval/accuracy_mean"] == pytest.approx(0.71)
    assert not [k for k in parent if "overall_acc" in k or k.endswith(("/live_acc_mean", "/multi_turn_acc_mean"))]
    assert all(v > 0.5 for k, v in parent.items() if k.endswith("_mean"))


def test_a_whole_multi_turn_group_equals_bfcls_own_group_number():
    m = repeat_metrics(DATA / "multi_turn_all")
    bfcl = _csv("multi_turn_all", "multi_turn")["Multi Turn Overall Acc"]  # unweighted mean of 4 × 200 entries
    assert m["eval/accuracy"] == pytest.approx((141 + 150 + 160 + 170) / 800)
    assert m["eval/accuracy"] == pytest.approx(bfcl, abs=5e-5)  # BFCL prints 2 decimals of a percent
    # complete now, so BFCL's column is kept
    assert m["eval/bfcl/multi_turn/multi_turn_overall_acc"] == bfcl
    assert m["eval/bfcl/overall/multi_turn_acc"] == bfcl
    assert "eval/bfcl/overall/overall_acc" not in m


def test_several_groups_weight_by_entry_count_like_bfcls_live_score():
    m = repeat_metrics(DATA / "live_and_multi_turn_base")
    cats = category_scores(DATA / "live_and_multi_turn_base")
    assert sorted(cats) == ["live_multiple", "live_parallel", "live_parallel_multiple", "live_simple", "multi_turn_base"]
    correct = sum(c["correct_count"] for c in cats.values())
    total = sum(c["total_count"] for c in cats.values())
    assert (correct, total) == (1392, 1551)
    assert m["eval/accuracy"] == pytest.approx(correct / total)
    # BFCL's live score weights its four categories by entry count: the same rule
    live = [c for name, c in cats.items() if name.startswith("live")]
    live_weighted = sum(c["correct_count"] for c in live) / sum(c["total_count"] for c in live)
    assert _csv("live_and_multi_turn_base", "live")["Live Overall Acc"] == pytest.approx(live_weighted, abs=5e-5)
    assert m["eval/bfcl/live/live_overall_acc"] == pytest.approx(live_weighted, abs=5e-5)
    assert "eval/bfcl/multi_turn/multi_turn_overall_acc" not in m  # 3 of 4 categories missing
    for name, c in cats.items():
        assert m[f"eval/{name}_accuracy"] == c["accuracy"]


def test_part_of_a_group_drops_its_overall_column():
    m = repeat_metrics(DATA / "non_live_part")
    assert _csv("non_live_part", "non_live")["Non-Live Overall Acc"] == pytest.approx(0.3167)  # 4 AST groups, 2 zeros
    assert m["eval/accuracy"] == pytest.approx(570 / 600)
    assert m["eval/bfcl/non_live/python_simple_ast"] == pytest.approx(0.95)
    assert "eval/bfcl/non_live/non_live_overall_acc" not in m
    assert "eval/bfcl/multi_turn/multi_turn_overall_acc" not in m  # 0.00 % for a group not run at all


def _wheel() -> Path:
    found = sorted((ROOT / ".cache" / "bfcl").glob("bfcl_eval-*.whl"))
    if not found:
        pytest.skip("no bfcl-eval wheel in .cache/bfcl (pip download bfcl-eval --no-deps -d .cache/bfcl)")
    return found[-1]


def test_the_aggregate_table_matches_the_bfcl_wheel():
    """Every column of BFCL_AGGREGATES exists in the wheel's CSV headers, and the wheel aggregates
    with missing categories counted as 0 in exactly five places (non-live, live, multi-turn,
    agentic, total): a new one in a later BFCL fails here."""
    with zipfile.ZipFile(_wheel()) as zf:
        headers_src = zf.read("bfcl_eval/constants/column_headers.py").decode()
        helper_src = zf.read("bfcl_eval/eval_checker/eval_runner_helper.py").decode()
    headers = {}
    for node in ast.parse(headers_src).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            headers[node.targets[0].id] = ast.literal_eval(node.value)
    by_group = {"non_live": headers["COLUMNS_NON_LIVE"], "live": headers["COLUMNS_LIVE"],
                "multi_turn": headers["COLUMNS_MULTI_TURN"], "agentic": headers["COLUMNS_AGENTIC"],
                "overall": headers["COLUMNS_OVERALL"]}
    for group, column in BFCL_AGGREGATES:
        assert column in by_group[group], (group, column)
    assert len(re.findall(r"display_na_if_category_missing=False", helper_src)) == 5


# -- the builtin backend points multi-turn categories to BFCL ------------------------------------


def test_builtin_backend_refuses_multi_turn_with_the_fix(tmp_path):
    from runners.eval.bfcl_data import load, to_records

    with pytest.raises(UsageError) as info:
        load(None, None, "multi_turn_base", None, tmp_path, None)  # refused before any wheel is read
    text = str(info.value)
    assert text.startswith("eval.bfcl_data.category: BFCL category 'multi_turn_base' is multi-turn")
    assert "eval.backend: bfcl with eval.bfcl.test_category: multi_turn_base" in text
    # the same from a question file: the category, not the record's shape, is what is reported
    question = {"id": "multi_turn_base_0", "question": [[{"role": "user", "content": "cd"}], [{"role": "user", "content": "ls"}]],
                "initial_config": {}, "path": [], "involved_classes": ["GorillaFileSystem"]}
    with pytest.raises(UsageError, match="is multi-turn.*eval.backend: bfcl"):
        to_records([question], [{"id": "multi_turn_base_0", "ground_truth": [["cd()"], ["ls()"]]}], "q.json")


@pytest.mark.parametrize("name", ["verl7", "verl8"])
def test_hardtry_specs_evaluate_as_hardtrys_eval_config5(name):
    """hardtry exps/verl{7,8}/configs/eval_config5.yaml + vllm_config.yaml, with the handler under
    the name the pinned bfcl-eval knows."""
    from registry.loader import load_spec

    ev = load_spec(ROOT / "specs" / f"{name}.yaml").spec.eval
    assert ev.backend == "bfcl" and ev.repeats == 5 and ev.bfcl.test_category == "multi_turn_base"
    assert ev.bfcl.num_threads == 32 and ev.bfcl.gpu_memory_utilization == 0.8
    assert ev.bfcl.tensor_parallel_size == 4 and ev.bfcl.max_model_len == 65536 and ev.bfcl.temperature == 0.001
    assert ev.bfcl.model_name == "Qwen/Qwen3-4B-Instruct-2507-FC"
    with zipfile.ZipFile(_wheel()) as zf:
        config = zf.read("bfcl_eval/constants/model_config.py").decode()
    entry = config[config.index(f'"{ev.bfcl.model_name}": ModelConfig('):][:600]
    assert "model_handler=QwenFCHandler," in entry  # the handler hardtry's "Qwen/Qwen3-4B-FC" named
    assert '"Qwen/Qwen3-4B-FC"' not in config  # gone from this bfcl-eval: pinning it would fail
