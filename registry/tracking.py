"""A batched writer for one MLflow run, handed to runners as ``ctx.tracker``.

Why batching: on sqlite one ``log_metric`` call costs ~4 ms and 1000 of them several seconds,
while one ``log_batch`` of 1000 values costs ~0.2 s (domain.md §7). Metrics are buffered and
flushed as ``log_batch`` calls (≤ 1000 metrics each) when the buffer fills, every few seconds,
and on ``flush()``/``close()``.

Every value leaving through this class passes registry/redact.py first (params, tags, texts,
dicts, tables: all rules; artifact files and directories: the value-based rules, since they are
stage outputs whose keys are content): the tracker is the boundary where spec content enters the store.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from registry import redact
from registry.flatten import flatten, param_items

METRIC_BATCH = 1000
FLUSH_SECONDS = 5.0


class Tracker:
    def __init__(self, client: Any, run_id: str):
        self.client = client
        self.run_id = run_id
        self._metrics: list[Any] = []
        self._last_flush = time.monotonic()
        self._logged_params: dict[str, str] = {}
        self.metric_keys: set[str] = set()
        """Metric keys this tracker has logged (the registry copies only missing headline keys)."""

    # -- metrics -----------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Buffer metric values (one step). Non-finite values are kept (MLflow stores NaN)."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for key, value in metrics.items():
            if value is None:
                continue
            self._metrics.append(Metric(key=_metric_key(key), value=float(value), timestamp=ts, step=step or 0))
            self.metric_keys.add(_metric_key(key))
        if len(self._metrics) >= METRIC_BATCH or time.monotonic() - self._last_flush > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            chunk, self._metrics = self._metrics[:METRIC_BATCH], self._metrics[METRIC_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    # -- params and tags ---------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        """Flatten nested dicts into dotted keys, redact secrets, truncate to MLflow's limit, and
        log in batches of 100. Re-logging an identical value is a no-op (params are immutable)."""
        from mlflow.entities import Param

        items = [(k, v) for k, v in param_items(flatten(dict(params), prefix)) if self._logged_params.get(k) != v]
        for i in range(0, len(items), 100):
            chunk = items[i : i + 100]
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in chunk])
            self._logged_params.update(chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(redact.redact_value(str(k), str(v)))[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, tags=items[i : i + 100])

    # -- artifacts ---------------------------------------------------------------------------
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if redact.is_text_artifact(path):
            with tempfile.TemporaryDirectory(prefix="rlreg-redact-") as tmp:
                clean = Path(tmp) / path.name
                # value-based rules: files are stage outputs (data, models, logs); the files rlreg
                # writes from the spec are masked in full when written (verl config, launch logs)
                if redact.redacted_copy(path, clean, keys=False):
                    self.client.log_artifact(self.run_id, str(clean), artifact_path)
                    return
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        mirror = redact.redacted_tree(Path(directory))
        try:
            self.client.log_artifacts(self.run_id, str(mirror or directory), artifact_path)
        finally:
            if mirror is not None:
                shutil.rmtree(mirror, ignore_errors=True)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, redact.redact_text(text), artifact_file)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        obj = redact.redact_obj(obj)
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            self.log_text(yaml.safe_dump(obj, sort_keys=False, allow_unicode=True), artifact_file)
        else:
            self.log_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_table(self, rows: Iterable[Mapping[str, Any]] | Any, artifact_file: str) -> None:
        """An MLflow table (shows in the UI's Evaluation/Artifacts view). ``rows``: list of dicts
        or a DataFrame. Nested values are JSON-encoded so every cell is a scalar."""
        import pandas as pd

        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        df = df.apply(lambda col: col.map(lambda v: _cell(redact.redact_obj(v)))) if len(df) else df
        self.client.log_table(self.run_id, data=df, artifact_file=artifact_file)

    def log_input(self, dataset: Any, context: str) -> None:
        """Record a dataset (an ``mlflow.data`` Dataset) as this run's input."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        entity = dataset._to_mlflow_entity()
        self.client.log_inputs(
            self.run_id, datasets=[DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        )

    def artifact_dir(self) -> Path:
        """A temp dir for building artifacts before logging them."""
        return Path(tempfile.mkdtemp(prefix="rlreg-art-"))

    def close(self) -> None:
        self.flush()


class NullTracker(Tracker):
    """Records what would be logged; for unit tests of runners that do not need a store."""

    def __init__(self) -> None:  # noqa: D401 - no client
        self.run_id = "null"
        self.metrics: list[tuple[str, float, int]] = []
        self.params: dict[str, str] = {}
        self.tags: dict[str, str] = {}
        self.artifacts: dict[str, Any] = {}
        self._metrics = []
        self._logged_params = {}
        self.metric_keys = set()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        for k, v in metrics.items():
            if v is not None:
                self.metrics.append((_metric_key(k), float(v), step or 0))

    def flush(self) -> None:
        pass

    def log_params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        self.params.update(dict(param_items(flatten(dict(params), prefix))))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update({str(k): str(redact.redact_value(str(k), str(v))) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        name = f"{artifact_path}/{Path(path).name}" if artifact_path else Path(path).name
        self.artifacts[name] = Path(path)

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts[artifact_path or "."] = Path(directory)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts[artifact_file] = redact.redact_text(text)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.artifacts[artifact_file] = figure

    def log_table(self, rows: Any, artifact_file: str) -> None:
        self.artifacts[artifact_file] = rows

    def log_input(self, dataset: Any, context: str) -> None:
        self.artifacts[f"input:{context}"] = dataset


def _metric_key(key: str) -> str:
    # MLflow keys: letters, digits, _ - . space : /  (others would reject the whole batch)
    return "".join(c if (c.isalnum() or c in "_-. :/") else "_" for c in key)[:250]


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value
