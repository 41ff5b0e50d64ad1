"""Where runs go: the tracking URI, store initialisation, experiments.

Default store when nothing is set: ``sqlite:///mlflow.db`` in the working directory (MLflow's own
default since 3.x). Several processes creating a fresh sqlite store at the same moment crash in
MLflow's schema migration (domain.md §7), so the first open happens once under a file lock.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from filelock import FileLock

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _sqlite_file(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):])
    return None


def ensure_store(uri: str | None = None) -> Any:
    """Return an MlflowClient on a ready store (created/migrated once, under a lock for sqlite)."""
    import mlflow

    from registry.storecheck import check_store_uri

    uri = uri or tracking_uri()
    check_store_uri(uri)  # one clear line for a bad URI, a bounded wait for a dead server
    db = _sqlite_file(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db) + ".lock", timeout=300):
            client = mlflow.MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)  # creates + migrates the schema
    else:
        client = mlflow.MlflowClient(tracking_uri=uri)
    return client


def experiment_id(client: Any, name: str) -> str:
    """Get or create an experiment by name (safe when two processes race to create it)."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def all_experiment_ids(client: Any) -> list[str]:
    return [e.experiment_id for e in client.search_experiments(max_results=50000)]


def stage_store_root(project_root: Path) -> Path:
    """Content-addressed stage outputs: $RLREG_HOME or ./.rlreg next to the project."""
    return Path(os.environ.get("RLREG_HOME") or project_root / ".rlreg").resolve()
