"""``train.rollout.multi_turn`` on verl 0.9.1: config keys and the tool files verl loads.

verl's multi-turn rollout is its ``tool_agent`` agent loop (``experimental/agent_loop/
tool_agent_loop.py``): generate until a ``<tool_call>`` (hermes), run the tool, append the tool
turn with the chat template, continue; tool tokens get ``response_mask`` 0. The spec maps to

  actor_rollout_ref.rollout.multi_turn.enable                  true
  actor_rollout_ref.rollout.multi_turn.max_assistant_turns     max_tool_rounds + 1
  actor_rollout_ref.rollout.multi_turn.max_tool_response_length / tool_response_truncate_side / format
  actor_rollout_ref.rollout.multi_turn.function_tool_path      tool_source: tools_config
  actor_rollout_ref.rollout.multi_turn.tool_config_path        tool_source: replay
  actor_rollout_ref.rollout.agent.default_agent_loop           tool_agent

Tools (generated into the train stage's ``verl/`` dir, next to the config):

* ``tools_config`` -> ``rlreg_function_tools.py``: verl's path for stateless Python callables,
  one ``function_tool(name, schema=…)`` per tool; the schema is the dataset's own (the
  ``extra_info.tools`` of the convert output), so verl renders the prompt's tool list from the
  same schemas rlreg does. A dataset tool without a callable answers an unknown-tool error.
* ``replay`` -> ``rlreg_tool_config.yaml``: one ``runners.verl.replay_tool.ReplayTool`` (a
  ``BaseTool``: verl hands it per-row ``tools_kwargs``, which function tools never get) per tool.

The data side (prompts cut at the first assistant turn, ``tools_kwargs``, ``tool_selection``,
``agent_name``) is ``runners/verl/multi_turn_data.py``; the final-turn reward wrapper is
``runners/verl/multi_turn_reward.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from registry.errors import InputDataError

if TYPE_CHECKING:
    from registry.spec.train import MultiTurnSpec

TOOL_AGENT = "tool_agent"
FUNCTION_TOOLS_FILE = "rlreg_function_tools.py"
TOOL_CONFIG_FILE = "rlreg_tool_config.yaml"
REPLAY_TOOL_CLASS = "runners.verl.replay_tool.ReplayTool"


def tool_file(mt: MultiTurnSpec, tools_dir: str | Path) -> tuple[str, str]:
    """``(verl key, path)`` of the tool file this spec's ``tool_source`` needs."""
    if mt.tool_source == "tools_config":
        return "function_tool_path", str(Path(tools_dir) / FUNCTION_TOOLS_FILE)
    return "tool_config_path", str(Path(tools_dir) / TOOL_CONFIG_FILE)


def rollout_keys(mt: MultiTurnSpec, tools_dir: str | Path) -> dict[str, Any]:
    """The ``actor_rollout_ref.rollout`` subtree for a multi-turn spec (nothing when off)."""
    if not mt.enable:
        return {}
    key, path = tool_file(mt, tools_dir)
    return {
        "multi_turn": {
            "enable": True,
            # verl counts assistant generations; the spec counts tool answers read
            "max_assistant_turns": mt.max_tool_rounds + 1,
            "max_tool_response_length": mt.max_tool_response_length,
            "tool_response_truncate_side": mt.tool_response_truncate_side,
            "format": mt.format,
            key: path,
        },
        "agent": {"default_agent_loop": TOOL_AGENT},
    }


# -- tools_config ------------------------------------------------------------------------------


