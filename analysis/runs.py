"""Find rlreg runs in the MLflow store: parents by spec name or run id, their stage children, runs
by tag filter (as DataFrames), metric histories in bulk, and the resolved spec a run executed.

The run contract (written by ``registry``): a parent run per spec execution tagged
``rlreg.role=parent`` and ``rlreg.spec=<name>``, holding the flattened spec as params, the
``spec.yaml`` artifact and headline metrics; one child per stage tagged ``rlreg.role=stage``,
``rlreg.stage=<stage>`` and ``mlflow.parentRunId``. Searches span every active experiment, because
a spec chooses its own ``experiment``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import UsageError

TAG_SPEC = "rlreg.spec"
TAG_ROLE = "rlreg.role"
TAG_STAGE = "rlreg.stage"
TAG_PARENT = "mlflow.parentRunId"
TAG_CACHE_HIT = "rlreg.cache_hit"
SPEC_ARTIFACT = "spec.yaml"
RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
RUN_PREFIX_RE = re.compile(r"^[0-9a-f]{6,31}$")


@dataclass
class RunRecord:
    """One MLflow run, flattened to what analysis needs (plain dicts, no MLflow entities)."""

    run_id: str
    experiment_id: str
    status: str
    start_time: int
    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return self.tags.get(TAG_SPEC, "")

    @property
    def role(self) -> str:
        return self.tags.get(TAG_ROLE, "")

    @property
    def stage(self) -> str:
        return self.tags.get(TAG_STAGE, "")

    @classmethod
    def from_run(cls, run: Any) -> RunRecord:
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            start_time=run.info.start_time or 0,
            run_name=run.info.run_name or "",
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
        )


def get_client(tracking_uri: str | None = None) -> Any:
    """An MlflowClient on ``tracking_uri`` (default: MLFLOW_TRACKING_URI / MLflow's default)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def experiment_ids(client: Any) -> list[str]:
    """Every active experiment: runs of different specs may live in different experiments."""
    from mlflow.entities import ViewType

    return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50000)]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _search(client: Any, filter_string: str, max_results: int = 1000, order_by: list[str] | None = None) -> list[Any]:
    return list(
        client.search_runs(
            experiment_ids(client), filter_string=filter_string, max_results=max_results,
            order_by=order_by or ["attributes.start_time DESC"],
        )
    )


def latest_parent(client: Any, spec_name: str) -> RunRecord:
    """The newest FINISHED parent run of ``spec_name``, across experiments."""
    base = f"tags.`{TAG_SPEC}` = {_quote(spec_name)} and tags.`{TAG_ROLE}` = 'parent'"
    finished = _search(client, base + " and attributes.status = 'FINISHED'", max_results=1)
    if finished:
        return RunRecord.from_run(finished[0])
    others = _search(client, base, max_results=1)
    if others:
        run = others[0]
        raise UsageError(
            f"spec '{spec_name}' has no FINISHED run (newest: {run.info.run_id}, {run.info.status}); "
            f"finish it with `rlreg run {spec_name}`, or pick that run by id"
        )
    known = known_specs(client)
    hint = f"specs in this store: {', '.join(known)}" if known else "this store has no rlreg runs yet"
    raise UsageError(f"no runs of spec '{spec_name}' ({hint}; run it with `rlreg run {spec_name}`)")


def known_specs(client: Any, limit: int = 20) -> list[str]:
    """Spec names that have parent runs (for error messages)."""
    runs = _search(client, f"tags.`{TAG_ROLE}` = 'parent'", max_results=1000)
    names = sorted({r.data.tags.get(TAG_SPEC, "") for r in runs} - {""})
    return names[:limit] + (["…"] if len(names) > limit else [])


def get_run(client: Any, run_id: str) -> RunRecord:
    from mlflow.exceptions import MlflowException

    try:
        return RunRecord.from_run(client.get_run(run_id))
    except MlflowException as exc:
        raise UsageError(f"run '{run_id}' is not in the store ({exc.message.splitlines()[0]})") from None


