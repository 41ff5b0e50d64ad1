"""What a parent run shows in the MLflow UI: the spec params the run used, its training curves,
headline means (not interval bounds), and an experiment that opens in the classic ML view.

- Params: the resolved spec minus nulls, minus the sections of backends the run did not use
  (``train.verl.*`` when ``train.backend: builtin``, ``eval.bfcl.*`` when ``eval.backend: builtin``),
  minus identity fields (name, description, experiment, extends), which are tags: ``rlreg.spec``,
  ``mlflow.note.content``, ``rlreg.experiment``, ``rlreg.extends``. ``spec.yaml`` keeps everything.
- Curves: the train child's per-step ``actor/entropy``, ``critic/score/mean``,
  ``rollout/reward_mean_generated`` (builtin), ``response_length/mean`` are copied onto the parent with ``log_batch``, so the compare page of
  two parents overlays them without opening children (a cached train stage copies from the run
  that computed it).
- Headline: interval bounds and stds (``*_ci95_low/high``, ``*_std``) stay on the eval child;
  the parent carries the means (one chart each, not three).
- Experiment kind: MLflow 3 opens an experiment in the GenAI view unless the experiment tag
  ``mlflow.experimentKind`` says ``custom_model_development`` (the value MLflow's UI uses for
  classic ML experiments); set once, never overwriting a user's choice.
"""

from __future__ import annotations

import re
from typing import Any

IDENTITY_FIELDS = ("name", "description", "experiment", "extends")
BACKEND_SECTIONS = ("builtin", "verl", "bfcl", "vllm")
CURVE_KEYS = ("actor/entropy", "critic/score/mean", "rollout/reward_mean_generated", "response_length/mean")
INTERVAL_RE = re.compile(r"(_ci\d+(\.\d+)?_low|_ci\d+(\.\d+)?_high|_std)$")
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"


def _prune(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    backend = obj.get("backend")
    out = {}
    for key, value in obj.items():
        if value is None:
            continue  # a null is an unset option: nothing the run used
        if isinstance(backend, str) and key in BACKEND_SECTIONS and key != backend:
            continue  # settings of a backend this section did not run
        out[key] = _prune(value)
    return out


def parent_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the parent's params: only what the run used (see the module doc)."""
    return {k: v for k, v in _prune(spec).items() if k not in IDENTITY_FIELDS}


def identity_tags(spec: dict[str, Any]) -> dict[str, str]:
    tags = {"rlreg.experiment": str(spec.get("experiment") or "")}
    if spec.get("extends"):
        tags["rlreg.extends"] = str(spec["extends"])
    return tags


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """Headline metrics for the parent: means, counts, last values — no interval bounds."""
    return {k: v for k, v in metrics.items() if not INTERVAL_RE.search(k)}


def copy_curves(client: Any, source_run_id: str, parent_id: str, keys: tuple[str, ...] = CURVE_KEYS) -> list[str]:
    """Copy the per-step histories of ``keys`` (those the source logged) onto the parent."""
    from mlflow.entities import Metric

    source = client.get_run(source_run_id)
    hit = source.data.tags.get("rlreg.cache_hit")
    if hit and hit != source_run_id:  # a reused stage logs headline values only; the curves live on the hit
        source_run_id, source = hit, client.get_run(hit)
    logged = source.data.metrics
    copied, batch = [], []
    for key in keys:
        if key not in logged:
            continue
        copied.append(key)
        batch += [Metric(key, m.value, m.timestamp, m.step) for m in client.get_metric_history(source_run_id, key)]
    for i in range(0, len(batch), 1000):
        client.log_batch(parent_id, metrics=batch[i : i + 1000])
    return copied


def mark_classic_ml(client: Any, experiment_id: str) -> None:
    """Open the experiment in MLflow 3's classic ML view (unless a kind is already chosen)."""
    exp = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in (exp.tags or {}):
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML)
