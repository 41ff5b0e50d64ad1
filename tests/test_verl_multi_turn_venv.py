"""Multi-turn on verl, checked by verl itself in .venv-verl:

* a multi-turn spec (replay and tools_config) composes with verl's Hydra config, passes
  ``validate_config`` and the rollout dataclass, and verl's ``load_all_tools`` loads the generated
  tool file (the check every run makes before launch);
* verl's own ``ToolAgentLoop._call_tool`` (the dispatch its agent loop uses, ``tools_kwargs``
  included) answers with the record's recorded tool turn (replay) or the executed demo tool;
* the EGPO plugin's think scope and advantages on a hand-built non-contiguous response mask (tool
  tokens 0 between two assistant turns) equal a hand computation: tool tokens never count.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from runners import demo_tools
from runners.synth_data import generate_records
from tests.test_verl_multi_turn import DEMO_TOOLS, launch, multi_turn_spec, write_convert_parquet

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VERL_PYTHON.exists(), reason=".venv-verl is absent: create it with scripts/setup-verl-venv.sh"),
]


def _verl_run(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VERL_USE_EXTERNAL_PLUGINS": "none"}
    env.pop("VERL_USE_EXTERNAL_MODULES", None)
    proc = subprocess.run([str(VERL_PYTHON), "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          env=env, timeout=600, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Convert rows of multi-turn records, the rows for verl, and both tool files."""
    from runners.verl.multi_turn import dataset_tool_schemas, write_tool_files
    from runners.verl.multi_turn_data import prepare_parquet

    tmp = tmp_path_factory.mktemp("mt")
    records = list(generate_records(6, 0, 0.0, 0.0, 1, multi_turn_fraction=1.0))
    src = write_convert_parquet(tmp / "train.parquet", records)
    schemas = dataset_tool_schemas([src])
    specs = {
        "replay": multi_turn_spec(tool_source="replay", tools_config="specs/tools/demo_tools.yaml", max_tool_rounds=2),
        "tools_config": multi_turn_spec(tool_source="tools_config", tools_config="specs/tools/demo_tools.yaml"),
    }
    out = {"records": records, "schemas": schemas}
    for name, spec in specs.items():
        tools_dir = tmp / name
        write_tool_files(spec.train.rollout.multi_turn, tools_dir, schemas, DEMO_TOOLS)
        prepare_parquet(src, tools_dir / "rows.parquet", list(schemas), replay=name == "replay")
        out[name] = (spec, launch(spec, tools_dir=str(tools_dir)), tools_dir)
    return out


def test_multi_turn_config_composes_validates_and_loads_the_tools(prepared):
    from runners.verl.compose import check_request, composed_or_raise, run_checks

    names = ["replay", "tools_config"]
    requests = [check_request(prepared[n][1], prepared[n][2] / "cfg") for n in names]
    assert all(r["tool_files"] for r in requests)  # the generated file is part of the check
    results = run_checks(VERL_PYTHON, requests)
    for name, result in zip(names, results):
        spec, launch_config, tools_dir = prepared[name]
        cfg = composed_or_raise(result, launch_config, spec.name)
        mt = cfg["actor_rollout_ref"]["rollout"]["multi_turn"]
        assert mt["enable"] is True and mt["format"] == "hermes"
        assert mt["max_assistant_turns"] == spec.train.rollout.multi_turn.max_tool_rounds + 1
        assert mt["max_tool_response_length"] == 256 and mt["tool_response_truncate_side"] == "middle"
        assert cfg["actor_rollout_ref"]["rollout"]["agent"]["default_agent_loop"] == "tool_agent"
        key = "tool_config_path" if name == "replay" else "function_tool_path"
        assert Path(mt[key]).parent == tools_dir and mt["tool_config_path" if key != "tool_config_path" else "function_tool_path"] is None
        assert sorted(result["tools"]) == sorted(prepared["schemas"])
        assert cfg["reward"]["custom_reward_function"]["path"].endswith("runners/verl/multi_turn_reward.py")


CALL_TOOLS = """
import asyncio, json, sys
from types import SimpleNamespace
import pyarrow.parquet as pq
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.experimental.agent_loop.tool_parser import FunctionCall
from verl.tools.tool_registry import load_all_tools

tool_config, function_tools, rows = sys.argv[1] or None, sys.argv[2] or None, sys.argv[3]
tools = {t.name: t for t in load_all_tools(tool_config, function_tools)}
loop = SimpleNamespace(tools=tools, max_tool_response_length=10_000, tool_response_truncate_side="middle")
out = []
for row in pq.read_table(rows).to_pylist():
    kwargs = (row["extra_info"].get("tools_kwargs") or {})
    answers = []
    for round_done, name, args in json.loads(row["extra_info"]["calls"]):
        agent = SimpleNamespace(user_turns=round_done)
        call = FunctionCall(name=name, arguments=json.dumps(args))
        resp, _, _ = asyncio.run(ToolAgentLoop._call_tool(loop, call, kwargs, agent))
        answers.append(resp.text)
    out.append(answers)
print(json.dumps(out))
"""


