"""rlreg's strict tool-call rewards (runners/reward.py `*_strict`), the shared parsers, and loading the
file the way verl does. hardtry's own rules are checked against recorded scores in test_reward_hardtry.py."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runners import reward as R

ROOT = Path(__file__).resolve().parents[1]


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


WEATHER = call("get_weather", city="Paris", unit="celsius")
TIME = call("get_time", timezone="UTC")
GT = "<think>The user wants weather.</think>\n\n" + WEATHER
GT2 = "<think>Two things.</think>\n\n" + WEATHER + "\n" + TIME


# -- parse_tool_calls -------------------------------------------------------------------------
def test_parse_tool_calls_in_order():
    assert R.parse_tool_calls("x " + WEATHER + " y " + TIME) == [
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        {"name": "get_time", "arguments": {"timezone": "UTC"}},
    ]


def test_parse_tool_calls_none_and_empty():
    assert R.parse_tool_calls("no calls here") == []
    assert R.parse_tool_calls("") == []


@pytest.mark.parametrize(
    "text",
    [
        "<tool_call>{not json}</tool_call>",
        WEATHER + "<tool_call>{\"name\": \"x\", </tool_call>",  # one good, one broken -> None
        "<tool_call>{\"name\": \"x\"}",  # unclosed
        "{\"name\": \"x\"}</tool_call>",  # close without open
        "<tool_call>[1, 2]</tool_call>",  # not an object
        "<tool_call>{\"arguments\": {}}</tool_call>",  # no name
        "<tool_call>{\"name\": 3}</tool_call>",  # name not a string
    ],
)
def test_parse_tool_calls_malformed_is_none(text):
    assert R.parse_tool_calls(text) is None


def test_parse_decodes_string_arguments():
    text = "<tool_call>" + json.dumps({"name": "f", "arguments": json.dumps({"a": 1})}) + "</tool_call>"
    assert R.parse_tool_calls(text) == [{"name": "f", "arguments": {"a": 1}}]
    # a string that is not a JSON object stays a string
    text = "<tool_call>" + json.dumps({"name": "f", "arguments": "plain"}) + "</tool_call>"
    assert R.parse_tool_calls(text) == [{"name": "f", "arguments": "plain"}]


# -- split_think ------------------------------------------------------------------------------
def test_split_think_ok():
    assert R.split_think("<think>why</think>\n\nanswer") == ("why", "answer")


def test_split_think_opened_by_the_prompt():
    # Qwen3-Thinking templates end the prompt with "<think>\n": the response only closes it
    assert R.split_think("reasoning\n</think>\n\n" + WEATHER) == ("reasoning\n", WEATHER)


@pytest.mark.parametrize(
    "text",
    [
        WEATHER,  # no think at all
        "<think>why</think>" + WEATHER,  # no blank line after </think>
        "<think>why</think>\n" + WEATHER,  # only one newline
        "<think>a</think>\n\n<think>b</think>\n\n" + WEATHER,  # two blocks
        "<think><think>a</think>\n\n" + WEATHER,  # two opens
        "preamble <think>a</think>\n\n" + WEATHER,  # text before the block
        "<think>a</think>\n\n<think> " + WEATHER,  # an open after the block
    ],
)
def test_split_think_rejects(text):
    assert R.split_think(text) is None


# -- tool_calls_match -------------------------------------------------------------------------
def test_match_is_order_insensitive_multiset():
    a = {"name": "a", "arguments": {"x": 1}}
    b = {"name": "b", "arguments": {}}
    assert R.tool_calls_match([a, b], [b, a])
    assert not R.tool_calls_match([a, a], [a])  # duplicates count
    assert not R.tool_calls_match([a, a, b], [a, b, b])
    assert R.tool_calls_match([a, a], [a, a])
    assert not R.tool_calls_match([], [a])
    assert R.tool_calls_match([], [])


def test_match_nested_structures():
    x = {"name": "f", "arguments": {"filter": {"tags": ["a", "b"], "range": {"lo": 1, "hi": 2}}}}
    y = {"arguments": {"filter": {"range": {"hi": 2, "lo": 1}, "tags": ["b", "a"]}}, "name": "f"}
    assert R.tool_calls_match([x], [y])
    z = {"name": "f", "arguments": {"filter": {"tags": ["a", "a", "b"], "range": {"lo": 1, "hi": 2}}}}
    assert not R.tool_calls_match([x], [z])  # nested lists are multisets, not sets
    w = {"name": "f", "arguments": {"filter": {"tags": ["a", "b"], "range": {"lo": 1, "hi": 3}}}}
    assert not R.tool_calls_match([x], [w])


def test_match_value_types():
    f = lambda v: [{"name": "f", "arguments": {"v": v}}]
    assert R.tool_calls_match(f(1), f(1.0))
    assert not R.tool_calls_match(f(True), f(1))
    assert not R.tool_calls_match(f("1"), f(1))
    assert not R.tool_calls_match(f(None), f("null"))
    assert not R.tool_calls_match(f(1.5), f(1))
    assert R.tool_calls_match(f("Paris"), f("Paris"))
    assert not R.tool_calls_match(f("paris"), f("Paris"))  # strings are exact


def test_match_string_vs_object_arguments():
    obj = [{"name": "f", "arguments": {"a": 1, "b": [1, 2]}}]
    s = [{"name": "f", "arguments": json.dumps({"b": [2, 1], "a": 1})}]
    assert R.tool_calls_match(obj, s)


def test_match_none_is_false():
    assert not R.tool_calls_match(None, [])


# -- think_tool_call_reward -------------------------------------------------------------------
def test_think_reward_exact():
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, GT) == 1.0


def test_think_reward_prompt_opened_think():
    assert R.think_tool_call_strict_reward("ok\n</think>\n\n" + WEATHER, GT) == 1.0


def test_think_reward_two_calls_any_order():
    assert R.think_tool_call_strict_reward("<think>t</think>\n\n" + TIME + "\n" + WEATHER, GT2) == 1.0
    assert R.think_tool_call_strict_reward("<think>t</think>\n\n" + TIME, GT2) == 0.0
    assert R.think_tool_call_strict_reward("<think>t</think>\n\n" + WEATHER + WEATHER + TIME, GT2) == 0.0


@pytest.mark.parametrize(
    "response",
    [
        WEATHER,  # no think
        "<think>ok</think>" + WEATHER,  # no \n\n
        "<think>ok</think>\n\nThe weather in Paris is nice.",  # no tool call
        "<think>ok</think>\n\n" + call("get_weather", city="Paris", unit="fahrenheit"),
        "<think>ok</think>\n\n" + call("get_weather", city="Paris"),  # missing arg
        "<think>ok</think>\n\n" + call("get_weather", city="Paris", unit="celsius", days=1),  # extra arg
        "<think>ok</think>\n\n<tool_call>{\"name\": \"get_weather\", </tool_call>",
        "<think>ok</think>\n\n" + WEATHER + "<tool_call>oops</tool_call>",  # one broken block
        "<think>" + WEATHER + "</think>\n\n",  # the call only inside the think
        "",
    ],
)
def test_think_reward_zero(response):
    assert R.think_tool_call_strict_reward(response, GT) == 0.0


def test_think_reward_extra_text_is_ignored():
    response = "<think>ok</think>\n\nSure, checking.\n" + WEATHER + "\nDone."
    assert R.think_tool_call_strict_reward(response, GT) == 1.0


def test_ground_truth_without_think_and_as_list():
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, WEATHER) == 1.0
    parsed = [{"name": "get_weather", "arguments": {"unit": "celsius", "city": "Paris"}}]
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, parsed) == 1.0


def test_ground_truth_without_calls_scores_zero():
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, "<think>x</think>\n\nno call") == 0.0
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, None) == 0.0


def test_ground_truth_think_mentioning_tool_call_tag_is_ignored():
    gt = "<think>I will emit <tool_call> now</think>\n\n" + WEATHER
    assert R.think_tool_call_strict_reward("<think>ok</think>\n\n" + WEATHER, gt) == 1.0


# -- tool_call_reward (no think) --------------------------------------------------------------
def test_no_think_reward():
    assert R.tool_call_strict_reward(WEATHER, GT) == 1.0
    assert R.tool_call_strict_reward("<think>ok</think>" + WEATHER, GT) == 1.0  # format not checked
    assert R.tool_call_strict_reward("text only", GT) == 0.0
    assert R.tool_call_strict_reward(TIME, GT) == 0.0
    assert R.tool_call_strict_reward(None, GT) == 0.0  # type: ignore[arg-type]


# -- verl interface ---------------------------------------------------------------------------
def test_compute_score_variants():
    no_think = WEATHER
    assert R.compute_score("hardgen", no_think, GT) == 0.0  # default: think required
    assert R.compute_score("hardgen", no_think, GT, reward_function="tool_call") == 1.0
    assert R.compute_score("hardgen", no_think, GT, extra_info={"reward_function": "tool_call"}) == 1.0
    assert R.compute_score("hardgen", "<think>a</think>\n\n" + WEATHER, GT, extra_info={"split": "train"}) == 1.0
    with pytest.raises(ValueError, match="unknown reward_function 'tool_calls'"):
        R.compute_score("hardgen", no_think, GT, reward_function="tool_calls")


def test_reward_functions_cover_spec_literal():
    from typing import get_args

    from registry.spec.reward import RewardSpec

    names = set(get_args(RewardSpec.model_fields["function"].annotation))
    assert names == set(R.REWARD_FUNCTIONS)


def test_loads_as_standalone_file_like_verl(tmp_path):
    # verl: importlib.util.spec_from_file_location("custom_module", path) + exec_module
    copy = tmp_path / "reward_copy.py"
    copy.write_bytes((ROOT / "runners" / "reward.py").read_bytes())
    spec = importlib.util.spec_from_file_location("custom_module", copy)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_module"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("custom_module", None)
    assert module.compute_score("d", "<think>a</think>\n\n" + WEATHER, GT) == 1.0
    assert module.reward_source_hash() == R.reward_source_hash()


def test_reward_is_stdlib_only():
    import ast

    tree = ast.parse((ROOT / "runners" / "reward.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no package-relative imports: verl loads this file by path"
            modules.add(node.module.split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}


def test_reward_source_hash():
    expected = hashlib.sha256((ROOT / "runners" / "reward.py").read_bytes()).hexdigest()
    assert R.reward_source_hash() == expected


# -- properties -------------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([0.5, 2.25]), st.text(max_size=3))
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                     max_leaves=8)
_calls = st.lists(st.builds(lambda n, a: {"name": n, "arguments": a}, st.sampled_from(["f", "g"]),
                            st.dictionaries(st.text(max_size=3), _json, max_size=3)), min_size=1, max_size=4)


def _shuffle_deep(value, rnd):
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffle_deep(v, rnd) for k, v in items}
    if isinstance(value, list):
        out = [_shuffle_deep(v, rnd) for v in value]
        rnd.shuffle(out)
        return out
    return value


@settings(max_examples=150, deadline=None)
@given(calls=_calls, seed=st.integers(0, 10_000))
def test_property_match_ignores_order_everywhere(calls, seed):
    import random

    shuffled = _shuffle_deep(calls, random.Random(seed))
    assert R.tool_calls_match(calls, shuffled)
    assert not R.tool_calls_match(calls, shuffled + [calls[0]])  # one more call: a different multiset
    # and the full path: rendered as text, parsed back, scored
    text = "\n".join("<tool_call>\n" + json.dumps(c) + "\n</tool_call>" for c in shuffled)
    gt = "<think>x</think>\n\n" + "\n".join("<tool_call>" + json.dumps(c) + "</tool_call>" for c in calls)
    assert R.think_tool_call_strict_reward("<think>y</think>\n\n" + text, gt) == 1.0


VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not VERL_PYTHON.exists(), reason="needs the verl venv (.venv-verl)")
def test_verl_loads_and_calls_the_reward_file():
    # verl 0.9.1's own loader and config keys, with the no-think variant chosen by reward_kwargs
    import subprocess

    script = f"""
from hydra import compose, initialize_config_module
from verl.trainer.ppo.reward import get_custom_reward_fn
with initialize_config_module(config_module="verl.trainer.config", version_base=None):
    cfg = compose(config_name="ppo_trainer", overrides=[
        "reward.custom_reward_function.path={ROOT / 'runners' / 'reward.py'}",
        "reward.custom_reward_function.name=compute_score",
        "+reward.custom_reward_function.reward_kwargs.reward_function=tool_call"])
fn = get_custom_reward_fn(cfg)
gt = {GT!r}
print(fn(data_source="hardgen", solution_str={WEATHER!r}, ground_truth=gt, extra_info={{"split": "train"}},
         reward_router_address=None), fn(data_source="hardgen", solution_str={TIME!r}, ground_truth=gt, extra_info={{}}))
"""
    out = subprocess.run([str(VERL_PYTHON), "-c", script], check=False, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1.0 0.0"