def resolve(client: Any, ref: str, run_id: str | None = None) -> RunRecord:
    """A spec name (its latest finished parent) or a run id → the parent run to compare.

    ``run_id`` pins the run for a spec name (checked to belong to that spec). A stage run's id
    resolves to its parent, where the headline metrics and the spec live.
    """
    from registry.runref import resolve_run_id  # a pinned --run SPEC=ID may be a prefix

    if run_id is not None:
        record = get_run(client, resolve_run_id(client, run_id))
        if record.spec and record.spec != ref:
            raise UsageError(f"run {run_id} belongs to spec '{record.spec}', not '{ref}' (fix the --run pairing)")
    elif RUN_ID_RE.match(ref):
        record = get_run(client, ref)
    elif RUN_PREFIX_RE.match(ref) and ref not in known_specs(client, limit=10_000):
        record = get_run(client, resolve_prefix(client, ref))
    else:
        return latest_parent(client, ref)
    if record.role == "stage" and record.tags.get(TAG_PARENT):
        record = get_run(client, record.tags[TAG_PARENT])
    return record


def resolve_prefix(client: Any, prefix: str) -> str:
    """A unique run id prefix (≥ 6 hex digits) → the full run id.

    TODO(runref): helper `studies` adds the shared resolver ``registry/runref.py``; once it is on
    main, call it here. Until then: the rlreg runs of every experiment, matched client-side
    (MLflow's filter language has no prefix match on run ids).
    """
    try:
        from registry import runref  # type: ignore[attr-defined]
    except ImportError:
        runref = None
    shared = getattr(runref, "resolve_run_id", None)
    if shared is not None:
        return str(shared(client, prefix))
    runs = _search(client, f"tags.`{TAG_ROLE}` != ''", max_results=50000)
    hits = sorted({r.info.run_id for r in runs if r.info.run_id.startswith(prefix)})
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UsageError(f"no run id starts with '{prefix}' (give more digits or the full 32-hex id)")
    raise UsageError(f"run id prefix '{prefix}' is ambiguous ({', '.join(h[:12] for h in hits[:5])}…); give more digits")


def children(client: Any, parent: RunRecord | str) -> dict[str, RunRecord]:
    """Stage child runs of a parent, keyed by stage (the newest one if a stage appears twice).
    The registry creates children in their parent's experiment, so only that one is searched."""
    flt = f"tags.`{TAG_PARENT}` = {_quote(parent if isinstance(parent, str) else parent.run_id)}"
    if isinstance(parent, str):
        runs = _search(client, flt, max_results=200)
    else:
        runs = list(client.search_runs([parent.experiment_id], filter_string=flt, max_results=200,
                                       order_by=["attributes.start_time DESC"]))
    out: dict[str, RunRecord] = {}
    for run in runs:  # newest first: keep the first seen per stage
        record = RunRecord.from_run(run)
        out.setdefault(record.stage or record.run_name or record.run_id, record)
    return out


def data_run_id(record: RunRecord) -> str:
    """Where a stage's metric histories live: a reused stage (cache hit) logs only the headline
    metrics; its per-step / per-repeat values stay on the run that computed them."""
    return record.tags.get(TAG_CACHE_HIT) or record.run_id


def compare_page(records: Iterable[RunRecord], base: str = "") -> str:
    """MLflow UI's compare page for these runs: ``<base>/#/compare-runs?runs=[…]&experiments=[…]``
    (URL-encoded JSON lists). ``base`` is where ``mlflow ui`` listens, e.g. http://127.0.0.1:5000."""
    import json
    from urllib.parse import quote

    records = list(records)
    ids = [r.run_id for r in records]
    exps = sorted({r.experiment_id for r in records})
    return f"{base.rstrip('/')}/#/compare-runs?runs={quote(json.dumps(ids))}&experiments={quote(json.dumps(exps))}"


