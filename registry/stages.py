"""The stage table: which runner implements each stage and which spec sections it reads.

A stage's cache key hashes exactly the sections listed here (plus its inputs' digests and the
source of its runner), so two specs that differ only in ``train`` share their convert and sft runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from registry.errors import MissingExtra

if TYPE_CHECKING:
    from registry.spec import Spec


@dataclass(frozen=True)
class StageDef:
    name: str
    section: str
    reads: tuple[str, ...]
    """Other spec sections that change this stage's result (hashed into its cache key)."""
    runner: Callable[["Spec"], str]
    """Picks the runner module for a spec (e.g. train → runners.verl when backend is verl)."""
    description: str


def _train_runner(spec: "Spec") -> str:
    return "runners.verl" if spec.train and spec.train.backend == "verl" else "runners.train"


def _sft_runner(spec: "Spec") -> str:
    return "runners.sft.swift" if spec.sft and spec.sft.backend == "swift" else "runners.sft"


def _merge_runner(spec: "Spec") -> str:
    return "runners.verl.merge" if spec.train and spec.train.backend == "verl" else "runners.merge"


STAGES: dict[str, StageDef] = {
    s.name: s
    for s in [
        StageDef("convert", "data", (), lambda s: "runners.convert", "messages JSON/JSONL -> verl parquet"),
        StageDef("sft", "sft", ("model",), _sft_runner, "supervised warm start"),
        StageDef("train", "train", ("model", "reward"), _train_runner, "GRPO/EGPO training"),
        StageDef("merge", "merge", ("train",), _merge_runner, "final policy -> HF model dir + MLflow model"),
        StageDef("eval", "eval", ("reward", "model"), lambda s: "runners.eval", "tool-call accuracy with repeats"),
        StageDef("entropy", "entropy", ("model",), lambda s: "runners.entropy", "entropy after tool calls"),
        StageDef("generate", "generate", ("model",), lambda s: "runners.generate", "q* optimal sampling"),
    ]
}


def load_runner(stage: str, spec: "Spec") -> Any:
    """Import the runner module lazily (heavy deps load only for stages that run)."""
    module_name = STAGES[stage].runner(spec)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing.startswith(("runners", "registry")):
            raise
        raise MissingExtra(f"'{missing}' (needed by the {stage} stage)", f"pip install {missing}") from exc


def stage_spec_payload(stage: str, spec: "Spec") -> dict[str, Any]:
    """The part of the spec that determines this stage's result (for its cache key)."""
    sd = STAGES[stage]
    payload: dict[str, Any] = {sd.section: _dump(getattr(spec, sd.section))}
    for section in sd.reads:
        payload[section] = _dump(getattr(spec, section))
    return payload


def _dump(section: Any) -> Any:
    return None if section is None else section.model_dump(mode="json")
