"""``rlreg runs``: the run listing (id, spec, study/arm/seed, status, start, duration, metrics).

Parent runs (one per spec execution, study cells included) by default; ``--role`` shows stage,
study or report runs instead. Filters combine with ``and``; ``--where`` takes any MLflow filter
(``metrics.`eval/accuracy_mean` > 0.3``, ``params.`train.optimizer.lr` = '0.0005'``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from registry.errors import UsageError

STATUSES = ["RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"]
SORT_KEYS = ["start", "duration", "spec", "status", "cell"]


def _q(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def build_filter(spec: str | None, study: str | None, statuses: list[str], where: str | None, role: str) -> str:
    parts = [] if role == "any" else [f"tags.`rlreg.role` = {_q(role)}"]
    if spec:
        parts.append(f"tags.`rlreg.spec` = {_q(spec)}")
    if study:
        parts.append(f"tags.`rlreg.study` = {_q(study)}")
    if len(statuses) == 1:
        parts.append(f"attributes.status = {_q(statuses[0])}")
    elif statuses:
        parts.append("attributes.status IN (" + ", ".join(_q(s) for s in statuses) + ")")
    if where:
        parts.append(f"({where})" if " or " in where.lower() else where)
    return " and ".join(parts)


def run_rows(client: Any, filter_string: str, limit: int, metrics: list[str] | None) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    from registry.store import all_experiment_ids
    from registry.study.state import metric_value

    exp_ids = all_experiment_ids(client)
    if not exp_ids:
        return []
    try:
        runs = client.search_runs(exp_ids, filter_string=filter_string, max_results=limit,
                                  order_by=["attributes.start_time DESC"])
    except MlflowException as exc:
        raise UsageError(f"--where: MLflow rejects the filter '{filter_string}' ({exc.message.splitlines()[0]}); "
                         "e.g. --where \"metrics.`eval/accuracy_mean` > 0.3\"") from None
    rows = []
    now = int(time.time() * 1000)
    for r in runs:
        tags, info = r.data.tags, r.info
        end = info.end_time or (now if info.status == "RUNNING" else None)
        names = metrics or ([tags["rlreg.primary_metric"]] if tags.get("rlreg.primary_metric") else [])
        if not names and "eval/accuracy_mean" in r.data.metrics:
            names = ["eval/accuracy"]
        rows.append({
            "run_id": info.run_id, "experiment_id": info.experiment_id, "spec": tags.get("rlreg.spec", ""),
            "role": tags.get("rlreg.role", ""), "stage": tags.get("rlreg.stage"),
            "study": tags.get("rlreg.study"), "arm": tags.get("rlreg.arm"), "seed": tags.get("rlreg.seed"),
            "cell": tags.get("rlreg.cell"), "status": info.status, "start_time": info.start_time,
            "duration_s": round((end - info.start_time) / 1000, 1) if end and info.start_time else None,
            "metrics": {m: metric_value(r.data.metrics, m) for m in names},
        })
    return rows


def _sort(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    desc = key.startswith("-")
    key = key.lstrip("-")
    if key.startswith("metric:"):
        name = key[len("metric:"):]
        val = lambda r: r["metrics"].get(name)
    else:
        field = {"start": "start_time", "duration": "duration_s"}.get(key, key)
        val = lambda r: r.get(field)
    present = [r for r in rows if val(r) is not None]
    missing = [r for r in rows if val(r) is None]
    default_desc = key in ("start", "duration") or key.startswith("metric:")
    return sorted(present, key=val, reverse=default_desc != desc) + missing


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@click.command("runs")
@click.option("--spec", help="Only runs of this spec (tag rlreg.spec).")
@click.option("--study", help="Only cells of this study (tag rlreg.study).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES, case_sensitive=False),
              help="Only runs with this status (repeatable).")
@click.option("--where", help="More MLflow filter, e.g. \"metrics.`eval/accuracy_mean` > 0.3\".")
@click.option("--role", type=click.Choice(["parent", "stage", "study", "report", "any"]), default="parent",
              show_default=True, help="Which runs: spec runs (parent), their stages, studies, reports.")
@click.option("--metric", "metrics", multiple=True, help="Metric columns (default: the study's primary metric, "
              "else eval/accuracy); `eval/accuracy` reads eval/accuracy_mean when repeated.")
@click.option("--sort-by", default="start", show_default=True,
              help=f"One of {', '.join(SORT_KEYS)} or metric:NAME; a leading '-' reverses.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True, help="Newest N runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(spec, study, statuses, where, role, metrics, sort_by, limit, as_json) -> None:
    """List runs: id, spec, study/arm/seed, status, start, duration, primary metric."""
    from registry.plan import open_store_if_present

    if sort_by.lstrip("-") not in SORT_KEYS and not sort_by.lstrip("-").startswith("metric:"):
        raise UsageError(f"--sort-by {sort_by}: use one of {', '.join(SORT_KEYS)} or metric:NAME")
    client = open_store_if_present()
    flt = build_filter(spec, study, [s.upper() for s in statuses], where, role)
    rows = _sort(run_rows(client, flt, limit, list(metrics) or None), sort_by) if client is not None else []
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no runs match" + (f" ({flt})" if flt else ""))
        return
    metric_names = list(dict.fromkeys(m for r in rows for m in r["metrics"]))
    header = ["run", "spec", "study/cell", "status", "start", "duration", *metric_names]
    table = []
    for r in rows:
        where_ = f"{r['study']}:{r['cell']}" if r["study"] else (r["stage"] or "-")
        start = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["start_time"] / 1000)) if r["start_time"] else "-"
        vals = [r["metrics"].get(m) for m in metric_names]
        table.append([r["run_id"][:8], r["spec"] or "-", where_, r["status"], start, _fmt_duration(r["duration_s"]),
                      *("-" if v is None else f"{v:.4g}" for v in vals)])
    widths = [max(len(x) for x in col) for col in zip(header, *table)]
    for line in [header, *table]:
        click.echo("  ".join(x.ljust(w) for x, w in zip(line, widths)).rstrip())