def metric_page(records: Iterable[RunRecord], keys: Iterable[str], base: str = "") -> str:
    """MLflow UI's metric page: the per-step histories of ``keys`` for these runs, overlaid (the
    page the compare page links each metric to). Same query as MLflow's ``getMetricPageRoute``."""
    import json
    from urllib.parse import quote

    records, keys = list(records), list(keys)
    ids = json.dumps([r.run_id for r in records])
    exps = json.dumps(sorted({r.experiment_id for r in records}))
    query = (f"runs={quote(ids)}&metric={quote(json.dumps(keys[0]))}&experiments={quote(exps)}"
             f"&plot_metric_keys={quote(json.dumps(keys))}&plot_layout={quote('{}')}&x_axis=step&y_axis_scale=linear"
             f"&line_smoothness=1&show_point=false&deselected_curves={quote('[]')}&last_linear_y_axis_range={quote('[]')}")
    return f"{base.rstrip('/')}/#/metric?{query}"


def runs_frame(filter_string: str = "", tracking_uri: str | None = None, max_results: int = 10000) -> Any:
    """Runs matching an MLflow filter (e.g. ``tags.`rlreg.spec` = 'demo-egpo'``) in every
    experiment, as the ``mlflow.search_runs`` DataFrame (columns ``params.*``, ``metrics.*``,
    ``tags.*``)."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    if tracking_uri:  # mlflow.search_runs reads the global URI; restore it afterwards
        mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.search_runs(
            search_all_experiments=True, filter_string=filter_string, max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
    finally:
        if tracking_uri:
            mlflow.set_tracking_uri(previous)


def parents_frame(spec_name: str | None = None, tracking_uri: str | None = None) -> Any:
    """Parent runs (optionally of one spec) as a DataFrame, newest first."""
    flt = f"tags.`{TAG_ROLE}` = 'parent'"
    if spec_name:
        flt += f" and tags.`{TAG_SPEC}` = {_quote(spec_name)}"
    return runs_frame(flt, tracking_uri)


def metric_histories(client: Any, run_ids: Iterable[str], keys: Iterable[str]) -> Any:
    """Every logged value of ``keys`` for ``run_ids`` as a DataFrame
    ``[run_id, key, step, value, timestamp]`` sorted by run, key, step.

    Through MLflow's public client API only (``MlflowClient.get_metric_history``, one call per run
    and key that the run logged): the same code on sqlite, PostgreSQL and a REST server. A run's
    logged keys come from ``get_run`` so keys it never logged cost no call.
    """
    import pandas as pd

    run_ids, keys = list(dict.fromkeys(run_ids)), list(dict.fromkeys(keys))
    rows: list[tuple[str, str, int, float, int]] = []
    for rid in run_ids:
        logged = _logged_keys(client, rid)
        for key in keys:
            if logged is not None and key not in logged:
                continue
            for m in client.get_metric_history(rid, key):
                rows.append((rid, key, m.step, m.value, m.timestamp))
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    return frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable").reset_index(drop=True)


def _logged_keys(client: Any, run_id: str) -> set[str] | None:
    get_run = getattr(client, "get_run", None)
    if get_run is None:
        return None
    return set(get_run(run_id).data.metrics)


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """MLflow draws a tqdm bar per download; a CLI that prints tables should not."""
    old = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = old


def download_artifact(client: Any, run_id: str, path: str, dst: str | Path) -> Path:
    with _quiet_downloads():
        return Path(client.download_artifacts(run_id, path, str(dst)))


def spec_from_run(run_id: str, client: Any = None) -> dict:
    """The resolved spec a run executed (its ``spec.yaml`` artifact), for ``rlreg diff <run id>``.
    A stage run falls back to its parent's artifact."""
    import yaml

    client = client or get_client()
    record = get_run(client, run_id)
    for rid in dict.fromkeys([record.run_id, record.tags.get(TAG_PARENT, "")]):
        if not rid:
            continue
        if SPEC_ARTIFACT not in {a.path for a in client.list_artifacts(rid)}:
            continue
        with tempfile.TemporaryDirectory(prefix="rlreg-spec-") as tmp:
            path = download_artifact(client, rid, SPEC_ARTIFACT, tmp)
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise UsageError(f"run {rid}: {SPEC_ARTIFACT} is not a mapping (the artifact is damaged; rerun the spec)")
        return data
    raise UsageError(
        f"run {run_id} has no {SPEC_ARTIFACT} artifact (it was not recorded by `rlreg run`); "
        "compare its params instead"
    )
