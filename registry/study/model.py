"""The study file: arms × grid points × seeds of existing specs, run as one tracked study.

A study lives in ``specs/study-<name>.yaml`` with ``kind: study`` at the top (so spec tools tell
it from a spec). Each cell is a normal ``rlreg run`` of the arm's spec with overrides
(arm overrides, then the grid point, then ``seed=N``); docs/studies.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from registry.spec.base import SpecModel
from registry.spec.root import SPEC_NAME_RE, STAGE_ORDER, StageName

GridValue = str | int | float | bool | list | None


class ArmSpec(SpecModel):
    """One arm: a spec and the overrides that make this arm (e.g. an EGPO λ)."""

    spec: str = Field(description="Spec name (a file next to the study, else in the project's specs/) or a .yaml path.")
    overrides: list[str] = Field(
        default_factory=list,
        description="`dotted.key=value` (value parsed as YAML) or `~dotted.key` (remove), applied in "
        "order after `extends`, before validation — the same syntax as `rlreg run SPEC key=value`.",
    )

    @field_validator("overrides")
    @classmethod
    def _override_shape(cls, v: list[str]) -> list[str]:
        for item in v:
            if not (item.startswith("~") or "=" in item):
                raise ValueError(f"override '{item}' is neither `key=value` nor `~key` (write e.g. seed=1)")
        return v


class StudySpec(SpecModel):
    """A study: every cell = (arm, grid point, seed) is one parent run of the arm's spec, tagged
    ``rlreg.study``/``rlreg.arm``/``rlreg.seed``/``rlreg.cell``/``rlreg.grid``."""

    kind: Literal["study"] = Field(description="Always `study`: marks the file as a study, not a spec.")
    name: str = Field(
        "", description="Study name (tag rlreg.study); default: the file name without `study-` and `.yaml`."
    )
    description: str = Field("", description="The question this study answers, in a sentence.")
    experiment: str | None = Field(
        None, description="MLflow experiment of the study's own run; null = the first arm's spec's experiment. "
        "Cells always run in their spec's experiment.",
    )
    arms: dict[str, ArmSpec] = Field(description="Arm name → spec + overrides (at least one arm).")
    seeds: list[int] = Field(description="Training seeds; each arm × grid point runs once per seed (`seed=N`).")
    grid: dict[str, list[GridValue]] = Field(
        default_factory=dict,
        description="Dotted key → values; the cartesian product runs inside every arm (applied after the arm's overrides).",
    )
    primary_metric: str = Field(
        "eval/accuracy",
        description="What the study is judged on: a parent-run metric, or its `_mean` over eval repeats "
        "(e.g. `eval/accuracy` reads `eval/accuracy_mean`).",
    )
    shared_stages: list[StageName] = Field(
        default_factory=lambda: ["convert", "sft"],
        description="Stages that do not see the cell's seed: they run with the spec's own seed, so cells "
        "that agree on everything else share one computation (the stage cache). Later stages are per seed.",
    )

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if v and not SPEC_NAME_RE.match(v):
            raise ValueError(f"'{v}' is not a valid study name (use letters, digits, '.', '_', '-')")
        return v

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        if not v:
            raise ValueError("a study needs at least one arm (arms: {grpo: {spec: demo-grpo}})")
        for arm in v:
            if not SPEC_NAME_RE.match(arm):
                raise ValueError(f"arm name '{arm}' must match [A-Za-z0-9][A-Za-z0-9._-]* (it is part of cell ids)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("a study needs at least one seed (seeds: [1, 2, 3])")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat a value ({v}); each seed runs once per arm and grid point")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not key or key.startswith("~") or "=" in key or "/" in key:
                raise ValueError(f"grid key '{key}' must be a dotted spec key such as train.optimizer.lr")
            if key == "seed":
                raise ValueError("grid key 'seed': list seeds under `seeds`, not in the grid")
            if not values:
                raise ValueError(f"grid.{key}: give at least one value")
            if len({repr(x) for x in values}) != len(values):
                raise ValueError(f"grid.{key}: values repeat ({values})")
        return v

    @field_validator("shared_stages")
    @classmethod
    def _canonical_order(cls, v: list[str]) -> list[str]:
        return [s for s in STAGE_ORDER if s in set(v)]


def study_json_schema() -> dict[str, Any]:
    """JSON Schema of a study file (``rlreg schema --study``; docs/study.schema.json)."""
    schema = StudySpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://rl-registry.dev/study.schema.json"
    schema["title"] = "rl-registry study"
    return schema
