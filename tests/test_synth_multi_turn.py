"""The synthetic multi-turn task (``data.synthetic.multi_turn_fraction``): the final call needs a
value only the executed lookup tool knows; records carry the recorded tool turn; default data is
byte-for-byte what it was before the option existed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from registry.spec.data import DataSpec, SyntheticDataSpec
from runners import demo_tools
from runners import reward as R
from runners import synth_data as S

ROOT = Path(__file__).resolve().parents[1]

# sha256 of json.dumps(record, sort_keys=True) over the records, computed on main (d1f3ef6) before
# multi_turn_fraction existed: the default data (and every existing mix) must not change.
DIGESTS_BEFORE = {
    (400, 0): "458d5071bf1db8383b31fa19a5e37288a6cd53475cc91c3bdba26cc42217a801",
    (200, 7, 0.25, 0.2, 2): "e7d0c7df6183f16d4519e3d1774433d61420db6d15f99203fc0c221de1ede578",
    (300, 3, 0.5, 0.3, 0): "e814aa445000188ebce8fcbcd212d3c2861139cc4f1ccbf4638d4fa725bb81f3",
    (100, 1, 0.0, 0.0, 4): "82e13fd517baf83904a7b5687e4a40c80d352786d2bfe67fe48ae884498f8c47",
}


def _digest(records) -> str:
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps(rec, sort_keys=True).encode())
    return h.hexdigest()


@pytest.mark.parametrize("args", sorted(DIGESTS_BEFORE, key=str))
def test_existing_data_unchanged(args):
    assert _digest(S.generate_records(*args)) == DIGESTS_BEFORE[args]
    # an explicit 0 is the default
    assert _digest(S.generate_records(*args, **({"multi_turn_fraction": 0.0} if len(args) == 5 else {}))) \
        == DIGESTS_BEFORE[args]


def _multi_turn(n=200, seed=0, distractors=2):
    return list(S.generate_records(n, seed, 0.0, 0.0, distractors, multi_turn_fraction=1.0))


def test_multi_turn_records_need_the_lookup_answer():
    for rec in _multi_turn():
        msgs = rec["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
        (lookup,) = R.parse_tool_calls(msgs[2]["content"])
        (final,) = R.parse_tool_calls(msgs[4]["content"])
        assert lookup["name"] == "find_account" and final["name"] == "list_orders"
        handle = lookup["arguments"]["handle"]
        assert f'"{handle}"' in msgs[1]["content"]  # the lookup argument comes from the user turn
        assert f'"{final["arguments"]["status"]}"' in msgs[1]["content"]
        # the recorded tool turn is exactly what executing the tool returns (replay == execution)
        answer = json.loads(msgs[3]["content"])
        assert answer == demo_tools.find_account(**lookup["arguments"])
        code = final["arguments"]["account"]
        assert code == answer["account"]
        # ... and the code is nowhere before the tool turn: not in the prompt, not in the tool schemas
        before = json.dumps(msgs[:3]) + json.dumps(rec["tools"])
        assert code not in before
        # the final call executes
        assert demo_tools.list_orders(**final["arguments"])["account"] == code
        # both assistant turns have the strict reward's format
        for turn in (msgs[2], msgs[4]):
            assert R.think_tool_call_reward(turn["content"], turn["content"]) == 1.0
        names = {t["function"]["name"] for t in rec["tools"]}
        assert {"find_account", "list_orders"} <= names and len(names) == 4


def test_the_code_cannot_be_memorised():
    # many distinct handles (12 names x 90 numbers), codes spread over the word list: a lookup
    # table in the weights won't do, guessing one code is right 1 time in 30
    recs = _multi_turn(400)
    handles = [R.parse_tool_calls(r["messages"][2]["content"])[0]["arguments"]["handle"] for r in recs]
    codes = [json.loads(r["messages"][3]["content"])["account"] for r in recs]
    assert len(set(handles)) > 300 and len(set(codes)) == len(S.ACCOUNT_WORDS)
    assert max(codes.count(c) for c in set(codes)) / len(codes) < 0.1


def test_multi_turn_records_deterministic_by_seed_and_prefix_stable():
    a = _multi_turn(60, seed=5)
    assert a == _multi_turn(60, seed=5)
    assert a[:25] == _multi_turn(25, seed=5)
    assert a != _multi_turn(60, seed=6)


def test_fraction_mixes_kinds():
    recs = list(S.generate_records(1000, 0, 0.2, 0.2, 2, multi_turn_fraction=0.3))
    share = sum("find_account" in r["messages"][2]["content"] for r in recs) / len(recs)
    assert 0.25 < share < 0.35


def test_demo_tools_config_executes_both_tools():
    import yaml

    doc = yaml.safe_load((ROOT / "specs/tools/demo_tools.yaml").read_text())
    assert doc["tools"]["find_account"] == "runners.demo_tools:find_account"
    assert doc["tools"]["list_orders"] == "runners.demo_tools:list_orders"
    with pytest.raises(ValueError, match="account must be one of"):
        demo_tools.list_orders("not-a-code", "open")  # a guessed code is an error the model reads


def test_spec_field_and_bounds():
    assert SyntheticDataSpec().multi_turn_fraction == 0.0
    DataSpec(synthetic={"multi_turn_fraction": 1.0, "tool_response_fraction": 0, "two_call_fraction": 0})
    with pytest.raises(ValidationError, match="multi_turn_fraction must be at most 1"):
        SyntheticDataSpec(multi_turn_fraction=0.7)  # + the default 0.25 + 0.2


def test_cli_option(tmp_path):
    out = tmp_path / "mt.json"
    S.main(["--num-records", "4", "--tool-response-fraction", "0", "--two-call-fraction", "0",
            "--multi-turn-fraction", "1", "-o", str(out)])
    assert json.loads(out.read_text()) == _multi_turn(4)
    with pytest.raises(SystemExit):
        S.main(["--num-records", "4", "--multi-turn-fraction", "0.9", "-o", str(out)])