def read_tools_config(path: Path) -> dict[str, str]:
    """``tools: {name: "module:function" | "file.py:function" | {callable: …}}`` -> name -> target,
    with ``file.py`` made absolute (relative to the config file), as the entropy stage reads it."""
    if not path.is_file():
        raise InputDataError(f"{path}: tools config not found (train.rollout.multi_turn.tools_config must name a YAML file)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputDataError(f"{path}: not valid YAML ({exc})") from exc
    entries = doc.get("tools") if isinstance(doc, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InputDataError(f'{path}: expected a mapping `tools: {{name: "module:function"}}` with at least one tool')
    targets = {}
    for name, target in entries.items():
        if isinstance(target, dict):
            target = target.get("callable")
        if not isinstance(target, str) or ":" not in target:
            raise InputDataError(f'{path}: tools.{name}: expected "module:function" or {{callable: "module:function"}}')
        module, _, attr = target.rpartition(":")
        if module.endswith(".py"):
            target = f"{(path.parent / module).resolve()}:{attr}"
        targets[str(name)] = target
    return targets


# -- schemas from the dataset --------------------------------------------------------------------


def dataset_tool_schemas(parquets: list[Path]) -> dict[str, dict[str, Any]]:
    """Each tool name's OpenAI schema from the rows' ``extra_info.tools`` (first seen wins), in
    first-seen order: what the prompts offer."""
    import pyarrow.parquet as pq

    schemas: dict[str, dict[str, Any]] = {}
    for path in parquets:
        table = pq.read_table(path, columns=["extra_info"])
        for extra in table.column("extra_info").to_pylist():
            raw = (extra or {}).get("tools")
            for tool in json.loads(raw) if raw else []:
                name = tool.get("function", tool).get("name")
                if isinstance(name, str) and name not in schemas:
                    schemas[name] = tool if "function" in tool else {"type": "function", "function": tool}
    return schemas


# -- generated files ---------------------------------------------------------------------------

_HEADER = "# Generated by rlreg (runners/verl/multi_turn.py) from the spec and the dataset; edit those, not this file.\n"


def function_tools_source(schemas: dict[str, dict[str, Any]], targets: dict[str, str]) -> str:
    """The ``function_tool_path`` file: every dataset tool as a verl function tool with the
    dataset's schema; the answer wording is rlreg's (tool_runtime). A ``tools_config`` tool no
    record offers is left out: verl offers a row only its ``tool_selection``."""
    table = {n: {"target": targets.get(n), "schema": schema} for n, schema in schemas.items()}
    return (
        _HEADER
        + '"""verl function tools for this run: ``actor_rollout_ref.rollout.multi_turn.function_tool_path``."""\n'
        + "import json\n\n"
        + "from verl.tools.function_tool import function_tool\n\n"
        + "from runners.verl.tool_runtime import answering\n\n"
        + f"TOOLS = json.loads({json.dumps(json.dumps(table, ensure_ascii=False))})\n"
        + "KNOWN = sorted(n for n, t in TOOLS.items() if t['target'])\n\n"
        + "for _name, _tool in TOOLS.items():\n"
        + "    function_tool(_name, schema=_tool['schema'])(answering(_name, _tool['target'], KNOWN))\n"
    )


def replay_tool_config(schemas: dict[str, dict[str, Any]], targets: dict[str, str]) -> dict[str, Any]:
    """The ``tool_config_path`` document: one ReplayTool per dataset tool (a ``tools_config``
    callable, when named, answers what the dataset did not record)."""
    known = sorted(set(schemas) | set(targets))
    tools = []
    for name, schema in schemas.items():
        tools.append({
            "class_name": REPLAY_TOOL_CLASS,
            "config": {"type": "native", "callable": targets.get(name), "known": known},
            "tool_schema": schema,
        })
    return {"tools": tools}


def write_tool_files(
    mt: MultiTurnSpec, tools_dir: Path, schemas: dict[str, dict[str, Any]], tools_config: Path | None
) -> Path:
    """Write the one tool file ``tool_source`` needs into ``tools_dir``; returns its path."""
    if not schemas:
        raise InputDataError(
            "the training data offers no tools (extra_info.tools is empty in every row): multi-turn "
            "rollouts need each record's `tools` (or set train.rollout.multi_turn.enable: false)"
        )
    targets = read_tools_config(tools_config) if tools_config is not None else {}
    tools_dir.mkdir(parents=True, exist_ok=True)
    _, path_text = tool_file(mt, tools_dir)
    path = Path(path_text)
    if mt.tool_source == "tools_config":
        path.write_text(function_tools_source(schemas, targets), encoding="utf-8")
    else:
        doc = replay_tool_config(schemas, targets)
        path.write_text(_HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
