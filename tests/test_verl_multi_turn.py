"""``train.rollout.multi_turn`` -> verl 0.9.1 (no verl needed here; tests/test_verl_multi_turn_venv.py
composes, validates and runs the tools with verl itself): the keys, the tool files, the rows verl's
tool_agent loop reads, the answer wording and the final-turn reward."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from registry.errors import InputDataError
from registry.loader import deep_merge, load_spec
from registry.spec import Spec
from runners import demo_tools
from runners import reward as R
from runners.synth_data import generate_records
from runners.verl import multi_turn as M
from runners.verl import multi_turn_data as D
from runners.verl import multi_turn_reward as W
from runners.verl import tool_runtime as T
from runners.verl.config import MULTI_TURN_REWARD_FILE, build_config, get_dotted

ROOT = Path(__file__).resolve().parents[1]
DEMO_TOOLS = ROOT / "specs" / "tools" / "demo_tools.yaml"


def multi_turn_spec(base: str = "verl8", **multi_turn) -> Spec:
    spec = load_spec(ROOT / "specs" / f"{base}.yaml").spec
    data = deep_merge(spec.model_dump(mode="json"), {"train": {"rollout": {"multi_turn": {"enable": True, **multi_turn}}}})
    data.pop("extends", None)
    return Spec.model_validate(data)


def launch(spec: Spec, tools_dir="/work/verl"):
    return build_config(spec.train, spec, model_path="/m", train_files="/d/train.parquet", val_files="/d/test.parquet",
                        checkpoint_dir="/ckpt", env_vars={}, tools_dir=tools_dir)


def write_convert_parquet(path: Path, records: list[dict]) -> Path:
    """The convert stage's rows for ``records`` (its own record -> row code and writer)."""
    from runners.convert.records import normalize, to_row
    from runners.convert.writer import SplitWriter

    writer = SplitWriter(path, batch_size=100)
    for i, rec in enumerate(records):
        prompt, truth, tools = normalize(rec)
        writer.add(to_row(prompt, truth, tools, data_source="hardgen", ability="function_call", split="train",
                          index=i, source_index=i))
    writer.close()
    return path


def mixed_records(n=12):
    # multi-turn tasks, the older recorded-chain kind and single calls
    return list(generate_records(n, 0, 0.25, 0.2, 1, multi_turn_fraction=0.4))


# -- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 3, 7])
def test_keys_map_to_verls_multi_turn_section(rounds):
    spec = multi_turn_spec(max_tool_rounds=rounds, max_tool_response_length=512, tool_response_truncate_side="left")
    cfg = launch(spec).config
    mt = get_dotted(cfg, "actor_rollout_ref.rollout.multi_turn")
    assert mt == {
        "enable": True,
        "max_assistant_turns": rounds + 1,  # verl counts generations: one more than tool answers read
        "max_tool_response_length": 512,
        "tool_response_truncate_side": "left",
        "format": "hermes",
        "tool_config_path": "/work/verl/rlreg_tool_config.yaml",  # replay is the default tool_source
    }
    assert get_dotted(cfg, "actor_rollout_ref.rollout.agent.default_agent_loop") == "tool_agent"


def test_tools_config_source_uses_a_function_tool_file():
    spec = multi_turn_spec(tool_source="tools_config", tools_config="specs/tools/demo_tools.yaml")
    mt = get_dotted(launch(spec).config, "actor_rollout_ref.rollout.multi_turn")
    assert mt["function_tool_path"] == "/work/verl/rlreg_function_tools.py" and "tool_config_path" not in mt


def test_off_by_default_changes_nothing():
    spec = load_spec(ROOT / "specs" / "verl8.yaml").spec
    rollout = get_dotted(launch(spec).config, "actor_rollout_ref.rollout")
    assert "multi_turn" not in rollout and "agent" not in rollout
    assert get_dotted(launch(spec).config, "reward.custom_reward_function.path") == str(ROOT / "runners" / "reward.py")


def test_reward_wraps_the_specs_reward():
    cfg = launch(multi_turn_spec()).config
    crf = get_dotted(cfg, "reward.custom_reward_function")
    assert crf["path"] == str(MULTI_TURN_REWARD_FILE) and crf["name"] == "compute_score"
    assert crf["reward_kwargs"]["rlreg_reward_path"] == str(ROOT / "runners" / "reward.py")
    assert crf["reward_kwargs"]["rlreg_reward_name"] == "compute_score"
    assert crf["reward_kwargs"]["reward_function"] == "think_tool_call"


# -- reward on the final turn --------------------------------------------------------------------


