"""Summaries of q* diagnostics: per sample (the seed's .diagnostics.jsonl keys) and per run (MLflow)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from runners.generate.writer import read_jsonl

ALPHA_RANGE = (0.2, 0.8)
"""Seed 003: α outside this range means one model dominates the mixture."""
SUMMARY_NAMES = ("alpha", "ess_ratio", "ess_theta", "ess_t", "kl_theta", "kl_t")
HISTOGRAMS = (("alpha", "α (weight on π_t)"), ("ess_ratio", "ESS_θ / ESS_t"),
              ("kl_theta", "KL(q‖π_θ)"), ("kl_t", "KL(q‖π_t)"))


def sample_summary(token_diags: dict[str, list[float]]) -> dict[str, float | None]:
    """``<name>_mean`` / ``<name>_std`` over one sample's tokens (None when it has none)."""
    out: dict[str, float | None] = {}
    for name in SUMMARY_NAMES + ("tail_mass",):
        vals = token_diags.get(name)
        if name == "tail_mass" and not vals:
            continue
        mean, std = _mean_std(vals or [])
        out[f"{name}_mean"], out[f"{name}_std"] = mean, std
    return out


def log_run_summary(
    tracker: Any, data_path: Path, diagnostics_path: Path, token_values: dict[str, list[float]], examples: int,
) -> dict[str, float]:
    """Run-level metrics over every sample in the files (resumed ones too), histograms of this run's
    tokens, the two files and an example table. Returns the headline metrics."""
    diags = read_jsonl(diagnostics_path)
    metrics: dict[str, float] = {"generate/samples": float(len(diags))}
    if diags:
        metrics["generate/eos_fraction"] = sum(bool(d.get("stopped_on_eos")) for d in diags) / len(diags)
        metrics["generate/response_tokens_mean"] = sum(d.get("num_tokens", 0) for d in diags) / len(diags)
    for name in SUMMARY_NAMES:
        vals = [d[f"{name}_mean"] for d in diags if d.get(f"{name}_mean") is not None]
        if vals:
            metrics[f"generate/{name}_mean"], metrics[f"generate/{name}_std"] = _mean_std(vals)
    for name, vals in token_values.items():
        if vals:
            metrics[f"generate/token_{name}_mean"] = sum(vals) / len(vals)
    alphas = [v for v in token_values.get("alpha", []) if math.isfinite(v)]
    if alphas:  # seed 003's advice: α should stay in [0.2, 0.8] (else one model dominates q*)
        low, high = ALPHA_RANGE
        outside = sum(1 for v in alphas if v < low or v > high) / len(alphas)
        metrics["generate/alpha_outside_range_fraction"] = outside
        if outside > 0:
            print(f"[rlreg] warning: {outside:.1%} of generated tokens have α outside [{low}, {high}] "
                  "(one model dominates q* there; see `rlreg analyze-diagnostics`)", file=sys.stderr)
    tracker.log_artifact(data_path, "generate")
    tracker.log_artifact(diagnostics_path, "generate")
    if examples:
        rows = read_jsonl(data_path)[:examples]
        tracker.log_table([{"sample_idx": r["sample_idx"], "prompt": r["messages"][-2]["content"] if len(r["messages"]) > 1 else "",
                            "response": r["messages"][-1]["content"]} for r in rows], "generate_examples.json")
    if any(token_values.get(name) for name, _ in HISTOGRAMS):
        tracker.log_figure(_histograms(token_values), "generate_histograms.png")
    return metrics


def _histograms(token_values: dict[str, list[float]]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HISTOGRAMS), figsize=(4 * len(HISTOGRAMS), 3.2))
    for ax, (name, label) in zip(axes, HISTOGRAMS):
        vals = [v for v in token_values.get(name, []) if math.isfinite(v)]
        if name == "ess_ratio" and vals:
            vals = [math.log10(max(v, 1e-12)) for v in vals]
            label = "log10 " + label
        ax.hist(vals, bins=40, color="#4472c4")
        ax.set_xlabel(label)
        ax.set_ylabel("tokens")
    fig.suptitle(f"q* diagnostics per token ({len(token_values.get('alpha', []))} tokens)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _mean_std(vals: list[float]) -> tuple[float | None, float | None]:
    finite = [v for v in vals if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    mean = sum(finite) / len(finite)
    var = sum((v - mean) ** 2 for v in finite) / len(finite)
    return mean, math.sqrt(var)
