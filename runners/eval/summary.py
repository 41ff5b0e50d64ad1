"""Per-repeat metrics → the aggregate metrics both backends log (mean, std, Student-t CI, repeats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from registry.stats import mean_ci

PREFIX = "eval/"


def ci_tag(confidence: float) -> str:
    """``0.95`` → ``ci95`` (``0.975`` → ``ci97.5``): the level is part of the metric name."""
    return f"ci{confidence * 100:g}"


def aggregate(per_repeat: Sequence[Mapping[str, float]], confidence: float = 0.95) -> dict[str, float]:
    """``{"eval/<m>_mean", "_std", "_ci95_low", "_ci95_high"}`` for every metric ``m`` seen in the
    repeats, plus ``eval/repeats`` (how many repeats produced numbers)."""
    tag = ci_tag(confidence)
    names: list[str] = []
    for row in per_repeat:
        names += [k for k in row if k not in names]
    out: dict[str, float] = {}
    for name in names:
        stats = mean_ci([row[name] for row in per_repeat if name in row], confidence)
        base = name if name.startswith(PREFIX) else PREFIX + name
        out[f"{base}_mean"] = stats["mean"]
        out[f"{base}_std"] = stats["std"]
        out[f"{base}_{tag}_low"] = stats["ci_low"]
        out[f"{base}_{tag}_high"] = stats["ci_high"]
    out[f"{PREFIX}repeats"] = float(len(per_repeat))
    return out


def summary_table(per_repeat: Sequence[Mapping[str, float]], confidence: float = 0.95) -> list[dict]:
    """One row per metric (mean ± CI) for a ``summary.json`` artifact and the CLI."""
    rows = []
    agg = aggregate(per_repeat, confidence)
    tag = ci_tag(confidence)
    for key in agg:
        if key.endswith("_mean"):
            base = key[: -len("_mean")]
            rows.append({"metric": base, "mean": agg[key], "std": agg[f"{base}_std"],
                         "ci_low": agg[f"{base}_{tag}_low"], "ci_high": agg[f"{base}_{tag}_high"],
                         "values": [row.get(base, row.get(base[len(PREFIX):])) for row in per_repeat]})
    return rows
