"""``rlreg promote RUN --alias champion``: point a model-registry alias at the version a run made.

RUN is a merge stage run, or a parent (spec) run whose merge child made the version; a merge
child that was a cache hit leads to the run that really merged. The merge stage itself points
``candidate`` at every new version; promoting is the human decision.
"""

from __future__ import annotations

import json

import click

from registry.errors import UsageError


def _merge_runs(client, run_id: str) -> list[str]:
    """Run ids whose model versions RUN stands for (itself, its merge child, a cache hit's source)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UsageError(f"run {run_id}: not found in this tracking store (check MLFLOW_TRACKING_URI)") from None
    ids = [run_id]
    if run.data.tags.get("rlreg.role") == "parent":
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and tags.`rlreg.stage` = 'merge'",
        )
        ids += [c.info.run_id for c in children] + [c.data.tags["rlreg.cache_hit"] for c in children
                                                     if c.data.tags.get("rlreg.cache_hit")]
    elif run.data.tags.get("rlreg.cache_hit"):
        ids.append(run.data.tags["rlreg.cache_hit"])
    return ids


def find_version(client, run_id: str, name: str | None = None):
    versions = [v for rid in _merge_runs(client, run_id) for v in client.search_model_versions(f"run_id = '{rid}'")]
    if name:
        versions = [v for v in versions if v.name == name]
    if not versions:
        raise UsageError(
            f"run {run_id}: no registered model version{f' of {name!r}' if name else ''} comes from it "
            "(pass the parent or merge run of a spec whose merge stage registered its model)"
        )
    names = sorted({v.name for v in versions})
    if len(names) > 1:
        raise UsageError(f"run {run_id}: versions of several models ({', '.join(names)}); choose one with --name")
    return max(versions, key=lambda v: int(v.version))


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--alias", default="champion", show_default=True, help="Alias to point at the run's model version.")
@click.option("--name", help="Registered model name, when the run made versions of several.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def promote(run_id: str, alias: str, name: str | None, as_json: bool) -> None:
    """Point a registry alias (default: champion) at the model version a run registered."""
    import re

    from mlflow.exceptions import MlflowException

    from registry.store import ensure_store

    if re.fullmatch(r"v\d+", alias) or not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
        raise UsageError(f"--alias {alias}: use letters, digits, '_' or '-' (v<number> is reserved by MLflow)")
    client = ensure_store()
    version = find_version(client, run_id, name)
    try:
        previous = client.get_model_version_by_alias(version.name, alias).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias(version.name, alias, version.version)
    result = {"name": version.name, "version": str(version.version), "alias": alias,
              "previous": None if previous is None else str(previous), "uri": f"models:/{version.name}@{alias}"}
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    was = f" (was v{previous})" if previous is not None and str(previous) != str(version.version) else ""
    click.echo(f"{version.name} v{version.version} @{alias}{was}: load it with mlflow.pyfunc.load_model('{result['uri']}')")
