"""``reward``: which rule-based reward scores a response against the ground truth."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from registry.spec.base import SpecModel


class RewardSpec(SpecModel):
    """Strict binary tool-call reward (domain.md §2). Implemented in runners/reward.py, which is
    also the file handed to verl as ``custom_reward_function``."""

    function: Literal["think_tool_call", "tool_call"] = Field(
        "think_tool_call",
        description="`think_tool_call` (the user's reward_fn_egpo): needs `<think>…</think>\\n\\n` "
        "then tool calls equal to the ground truth as an order-insensitive multiset; "
        "`tool_call` (reward_fn_grpo): the same match without the think requirement.",
    )
