"""Dataset lineage across a pipeline: every stage run and the parent carry the datasets they used.

Only the runners that read a dataset file log it (convert: its train/test splits; eval: the
evaluated prompts). ``DatasetLineage`` copies those MLflow dataset inputs (name, digest, source,
context) onto every later stage run of the same pipeline, onto a cache-hit run from the run it
reuses, and onto the parent, so the UI's Datasets column is filled everywhere and two runs are
comparable on data by digest. No dataset is re-read: the entities are copied.
"""

from __future__ import annotations

from typing import Any

from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT


def _key(ds_input: Any) -> tuple[str, str, str]:
    context = next((t.value for t in ds_input.tags if t.key == MLFLOW_DATASET_CONTEXT), "")
    return ds_input.dataset.name, ds_input.dataset.digest, context


def run_dataset_inputs(client: Any, run_id: str) -> list[Any]:
    run = client.get_run(run_id)
    return list(run.inputs.dataset_inputs) if run.inputs else []


class DatasetLineage:
    def __init__(self, client: Any):
        self.client = client
        self.seen: dict[tuple[str, str, str], Any] = {}

    def collect(self, run_id: str) -> None:
        """Remember the datasets ``run_id`` logged (for the stages after it and the parent)."""
        for ds in run_dataset_inputs(self.client, run_id):
            self.seen.setdefault(_key(ds), ds)

    def log_to(self, run_id: str, extra: list[Any] = ()) -> int:
        """Log the collected datasets (and ``extra``) that ``run_id`` lacks; returns how many."""
        have = {_key(ds) for ds in run_dataset_inputs(self.client, run_id)}
        todo: dict[tuple[str, str, str], Any] = {}
        for ds in [*self.seen.values(), *extra]:
            if _key(ds) not in have:
                todo.setdefault(_key(ds), ds)
        if todo:
            self.client.log_inputs(run_id, datasets=list(todo.values()))
        return len(todo)
