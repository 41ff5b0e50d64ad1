"""The verl backend of the train stage (``train.backend: verl``): the spec becomes a verl
``ppo_trainer`` config checked by verl itself, then ``python -m verl.trainer.main_ppo`` runs on Ray
with MLflow attached to the train child run. ``runners.verl.merge`` is the merge stage for it.

Modules: ``config`` (spec → verl keys), ``compose`` (Hydra compose + ``validate_config`` in the verl
venv), ``launch`` (environment, argv, log streaming, metrics), ``egpo_plugin`` (loaded inside verl),
``merge``, ``dry_run`` (what ``describe``/``describe_json`` return; not ``describe.py``: once imported, a
submodule replaces the package attribute of the same name, and ``runners.verl.describe`` must stay the
function the pipeline calls). This file stays import-light: verl processes import ``runners.verl.egpo_plugin`` through
it, and they have neither pydantic's spec models nor MLflow's client necessarily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.context import StageContext, StageResult
    from registry.spec import Spec
    from registry.spec.train import TrainSpec


def run(stage_spec: TrainSpec, ctx: StageContext) -> StageResult:
    """Check the config with verl, launch verl, stream its log, return headline metrics."""
    from runners.verl.stage import run_train

    return run_train(stage_spec, ctx)


def describe(stage_spec: TrainSpec, spec: Spec) -> str:
    """What ``rlreg run <spec> --dry-run`` prints: the exact argv and environment, the keys the spec
    sets and how verl's composed config differs from its defaults; the full composed config is
    written to a file the text names."""
    from runners.verl.dry_run import describe_text

    return describe_text(stage_spec, spec)


def describe_json(stage_spec: TrainSpec, spec: Spec) -> dict[str, Any]:
    """The same as data (JSON-serialisable) for ``rlreg run --dry-run --json``."""
    from runners.verl.dry_run import describe_data

    return describe_data(stage_spec, spec)
