"""`rlreg run` of a multi-turn verl spec through the real pipeline (real convert of the synthetic
multi-turn task, the stand-in verl of test_verl_launch): verl is pointed at rows prepared for its
tool_agent loop and at a generated tool file, and the convert output itself is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from test_verl_pipeline import _run, env  # noqa: F401 - env is a fixture

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
experiment: verl-multi-turn-test
data:
  synthetic: {{num_records: 24, seed: 1, tool_response_fraction: 0, two_call_fraction: 0, multi_turn_fraction: 1.0}}
  max_samples: 24
  test_size: 0.25
model:
  path: {model}
train:
  backend: verl
  train_batch_size: 8
  ppo_mini_batch_size: 8
  rollout:
    multi_turn: {{enable: true, max_tool_rounds: 1, tool_source: replay, tools_config: {tools}}}
  verl:
    python: {python}
merge:
  log_mode: reference
"""


def test_multi_turn_verl_spec_runs_through_the_pipeline(env, tmp_path):  # noqa: F811
    specs = tmp_path / "specs"
    spec_text = (specs / "v.yaml").read_text()
    model = next(line.split(": ", 1)[1] for line in spec_text.splitlines() if line.strip().startswith("path:"))
    python = next(line.split(": ", 1)[1] for line in spec_text.splitlines() if line.strip().startswith("python:"))
    (specs / "mt.yaml").write_text(SPEC.format(model=model, python=python, tools=ROOT / "specs/tools/demo_tools.yaml"))
    r, out = _run("mt")
    assert r.exit_code == 0, r.output
    stages = {s["stage"]: s for s in out["stages"]}
    body = yaml.safe_load((Path(stages["train"]["outputs"]["verl_config"]) / "rlreg_verl.yaml").read_text())
    rollout = body["actor_rollout_ref"]["rollout"]
    assert rollout["multi_turn"]["enable"] is True and rollout["multi_turn"]["max_assistant_turns"] == 2
    assert rollout["agent"]["default_agent_loop"] == "tool_agent"
    tool_file = Path(rollout["multi_turn"]["tool_config_path"])
    assert tool_file.is_file() and "runners.verl.replay_tool.ReplayTool" in tool_file.read_text()

    train_rows = Path(body["data"]["train_files"])
    assert train_rows.name == "train.parquet" and train_rows.parent.name == "verl_data"
    convert_rows = pq.read_table(stages["convert"]["outputs"]["train"]).to_pylist()
    rows = pq.read_table(train_rows).to_pylist()
    assert len(rows) == len(convert_rows) == 18
    for before, after in zip(convert_rows, rows):
        # convert keeps the recorded lookup in the prompt; verl's rows stop before it
        assert [m["role"] for m in before["prompt"]] == ["system", "user", "assistant", "tool"]
        assert [m["role"] for m in after["prompt"]] == ["system", "user"]
        assert after["agent_name"] == "tool_agent"
        recorded = after["extra_info"]["tools_kwargs"]["find_account"]["create_kwargs"]["recorded"]
        assert json.loads(recorded) == [{"calls": ["find_account"], "answers": [before["prompt"][3]["content"]]}]
