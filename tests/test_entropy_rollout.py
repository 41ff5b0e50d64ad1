"""Per-round bookkeeping of the multi-turn tool rollout, tool sources, malformed calls, datasets."""

from __future__ import annotations

import json

import pytest
from entropy_scripted import ScriptedBackend

from registry.errors import InputDataError
from runners.common.tools import ToolAnswerer, load_tools_config
from runners.entropy.conversations import (
    Conversation,
    RecordedRound,
    load_conversations,
)
from runners.entropy.rollout import rollout

CALL = '<think>t</think>\n\n<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'


def call(tool: str, **args) -> str:
    return CALL.format(name=tool, args=json.dumps(args))


def conv(idx: int, recorded=()) -> Conversation:
    return Conversation(idx, [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{idx}"}], None,
                        list(recorded))


def tool_turns(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "tool"]


def test_rounds_entropies_and_replayed_answers_are_recorded_per_round():
    # Conversation 0: calls lookup twice (answers replayed), then ends. Conversation 1: ends at once.
    recorded = [RecordedRound(["lookup"], ["ANSWER-1"]), RecordedRound([None], ["ANSWER-2"])]
    seen_answers = []

    def script(messages):
        user = messages[1]["content"]
        rnd = len(tool_turns(messages))
        seen_answers.append(tool_turns(messages))
        if user == "q0" and rnd < 2:
            return call("lookup", q=rnd), [0.1 * (rnd + 1)] * 3, "tool_call"
        return "done", [0.9, 0.7], "end"

    backend = ScriptedBackend(script)
    results, stats = rollout([conv(0, recorded), conv(1)], backend, ToolAnswerer("replay"), max_rounds=5,
                             max_prompt_length=10_000, max_response_length=100, batch_size=2, model="m")
    r0, r1 = results
    assert [(r.round, r.is_after_tool_call) for r in r0.rounds] == [(0, False), (1, True), (2, True)]
    assert [r.entropy for r in r0.rounds] == pytest.approx([0.1, 0.2, 0.8])
    assert [r.tool_name for r in r0.rounds] == [None, "lookup", "lookup"]
    assert [r.parsed for r in r0.rounds] == [None, True, True]
    assert [r.tool_source for r in r0.rounds] == [None, "replay", "replay"]
    assert [r.finish for r in r0.rounds] == ["tool_call", "tool_call", "end"]
    assert tool_turns(r0.messages) == ["ANSWER-1", "ANSWER-2"]
    assert "<tool_response>\nANSWER-1\n</tool_response>" in r0.response and r0.response.endswith("done")
    assert [(r.round, r.entropy) for r in r1.rounds] == [(0, pytest.approx(0.8))]
    assert r0.finish == "end" and r1.finish == "end"
    # Round 2 of conversation 0 saw both replayed answers in its prompt.
    assert ["ANSWER-1", "ANSWER-2"] in seen_answers
    assert (stats.rounds, stats.tool_calls, stats.replayed, stats.tool_errors) == (4, 2, 2, 0)
    assert all(rec.model == "m" for rec in r0.rounds)


def test_max_rounds_caps_tool_answers_read():
    backend = ScriptedBackend(lambda m: (call("lookup"), [0.5], "tool_call"))
    answerer = ToolAnswerer("tools_config", {"lookup": lambda: "ok"})
    (res,), stats = rollout([conv(0)], backend, answerer, max_rounds=2, max_prompt_length=10_000,
                            max_response_length=1000, batch_size=1)
    assert [r.round for r in res.rounds] == [0, 1, 2]
    assert tool_turns(res.messages) == ["ok", "ok"]
    assert res.finish == "max_rounds" and stats.executed == 2


def test_token_budget_is_shared_across_rounds():
    text = "a b c d " + call("lookup")
    words = len(text.split())  # the scripted backend spends one "token" per word
    backend = ScriptedBackend(lambda m: (text, [0.5], "tool_call"))
    answerer = ToolAnswerer("tools_config", {"lookup": lambda: "ok"})
    (res,), _ = rollout([conv(0)], backend, answerer, max_rounds=10, max_prompt_length=10_000,
                        max_response_length=2 * words + 3, batch_size=1)
    # Budget 2w+3 → w+3 → 3: the third round is cut by length.
    assert backend.budgets == [2 * words + 3, words + 3, 3]
    assert res.finish == "length" and res.rounds[-1].finish == "length"


def test_long_prompts_are_skipped_and_counted():
    backend = ScriptedBackend(lambda m: ("x", [0.5], "end"))
    long_conv = Conversation(1, [{"role": "user", "content": "q" * 500}], None)
    results, stats = rollout([conv(0), long_conv], backend, ToolAnswerer("replay"), max_rounds=1,
                             max_prompt_length=200, max_response_length=10, batch_size=4)
    assert [r.conv.sample_idx for r in results] == [0] and stats.skipped_long_prompts == 1


@pytest.mark.parametrize("text", [
    '<tool_call>\n{"name": "lookup", "arguments": {"q": 1}\n</tool_call>',  # broken JSON
    '<tool_call>\n["lookup"]\n</tool_call>',  # not an object with a name
    '<tool_call><tool_call>{"name": "lookup"}</tool_call>',  # unbalanced tags
])
def test_malformed_call_gets_an_error_answer_and_parsed_false(text):
    replies = iter([(text, [0.3], "tool_call"), ("fine", [0.6], "end")])
    backend = ScriptedBackend(lambda m: next(replies))
    (res,), stats = rollout([conv(0, [RecordedRound(["lookup"], ["never used"])])], backend,
                            ToolAnswerer("replay"), max_rounds=3, max_prompt_length=10_000,
                            max_response_length=100, batch_size=1)
    assert [r.parsed for r in res.rounds] == [None, False]
    assert res.rounds[1].tool_source == "error" and stats.malformed_calls == 1
    answer = tool_turns(res.messages)[0]
    assert answer.startswith("Error: the tool call could not be parsed")
    # The name is still recovered for the record when it is readable.
    assert res.rounds[1].tool_name == ("lookup" if '"name": "lookup"' in text else None)


def test_replay_falls_back_to_callables_then_to_an_error():
    c = conv(0, [RecordedRound(["find"], ["recorded city"])])
    answerer = ToolAnswerer("replay", {"weather": lambda city, unit: {"city": city, "t": 20}})
    # Round 1: recorded answer exists and names match → replay.
    (a,) = answerer.answer(c, 1, call("find", landmark="x"))
    assert (a.content, a.source, a.parsed) == ("recorded city", "replay", True)
    # Round 1 but a different tool than recorded → the callable runs instead.
    (b,) = answerer.answer(c, 1, call("weather", city="Oslo", unit="celsius"))
    assert (json.loads(b.content), b.source) == ({"city": "Oslo", "t": 20}, "tools_config")
    # Round 2: nothing recorded and no callable → an explanatory error.
    (e,) = answerer.answer(c, 2, call("find", landmark="x"))
    assert e.source == "error" and "unknown tool 'find'" in e.content and "weather" in e.content


def test_tools_config_errors_become_tool_answers():
    answerer = ToolAnswerer("tools_config", {"weather": lambda city, unit: "sunny"})
    (bad_args,) = answerer.answer(conv(0), 1, call("weather", town="Oslo"))
    assert bad_args.source == "tools_config" and bad_args.content.startswith("Error: weather raised TypeError")
    (ok,) = answerer.answer(conv(0), 1, call("weather", city="Oslo", unit="celsius"))
    assert ok.content == "sunny"


def test_a_hanging_tool_is_answered_with_a_timeout_error_and_the_next_call_still_runs():
    import time

    answerer = ToolAnswerer("tools_config", {"slow": lambda: time.sleep(60), "fast": lambda: "ok"}, timeout_s=0.2)
    t0 = time.monotonic()
    (hung,) = answerer.answer(conv(0), 1, call("slow"))
    assert time.monotonic() - t0 < 30  # not the tool's 60 s
    assert hung.content == "Error: slow did not answer within 0.2 s"
    (ok,) = answerer.answer(conv(0), 1, call("fast"))
    assert ok.content == "ok"


def test_load_tools_config_imports_callables(tmp_path):
    (tmp_path / "mytools.py").write_text("def echo(text):\n    return text.upper()\n")
    cfg = tmp_path / "tools.yaml"
    cfg.write_text("tools:\n  echo: mytools.py:echo\n  weather: {callable: runners.demo_tools:get_weather}\n")
    tools = load_tools_config(cfg)
    assert tools["echo"](text="hi") == "HI"
    assert tools["weather"](city="Oslo", unit="celsius")["city"] == "Oslo"


@pytest.mark.parametrize("body, message", [
    ("tools: []\n", "expected a mapping"),
    ("tools:\n  x: nomodule\n", 'tools.x: expected "module:function"'),
    ("tools:\n  x: not_a_module_xyz:fn\n", "tools.x: cannot import 'not_a_module_xyz'"),
    ("tools:\n  x: runners.demo_tools:nope\n", "has no callable 'nope'"),
])
def test_load_tools_config_errors_name_the_entry(tmp_path, body, message):
    cfg = tmp_path / "tools.yaml"
    cfg.write_text(body)
    with pytest.raises(InputDataError, match=message) as info:
        load_tools_config(cfg)
    assert str(cfg) in str(info.value)


def test_demo_tools_config_covers_every_synthetic_tool():
    from pathlib import Path

    from runners.synth_data import MULTI_TURN_TOOLS, TOOLS, make_record

    tools = load_tools_config(Path(__file__).parents[1] / "specs/tools/demo_tools.yaml")
    assert set(tools) == set(TOOLS) | set(MULTI_TURN_TOOLS)
    # Each tool runs on the arguments the dataset itself uses.
    answerer = ToolAnswerer("tools_config", tools)
    for i in range(60):
        rec = make_record(0, i)
        for m in rec["messages"]:
            if m["role"] != "assistant":
                continue
            for a in answerer.answer(conv(0), 1, m["content"]):
                assert a.source == "tools_config" and not a.content.startswith("Error"), (m["content"], a.content)


def test_load_conversations_from_jsonl_splits_prompt_and_recorded_rounds(tmp_path):
    from runners.synth_data import make_record

    recs = [make_record(0, i, tool_response_fraction=1.0) for i in range(3)]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    convs = load_conversations(path, limit=2)
    assert len(convs) == 2
    c = convs[0]
    assert [m["role"] for m in c.prompt] == ["system", "user"]
    assert c.tools and len(c.recorded) == 1
    assert c.recorded[0].answers == [recs[0]["messages"][3]["content"]]
    assert c.recorded[0].call_names == [json.loads(recs[0]["messages"][2]["content"].split("<tool_call>")[1]
                                                    .split("</tool_call>")[0])["name"]]


def test_load_conversations_from_convert_parquet(tmp_path):
    import pandas as pd

    from runners.synth_data import make_record

    rows = []
    for i in range(4):
        rec = make_record(1, i, tool_response_fraction=0.5)
        rows.append({"data_source": "hardgen", "prompt": rec["messages"][:-1], "ability": "function_call",
                     "reward_model": {"style": "rule", "ground_truth": rec["messages"][-1]["content"]},
                     "extra_info": {"split": "test", "index": i, "tools": json.dumps(rec["tools"])}})
    path = tmp_path / "test.parquet"
    pd.DataFrame(rows).to_parquet(path)
    convs = load_conversations(path)
    assert [c.sample_idx for c in convs] == [0, 1, 2, 3]
    assert all(c.prompt[-1]["role"] == "user" and c.tools for c in convs)
    assert sum(len(c.recorded) for c in convs) == sum(
        any(m["role"] == "tool" for m in r["prompt"]) for r in rows)


def test_record_type_from_structure_in_parquet_and_jsonl(tmp_path):
    # One record of each synthetic kind; the parquet keeps the final answer only as ground truth.
    import pandas as pd

    from runners.synth_data import make_record

    recs = {"with_tool_turn": make_record(0, 0, tool_response_fraction=1.0),
            "multi_call": make_record(0, 1, tool_response_fraction=0.0, two_call_fraction=1.0),
            "single_call": make_record(0, 2, tool_response_fraction=0.0, two_call_fraction=0.0)}
    assert recs["multi_call"]["messages"][-1]["content"].count("<tool_call>") == 2
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in recs.values()))
    prompt_only = {"messages": recs["single_call"]["messages"][:-1]}
    no_call = {"messages": [*prompt_only["messages"], {"role": "assistant", "content": "It is sunny."}]}
    jsonl.write_text(jsonl.read_text() + json.dumps(prompt_only) + "\n" + json.dumps(no_call) + "\n")
    assert [c.record_type for c in load_conversations(jsonl)] == [*recs, "unknown", "no_call"]

    rows = [{"prompt": r["messages"][:-1], "reward_model": {"style": "rule", "ground_truth": r["messages"][-1]["content"]},
             "extra_info": {"tools": json.dumps(r["tools"])}} for r in recs.values()]
    path = tmp_path / "test.parquet"
    pd.DataFrame(rows).to_parquet(path)
    assert [c.record_type for c in load_conversations(path)] == list(recs)
    pd.DataFrame(rows).drop(columns=["reward_model"]).to_parquet(path)  # no ground truth: only the tool turn tells
    assert [c.record_type for c in load_conversations(path)] == ["with_tool_turn", "unknown", "unknown"]


def test_every_round_record_carries_its_conversations_record_type():
    def script(messages):
        if not tool_turns(messages):
            return call("lookup", q=1), [0.2], "tool_call"
        return "done", [0.5], "end"

    convs = [conv(0), conv(1)]
    convs[0].record_type, convs[1].record_type = "single_call", "with_tool_turn"
    results, _ = rollout(convs, ScriptedBackend(script), ToolAnswerer("replay"), max_rounds=3,
                         max_prompt_length=10_000, max_response_length=100, batch_size=2)
    assert [[r.record_type for r in res.rounds] for res in results] == [["single_call"] * 2, ["with_tool_turn"] * 2]
    assert results[0].rounds[1].to_json()["record_type"] == "single_call"


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 1: not valid JSON"),
    ('{"text": "x"}', "line 1: expected an object with a `messages` list"),
    ('{"messages": [{"role": "bot", "content": "x"}]}', r"line 1: messages\[0\]: each turn needs a role"),
    ('{"messages": [{"role": "system", "content": "x"}]}', "line 1: no user turn"),
])
def test_bad_dataset_records_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InputDataError, match=message) as info:
        load_conversations(path)
    assert str(path) in str(info.value)