def _with_calls(path: Path, calls_per_row: list[list]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for row, calls in zip(rows, calls_per_row):
        row["extra_info"]["calls"] = json.dumps(calls)
    out = path.with_name("calls.parquet")
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def test_verls_tool_dispatch_answers_like_the_record(prepared):
    records = prepared["records"]
    calls = []
    for rec in records:
        handle = json.loads(rec["messages"][3]["content"])["handle"]
        # round 1 lookup (recorded), round 1 a different tool, round 2 lookup (nothing recorded), unknown tool
        calls.append([[0, "find_account", {"handle": handle}], [0, "list_orders", {"account": "onyx", "status": "open"}],
                      [1, "find_account", {"handle": "zed99"}], [0, "no_such_tool", {}]])
    answers = {}
    for name in ("replay", "tools_config"):
        _, _, tools_dir = prepared[name]
        rows = _with_calls(tools_dir / "rows.parquet", calls)
        tool_config = str(tools_dir / "rlreg_tool_config.yaml") if name == "replay" else ""
        function_tools = str(tools_dir / "rlreg_function_tools.py") if name == "tools_config" else ""
        answers[name] = _verl_run(CALL_TOOLS, tool_config, function_tools, str(rows))
    for rec, replay, executed in zip(records, answers["replay"], answers["tools_config"]):
        handle = json.loads(rec["messages"][3]["content"])["handle"]
        # the recorded answer and the executed tool agree on the multi-turn task
        assert replay[0] == rec["messages"][3]["content"] == executed[0] == json.dumps(demo_tools.find_account(handle))
        # not recorded for that tool / round: the tools_config callable runs
        assert replay[1] == executed[1] == json.dumps(demo_tools.list_orders("onyx", "open"))
        assert replay[2] == executed[2] == json.dumps(demo_tools.find_account("zed99"))
        # a tool nobody offers: verl's own wording (it checks names before calling any tool)
        assert replay[3].startswith("Unknown function 'no_such_tool'. Available tools:")
        assert executed[3].startswith("Unknown function 'no_such_tool'. Available tools:")


EGPO_MASK = """
import json
import torch
import runners.verl.egpo_plugin as plugin
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

OPEN, CLOSE, TOOL, A, C = 5, 6, 7, 8, 9
class Tok:
    def encode(self, text, add_special_tokens=False):
        return {"<think>": [OPEN], "</think>": [CLOSE]}[text]

# response 0: turn 1 (think A A, </think>, call C) | tool turn (masked, ends with the template's <think>) |
#             turn 2 (think A, </think>, call C) | padding
# response 1: one turn (think A A A, </think>, C) | padding
responses = torch.tensor([[A, A, CLOSE, C, TOOL, TOOL, OPEN, A, CLOSE, C, 0, 0],
                          [A, A, A, CLOSE, C, 0, 0, 0, 0, 0, 0, 0]])
mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0],
                     [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]])
prompts = torch.tensor([[1, 2, OPEN], [1, 2, OPEN]])  # the template opened <think>
entropy = torch.tensor([[0.2, 0.4, 0.1, 0.1, 9.0, 9.0, 9.0, 0.6, 0.1, 0.1, 9.0, 9.0],
                        [0.3, 0.3, 0.3, 0.1, 0.1, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]])
rewards = torch.zeros(2, 12); rewards[0, 9] = 1.0; rewards[1, 4] = 0.0
config = {"adv_estimator": "egpo", "norm_adv_by_std_in_grpo": True,
          "egpo": {"lambda": 0.4, "alpha": 2.0, "entropy_scope": "think"}}
scope = plugin.scope_mask_for(config, Tok(), responses, mask, prompts)
fn = get_adv_estimator_fn("egpo")
with plugin.provide_entropy(entropy, scope):
    adv, _ = fn(token_level_rewards=rewards, response_mask=mask, index=["u", "u"], config=config)
print(json.dumps({"scope": scope.tolist(), "adv": adv.tolist()}))
"""


def test_egpo_plugin_think_scope_on_a_multi_turn_mask():
    got = _verl_run(EGPO_MASK)
    # the think span of each assistant turn; the tool turn (mask 0) never, though it holds <think>
    assert got["scope"] == [[1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
                            [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    # by hand: GRPO on rewards [1, 0] (unbiased std) = +-0.70711; E_0 = mean(0.2, 0.4, 0.6) = 0.4,
    # E_1 = 0.3; bonus = min(0.4 E, |A| / 2): 0.16 and 0.12 (with the tool tokens' 9.0 it would
    # have been the cap, 0.354)
    a = 0.5 / (0.5 ** 0.5 + 1e-6)  # verl: (s - mean) / (std + 1e-6)
    expected = [a + 0.4 * 0.4, -a + 0.4 * 0.3]
    mask = [[1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]]
    for row, value, m in zip(got["adv"], expected, mask):
        assert row == pytest.approx([value * k for k in m], abs=1e-6)  # masked tokens stay 0


ROUNDS_V1 = """
import json, sys
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from tensordict.tensorclass import NonTensorData, NonTensorStack
import runners.verl.egpo_plugin  # noqa: F401 - installs the import hook, as VERL_USE_EXTERNAL_MODULES does
from verl.trainer.ppo.v1 import trainer_base

out_dir = sys.argv[1]
mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 1, 1, 0, 0, 0]])
lengths = [10, 7]
ent = torch.tensor([[1.0, 2.0, 3.0, 4.0, 50.0, 50.0, 50.0, 6.0, 8.0, 10.0],
                    [2.0, 4.0, 6.0, 50.0, 50.0, 1.0, 3.0, 0.0, 0.0, 0.0]])
rewards = torch.zeros(2, 10); rewards[0, 9] = 1.0
def nested(t, dtype=None):
    return torch.nested.as_nested_tensor([t[i, : lengths[i]].to(dtype or t.dtype) for i in range(2)], layout=torch.jagged)
store = TensorDict({"uid": NonTensorStack(NonTensorData("p0"), NonTensorData("p0")),
                    "response_mask": nested(mask, torch.long), "rm_scores": nested(rewards),
                    "old_log_probs": nested(torch.zeros(2, 10)), "entropy": nested(ent),
                    "responses": nested(torch.ones(2, 10, dtype=torch.long)),
                    "prompts": nested(torch.ones(2, 10, dtype=torch.long))}, batch_size=[2])
written = {}
class StubTQ:
    @staticmethod
    def kv_batch_get(keys, partition_id, select_fields):
        return store.select(*[f for f in select_fields if f in store.keys()])
    @staticmethod
    def kv_batch_put(keys, partition_id, fields):
        written.update(dict(fields.items()))
        return "batch-meta"
trainer_base.tq = StubTQ
Concrete = type("Concrete", (trainer_base.PPOTrainer,),
                {n: (lambda *a, **k: None) for n in trainer_base.PPOTrainer.__abstractmethods__})
trainer = object.__new__(Concrete)
trainer.config = OmegaConf.create({"algorithm": {"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": True,
                                                 "use_kl_in_reward": False, "gamma": 1.0, "lam": 1.0,
                                                 "round_entropy": {"k": 2, "dir": out_dir}},
                                   "actor_rollout_ref": {"rollout": {"n": 2}}})
trainer.tokenizer = [0] * 100  # len() = V
trainer.global_steps = 4
class Meta:
    keys = ["p0_0_0", "p0_1_1"]
    partition_id = "train"
    def __len__(self):
        return 2
metrics = {}
trainer._compute_advantage(Meta(), metrics)
adv = written["advantages"].to_padded_tensor(0.0)
print(json.dumps({"metrics": {k: float(v) for k, v in metrics.items() if k.startswith("rollout/")},
                  "adv": adv.tolist(), "patched": bool(trainer_base.PPOTrainer._compute_advantage._rlreg_patched)}))
"""


def test_v1_trainer_records_per_round_entropy_for_any_estimator(tmp_path):
    import math

    got = _verl_run(ROUNDS_V1, str(tmp_path))
    assert got["patched"]
    log_v = math.log(100)
    # round 0: mean of the first 2 model tokens (1,2) and (2,4); round 1: (6,8) and (1,3) — tool tokens (50) never
    assert got["metrics"] == pytest.approx({"rollout/entropy_after_tool/round_0": 2.25 / log_v,
                                            "rollout/entropy_after_tool/round_1": 4.5 / log_v})
    records = json.loads((tmp_path / "entropy_step_4.json").read_text())
    assert [(r["sample_idx"], r["round"], r["uid"], r["step"]) for r in records] == [
        (0, 0, "p0", 4), (0, 1, "p0", 4), (1, 0, "p0", 4), (1, 1, "p0", 4)]
    # GRPO itself is untouched: rewards [1, 0] -> +-0.7071 on model tokens
    a = 0.5 / (0.5 ** 0.5 + 1e-6)
    assert got["adv"][0][0] == pytest.approx(a, abs=1e-5) and got["adv"][1][0] == pytest.approx(-a, abs=1e-5)
