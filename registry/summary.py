"""The closing lines of ``rlreg run``: status, where to look in MLflow, and the metrics that
answer "how did it do" (with their intervals), not sizes and counts that the spec fixes."""

from __future__ import annotations

from typing import Any

# Sizes and counts fixed by the spec and the data, and timings: in the UI, not in the verdict.
CONSTANT_PREFIXES = ("convert/", "merge/")
SKIP_SUFFIXES = ("/repeats", "/steps", "seconds", "tokens_per_s", "_ms_per_position", "_std", "_ci95_low", "_ci95_high")


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """A UI link for a server URI; for a local store, the command that serves it and the page."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}  then open http://127.0.0.1:5000/{page}"


def headline_lines(metrics: dict[str, float]) -> list[str]:
    """``eval/accuracy = 0.55 [0.41, 0.69] 95% CI`` instead of four lines per repeated metric."""
    lines = []
    for key, value in metrics.items():
        if key.startswith(CONSTANT_PREFIXES) or key.endswith(SKIP_SUFFIXES):
            continue
        base = key[: -len("_mean")] if key.endswith("_mean") else None
        low, high = (metrics.get(f"{base}_ci95_low"), metrics.get(f"{base}_ci95_high")) if base else (None, None)
        if low is not None and high is not None:
            lines.append(f"{base} = {value:.4g} [{low:.4g}, {high:.4g}] 95% CI")
        else:
            lines.append(f"{key} = {value:.4g}")
    return lines


def closing_lines(summary: Any) -> list[str]:
    metrics = {k: v for s in summary.stages for k, v in s.metrics.items()}
    hits = [s.stage for s in summary.stages if s.cache_hit]
    reused = f" ({len(hits)} cached: {', '.join(hits)})" if hits else ""
    lines = [f"Done: parent run {summary.parent_run_id} {summary.status}{reused}",
             f"  {run_url(summary.tracking_uri, summary.experiment_id, summary.parent_run_id)}"]
    return lines + [f"  {line}" for line in headline_lines(metrics)]