def test_final_turn_of_a_decoded_trajectory():
    rec = next(r for r in generate_records(5, 0, 0, 0, 0, multi_turn_fraction=1.0))
    first, tool, final = (m["content"] for m in rec["messages"][2:])
    # what verl's reward manager decodes with skip_special_tokens=True (ChatML markers gone)
    decoded = f"{first}user\n<tool_response>\n{tool}\n</tool_response>\nassistant\n{final}"
    assert W.final_turn(decoded) == final
    assert W.final_turn(final) == final  # never read a tool answer: scored as it is
    # the whole text holds both calls and scores 0 against the one-call ground truth under the
    # rewards that read every call (think_tool_call reads after the last </think> and is spared)
    assert R.tool_call_reward(decoded, final) == 0.0 and R.graded_tool_call_reward(decoded, final) == 0.1
    for function, expected in [("tool_call", 1.0), ("graded_tool_call", 1.1), ("think_tool_call", 1.0)]:
        score = W.compute_score("hardgen", decoded, final, None, rlreg_reward_path=str(ROOT / "runners" / "reward.py"),
                                rlreg_reward_name="compute_score", reward_function=function)
        assert score == pytest.approx(expected)


# -- data -----------------------------------------------------------------------------------------


def test_rows_for_the_tool_agent(tmp_path):
    records = mixed_records()
    src = write_convert_parquet(tmp_path / "train.parquet", records)
    schemas = M.dataset_tool_schemas([src])
    stats = D.prepare_parquet(src, tmp_path / "mt.parquet", list(schemas), replay=True)
    rows = pq.read_table(tmp_path / "mt.parquet").to_pylist()
    assert stats["rows"] == len(records) == len(rows)
    with_tool = 0
    for rec, row, before in zip(records, rows, pq.read_table(src).to_pylist()):
        msgs = rec["messages"]
        first = next(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        assert [(m["role"], m["content"]) for m in row["prompt"]] == [(m["role"], m["content"]) for m in msgs[:first]]
        assert row["agent_name"] == "tool_agent"
        assert row["reward_model"] == before["reward_model"]  # the ground truth is the final answer still
        assert row["extra_info"]["tool_selection"] == [t["function"]["name"] for t in rec["tools"]]
        kwargs = row["extra_info"]["tools_kwargs"]
        assert set(kwargs) == set(schemas)  # one uniform struct: every tool, every row
        recorded = json.loads(kwargs["find_account"]["create_kwargs"]["recorded"])
        tools = [m["content"] for m in msgs[:-1] if m["role"] == "tool"]
        assert [a for r in recorded for a in r["answers"]] == tools
        if tools:
            with_tool += 1
            assert recorded[0]["calls"] == [R.parse_tool_calls(msgs[first]["content"])[0]["name"]]
    assert stats["rows_with_recorded_rounds"] == with_tool > 0


def test_tools_config_rows_carry_no_tools_kwargs(tmp_path):
    src = write_convert_parquet(tmp_path / "train.parquet", mixed_records(4))
    D.prepare_parquet(src, tmp_path / "mt.parquet", ["find_account"], replay=False)
    assert "tools_kwargs" not in pq.read_table(tmp_path / "mt.parquet").to_pylist()[0]["extra_info"]


# -- tool files -------------------------------------------------------------------------------------


def test_tool_files(tmp_path):
    src = write_convert_parquet(tmp_path / "train.parquet", mixed_records())
    schemas = M.dataset_tool_schemas([src])
    assert {"find_account", "list_orders"} <= set(schemas)
    replay = M.write_tool_files(multi_turn_spec().train.rollout.multi_turn, tmp_path / "r", schemas, DEMO_TOOLS)
    import yaml

    doc = yaml.safe_load(replay.read_text())
    by_name = {t["tool_schema"]["function"]["name"]: t for t in doc["tools"]}
    assert set(by_name) == set(schemas)
    assert all(t["class_name"] == "runners.verl.replay_tool.ReplayTool" for t in doc["tools"])
    assert by_name["find_account"]["config"] == {"type": "native", "callable": "runners.demo_tools:find_account",
                                                "known": sorted(set(schemas) | set(M.read_tools_config(DEMO_TOOLS)))}
    mt = multi_turn_spec(tool_source="tools_config", tools_config="specs/tools/demo_tools.yaml").train.rollout.multi_turn
    source = M.write_tool_files(mt, tmp_path / "f", schemas, DEMO_TOOLS).read_text()
    compile(source, "rlreg_function_tools.py", "exec")  # verl's venv imports it (test_verl_multi_turn_venv)
    assert "function_tool(_name, schema=_tool['schema'])" in source


def test_tool_file_errors(tmp_path):
    mt = multi_turn_spec().train.rollout.multi_turn
    with pytest.raises(InputDataError, match="offers no tools"):
        M.write_tool_files(mt, tmp_path, {}, None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools: {x: no_colon}\n")
    with pytest.raises(InputDataError, match=r"tools\.x"):
        M.read_tools_config(bad)
    rel = tmp_path / "rel.yaml"
    rel.write_text("tools: {t: my_tools.py:fn}\n")
    assert M.read_tools_config(rel) == {"t": f"{tmp_path.resolve() / 'my_tools.py'}:fn"}


# -- answer wording --------------------------------------------------------------------------------


def _builtin_answerer():
    try:
        from runners.common.tools import ToolAnswerer  # where helper multiturn moves it
    except ImportError:
        from runners.entropy.tools import ToolAnswerer
    return ToolAnswerer


def test_executed_answers_are_worded_like_the_builtin():
    answerer = _builtin_answerer()("tools_config", {"lookup_user": demo_tools.lookup_user,
                                                    "find_landmark": demo_tools.find_landmark})
    for name, args in [("lookup_user", {"name": "bob17"}), ("find_landmark", {"name": "Nowhere"}),
                       ("lookup_user", ["not", "a", "dict"]), ("lookup_user", {"wrong": 1})]:
        fn = answerer.tools[name]
        assert T.execute(name, fn, args) == answerer._execute(name, args)


def test_recorded_answer_rules():
    recorded = [{"calls": ["lookup_user"], "answers": ["A1"]}, {"calls": [None], "answers": ["A2"]}]
    assert T.recorded_answer(recorded, 1, "lookup_user") == "A1"
    assert T.recorded_answer(recorded, 1, "get_orders") is None  # another tool: not replayed
    assert T.recorded_answer(recorded, 2, "anything") == "A2"  # unknown recorded name: best effort
    assert T.recorded_answer(recorded, 3, "lookup_user") is None and T.recorded_answer(recorded, 0, "x") is None
    call = T.answering("lookup_user", "runners.demo_tools:lookup_user", ["lookup_user"])
    assert json.loads(call(name="bob17")) == demo_tools.lookup_user("bob17")
    assert T.answering("nope", None, ["lookup_user"])().startswith("Error: unknown tool 'nope'")


# -- per-round entropy (written by the plugin in verl's driver) -------------------------------------


def test_round_entropy_key():
    spec = multi_turn_spec(entropy_k=7)
    cfg = build_config(spec.train, spec, model_path="/m", train_files="/t", val_files="/v", checkpoint_dir="/c",
                       env_vars={}, entropy_dir="/work/entropy_steps")
    assert cfg.config["algorithm"]["round_entropy"] == {"k": 7, "dir": "/work/entropy_steps"}
    assert "round_entropy" not in launch(load_spec(ROOT / "specs" / "verl8.yaml").spec).config["algorithm"]


def test_round_records_on_a_non_contiguous_mask(tmp_path):
    import math

    import torch

    from runners.verl import round_entropy as E

    # turn 0 (4 tokens) | tool (3, masked) | turn 1 (3) | padding
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    ent = torch.tensor([[1.0, 2.0, 3.0, 4.0, 50.0, 50.0, 50.0, 6.0, 8.0, 10.0, 50.0, 50.0],
                        [2.0, 4.0] + [50.0] * 10])
    assert E.mask_rounds(mask[0]) == [(0, 4), (7, 3)] and E.mask_rounds(mask[1]) == [(0, 2)]
    recs = E.round_records(ent, mask, k=2, vocab_size=100, step=3, uids=["a", "b"])
    log_v = math.log(100)
    assert [(r["sample_idx"], r["round"], r["is_after_tool_call"], r["k_used"], r["num_tokens"]) for r in recs] == [
        (0, 0, False, 2, 4), (0, 1, True, 2, 3), (1, 0, False, 2, 2)]
    assert [r["entropy"] for r in recs] == pytest.approx([1.5 / log_v, 7.0 / log_v, 3.0 / log_v])
    assert E.round_metrics(recs) == pytest.approx({"rollout/entropy_after_tool/round_0": 2.25 / log_v,
                                                   "rollout/entropy_after_tool/round_1": 7.0 / log_v})
    path = E.write_step_file(tmp_path / "steps", 3, recs)
    assert path.name == "entropy_step_3.json" and json.loads(path.read_text())[1]["uid"] == "a"


def test_tools_in_the_system_prompt_are_refused_with_multi_turn(tmp_path):
    from registry.errors import UsageError
    from runners.verl.stage import plan_train

    spec = multi_turn_spec()
    spec.data.tools_in_system_prompt = True
    with pytest.raises(UsageError, match="data.tools_in_system_prompt"):
        plan_train(spec.train, spec, project_root=ROOT, model_path="/m", train_files="/t", val_files="/v",
                   checkpoint_dir=tmp_path, config_dir=tmp_path / "verl", tracking_uri="sqlite:///x.db", run_id="r")
