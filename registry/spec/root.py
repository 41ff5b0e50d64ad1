"""The whole experiment spec: metadata, the pipeline, and one optional section per stage."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from registry.spec.base import SEED_MAX, SpecModel
from registry.spec.data import DataSpec
from registry.spec.entropy import EntropySpec
from registry.spec.eval import EvalSpec
from registry.spec.generate import GenerateSpec
from registry.spec.limits import (
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    TAG_PREFIX,
    check_experiment_name,
    check_mlflow_key,
)
from registry.spec.merge import MergeSpec
from registry.spec.model import ModelSpec
from registry.spec.reward import RewardSpec
from registry.spec.sft import SFTSpec
from registry.spec.tracking import TrackingSpec
from registry.spec.train import TrainSpec

SPEC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

StageName = Literal["convert", "sft", "train", "merge", "eval", "entropy", "generate"]

# Canonical order; a spec's `pipeline` may pick a subset, in this order.
STAGE_ORDER: tuple[str, ...] = ("convert", "sft", "train", "merge", "eval", "entropy", "generate")
# The spec section that configures each stage.
STAGE_SECTION: dict[str, str] = {
    "convert": "data", "sft": "sft", "train": "train", "merge": "merge",
    "eval": "eval", "entropy": "entropy", "generate": "generate",
}


class Spec(SpecModel):
    """One experiment. ``extends: <name>`` deep-merges this file over the named spec (mappings
    merge, lists replace). Stages whose section is absent do not run."""

    name: str = Field(description="Spec name; defaults to the file name without .yaml (never inherited).")
    extends: str | None = Field(None, description="Parent spec name this one is merged over.")
    description: str = Field(
        "", max_length=MAX_TAG_VALUE_LENGTH, description="What this experiment tests, in a sentence (the run's note)."
    )
    experiment: str = Field(
        "rl-registry", min_length=1, max_length=MAX_EXPERIMENT_NAME_LENGTH,
        description="MLflow experiment the runs land in (1-500 characters, MLflow's limit).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, max_length=MAX_TAGS,
        description="Extra MLflow tags on the parent run, stored as `spec.tag.<key>`: at most 100; keys of "
        "letters, digits, _ - . : / and spaces, at most 241 characters; values at most 8000 characters. "
        "Values of secret-looking keys (token, password, api_key…) are stored as ***.",
    )
    seed: int = Field(
        42, ge=0, le=SEED_MAX,
        description="The run's seed: train.seed and eval.seed default to it (rollout sampling, prompt order, "
        "eval sampling). convert (data.seed), sft (sft.seed) and the tiny base model (model.tiny.seed) keep "
        "their own seeds, so they are shared across seeds (docs/seeds.md).",
    )
    pipeline: list[StageName] | None = Field(
        None,
        description="Stages to run, in canonical order convert → sft → train → merge → eval → "
        "entropy → generate. Null = every stage whose section is present.",
    )
    data: DataSpec | None = Field(None, description="convert stage: messages JSON/JSONL → verl parquet.")
    model: ModelSpec | None = Field(None, description="The policy model (path or tiny).")
    reward: RewardSpec = Field(default_factory=RewardSpec, description="Reward function.")
    sft: SFTSpec | None = Field(None, description="sft stage: supervised warm start.")
    train: TrainSpec | None = Field(None, description="train stage: GRPO/EGPO.")
    merge: MergeSpec | None = Field(None, description="merge stage: final HF model directory + MLflow model.")
    eval: EvalSpec | None = Field(None, description="eval stage: tool-call accuracy with repeats.")
    entropy: EntropySpec | None = Field(None, description="entropy stage: entropy after tool calls.")
    generate: GenerateSpec | None = Field(None, description="generate stage: q* optimal sampling.")
    tracking: TrackingSpec = Field(
        default_factory=TrackingSpec, description="What rlreg records besides the stages' metrics (system metrics)."
    )

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not SPEC_NAME_RE.match(v):
            raise ValueError(f"'{v}' is not a valid spec name (use letters, digits, '.', '_', '-')")
        if len(v) > 200:
            raise ValueError(f"the spec name is {len(v)} characters (use at most 200)")
        return v

    @field_validator("experiment")
    @classmethod
    def _experiment_name(cls, v: str) -> str:
        wrong = check_experiment_name(v)
        if wrong:
            raise ValueError(wrong)
        return v

    @field_validator("tags")
    @classmethod
    def _tags_fit_mlflow(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            wrong = check_mlflow_key(key, TAG_PREFIX)
            if wrong:
                raise ValueError(wrong)
            if len(value) > MAX_TAG_VALUE_LENGTH:
                raise ValueError(f"tags.{key}: the value is {len(value)} characters; MLflow keeps "
                                 f"{MAX_TAG_VALUE_LENGTH} (shorten it, or put the text in `description`)")
        return tags

    @model_validator(mode="after")
    def _stage_seeds(self) -> "Spec":
        from registry.seeds import fill_stage_seeds

        fill_stage_seeds(self)
        return self

    @model_validator(mode="after")
    def _pipeline_consistent(self) -> "Spec":
        stages = self.stages()
        for stage in stages:
            if getattr(self, STAGE_SECTION[stage]) is None:
                raise ValueError(
                    f"pipeline lists '{stage}' but the spec has no `{STAGE_SECTION[stage]}` section "
                    f"(add `{STAGE_SECTION[stage]}: {{}}` to run it with defaults, or drop it from pipeline)"
                )
        if self.pipeline is not None:
            if len(set(self.pipeline)) != len(self.pipeline):
                raise ValueError("pipeline lists a stage twice (each stage runs once)")
        needs_model = {"sft", "train"} & set(stages)
        if needs_model and self.model is None:
            raise ValueError(f"stage(s) {sorted(needs_model)} need a `model` section (path or tiny)")
        if {"sft", "train"} & set(stages) and "convert" not in stages:
            raise ValueError("sft/train read the convert stage's parquet: add a `data` section")
        return self

    def stages(self) -> list[str]:
        """The stages this spec runs, in canonical order."""
        if self.pipeline is not None:
            chosen = set(self.pipeline)
            return [s for s in STAGE_ORDER if s in chosen]
        return [s for s in STAGE_ORDER if getattr(self, STAGE_SECTION[s]) is not None]
