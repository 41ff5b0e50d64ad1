"""``ReplayTool``: verl ``BaseTool`` that answers a call with the dataset's recorded tool turn.

verl executes tools; it has no notion of replaying a dataset. The stateless ``@function_tool``
path cannot replay (verl ignores ``tools_kwargs`` for function tools by design), so replay uses
the stateful path: ``tool_config_path`` lists one ``ReplayTool`` per tool name, verl calls
``create(create_kwargs=row.extra_info.tools_kwargs[name].create_kwargs)`` before each call — that
holds the record's recorded rounds as JSON (``runners/verl/multi_turn_data.py``) — and
``execute(..., agent_data=…)`` where ``agent_data.user_turns`` is the number of tool rounds already
answered, so this call belongs to round ``user_turns + 1``. No recorded answer for this round and
tool: the tool's ``callable`` (from ``tools_config``) runs, else an error text the model reads.

Runs only inside verl (imports ``verl.tools``); the config file is written by
``runners/verl/multi_turn.py``.
"""

from __future__ import annotations

import json
from typing import Any

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import ToolResponse

from runners.verl.tool_runtime import execute, load_callable, recorded_answer, unavailable


class ReplayTool(BaseTool):
    """``config``: ``{type: native, callable: "module:function" | null, known: [tool names]}``."""

    def __init__(self, config: dict, tool_schema: Any):
        super().__init__(config, tool_schema)
        target = config.get("callable")
        self._fn = load_callable(target) if target else None
        self._known = list(config.get("known") or [self.name])
        self._recorded: dict[str, list[dict[str, Any]]] = {}

    async def create(self, instance_id: str | None = None, create_kwargs: dict | None = None, **kwargs: Any):
        instance_id, response = await super().create(instance_id)
        raw = (create_kwargs or {}).get("recorded") or "[]"
        self._recorded[instance_id] = json.loads(raw) if isinstance(raw, str) else list(raw)
        return instance_id, response

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any):
        agent_data = kwargs.get("agent_data")
        round_idx = int(getattr(agent_data, "user_turns", 0)) + 1
        text = recorded_answer(self._recorded.get(instance_id, []), round_idx, self.name)
        source = "replay"
        if text is None and self._fn is not None:
            text, source = execute(self.name, self._fn, parameters), "tools_config"
        elif text is None:
            text, source = unavailable(self.name, round_idx, self._known), "error"
        return ToolResponse(text=text), 0.0, {"source": source, "round": round_idx}

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._recorded.pop(instance_id, None)
