"""``reward``: which reward scores a response against the ground truth — a shipped one, or a file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from registry.spec.base import SpecModel

RewardName = Literal["think_tool_call", "tool_call", "graded_tool_call", "think_tool_call_strict", "tool_call_strict"]


class RewardSpec(SpecModel):
    """A shipped tool-call reward (runners/reward.py, also the file handed to verl) or a custom
    reward file with verl's ``compute_score`` signature (docs/data.md § The reward)."""

    function: RewardName = Field(
        "think_tool_call",
        description="A shipped reward. The user's (hardtry src/hardtry/rl/, reproduced exactly): "
        "`think_tool_call` (reward_fn_egpo: 1.0 iff the calls after the last `</think>\\n\\n` match), "
        "`tool_call` (reward_fn_grpo: the same on the whole response), `graded_tool_call` (reward_fn.py: "
        "0.1 for a <tool_call> tag pair + 1.0 for a match). rlreg's stricter rules (one think block, "
        "well-formed JSON, lists as multisets, true != 1): `think_tool_call_strict`, `tool_call_strict`. "
        "Ignored when `path` is set.",
    )
    path: str | None = Field(
        None,
        description="A custom reward file (Python), relative to the project root or absolute ($VAR "
        "expanded), defining `name` with verl's signature `compute_score(data_source, solution_str, "
        "ground_truth, extra_info=None, **kwargs) -> float | {'score': float, ...}`. Used by the builtin "
        "trainer and eval and handed to verl as reward.custom_reward_function; its source hash is in the "
        "train/eval cache keys and the run tag rlreg.reward_sha256.",
    )
    name: str = Field("compute_score", description="The function in `path` that scores a response.")
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments passed to the custom function on every call (verl's "
        "reward.custom_reward_function.reward_kwargs). Only with `path`.",
    )

    @model_validator(mode="after")
    def _file_or_builtin(self) -> RewardSpec:
        # compares with the defaults (not model_fields_set) so a dumped spec validates again
        if self.path is None:
            if self.kwargs:
                raise ValueError("`kwargs` is only for a custom reward file: set `path`, or drop `kwargs`")
            if self.name != "compute_score":
                raise ValueError("`name` names the function in a custom reward file: set `path`, or use `function`")
        elif self.function != "think_tool_call":
            raise ValueError("set either `function` (a shipped reward) or `path` (a custom file), not both")
        if not self.name.isidentifier():
            raise ValueError(f"`name` must be a Python identifier, got {self.name!r}")
        return self

    @property
    def label(self) -> str:
        """What the run tag ``rlreg.reward_function`` says: the shipped name or ``path:name``."""
        return f"{self.path}:{self.name}" if self.path else self.function
