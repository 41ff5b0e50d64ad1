"""Log a merged Hugging Face model directory as an MLflow model (pyfunc) and register it.

    HF dir ─► mlflow.pyfunc.save_model(python_model=hf_pyfunc.py, artifacts=…)   (models from code)
           ─► LoggedModel "policy" of the merge run (experiment › Models tab; run › Logged models)
           ─► registry: <experiment>-policy vN (source models:/<id>), alias `candidate`

``copy`` puts the directory inside the model (``artifacts/hf_model``); ``reference`` puts only
``reference.json`` (the durable path in the stage cache) and the sha256 manifest there; the loader
checks the files against the manifest. Either way ``mlflow.pyfunc.load_model`` works offline with
only mlflow + transformers + torch installed. Why not ``mlflow.transformers``: domain.md §7.
"""

from __future__ import annotations

import json
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

PYFUNC_CODE = Path(__file__).with_name("hf_pyfunc.py")
LOGGED_MODEL_NAME = "policy"  # runs:/<merge run>/policy; not "model", the run artifact dir of the verl merge
DEFAULT_ALIAS = "candidate"


def registered_name_for(experiment: str) -> str:
    """The default registry name: one registered model per experiment (``<experiment>-policy``);
    characters the registry/URIs dislike become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-") + "-policy"


def pip_requirements() -> list[str]:
    reqs = []
    for dist in ("mlflow", "torch", "transformers", "tokenizers", "safetensors"):
        try:
            reqs.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs


def _signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", 64), ParamSpec("temperature", "double", 0.0)]),
    )


def save_pyfunc(dest: Path, model_dir: Path, manifest_path: Path, mode: str, durable_dir: Path,
                mlflow_model: Any = None) -> Path:
    """Write the pyfunc model directory ``dest`` (``copy``: with the HF files; else a reference)."""
    import mlflow.pyfunc

    if mode == "copy":
        artifacts = {"hf_model": str(model_dir)}
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        ref = dest.parent / "reference.json"
        ref.write_text(json.dumps({"path": str(durable_dir), "manifest": manifest_path.name}, indent=2) + "\n")
        artifacts = {"reference": str(ref), "manifest": str(manifest_path)}
    import warnings

    from registry.quiet import quiet_hf

    with quiet_hf(), warnings.catch_warnings():
        # an input example would make MLflow load + run the model here (multi-GB; and a reference's
        # path exists only once the stage is moved into the cache): the signature is explicit instead
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        mlflow.pyfunc.save_model(
            path=str(dest), python_model=str(PYFUNC_CODE), artifacts=artifacts, signature=_signature(),
            pip_requirements=pip_requirements(), mlflow_model=mlflow_model,
        )
    return dest


def log_pyfunc(client: Any, run_id: str, model_dir: Path, manifest_path: Path, mode: str, durable_dir: Path,
               tags: dict[str, str] | None = None) -> Any:
    """A READY LoggedModel of ``run_id`` (also recorded as the run's output); returns it."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    run = client.get_run(run_id)
    logged = client.create_logged_model(run.info.experiment_id, name=LOGGED_MODEL_NAME, source_run_id=run_id,
                                        tags=tags, model_type="hf-causal-lm")
    try:
        with tempfile.TemporaryDirectory(prefix="rlreg-pyfunc-") as tmp:
            mlmodel = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id,
                            model_uuid=logged.model_id)
            local = save_pyfunc(Path(tmp) / "model", model_dir, manifest_path, mode, durable_dir, mlmodel)
            client.log_model_artifacts(logged.model_id, str(local))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        return client.finalize_logged_model(logged.model_id, "READY")
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")
        raise


def lineage(client: Any, run_id: str) -> dict[str, str]:
    """Source run ids of a merge run: its parent, the sibling train run (and, when that was a
    cache hit, the run that really trained) and the datasets the merge run carries."""
    run = client.get_run(run_id)
    out = {"rlreg.merge_run": run_id}
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        out["rlreg.parent_run"] = parent
        trains = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent}' and tags.`rlreg.stage` = 'train'", max_results=1,
        )
        if trains:
            train = trains[0]
            out["rlreg.train_run"] = train.data.tags.get("rlreg.cache_hit") or train.info.run_id
            if train.data.tags.get("rlreg.cache_hit"):
                out["rlreg.train_child"] = train.info.run_id
    datasets = [f"{d.dataset.name}@{d.dataset.digest}" for d in (run.inputs.dataset_inputs if run.inputs else [])]
    if datasets:
        out["rlreg.datasets"] = ", ".join(sorted(set(datasets)))
    return out


def register(client: Any, name: str, logged: Any, run_id: str, tags: dict[str, str], alias: str | None = DEFAULT_ALIAS) -> Any:
    """Add a version of ``name`` (created if missing) whose source is the LoggedModel; point
    ``alias`` at it. Returns the ModelVersion."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Policies merged by rlreg (one version per merge run).")
    description = f"rlreg spec {tags.get('rlreg.spec', '?')}: merge run {run_id}"
    if tags.get("rlreg.train_run"):
        description += f", trained by run {tags['rlreg.train_run']}"
    if tags.get("rlreg.datasets"):
        description += f"; data {tags['rlreg.datasets']}"
    version = client.create_model_version(name, source=f"models:/{logged.model_id}", run_id=run_id, tags=tags,
                                          description=description, model_id=logged.model_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version
