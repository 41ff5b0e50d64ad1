"""Per-repeat metrics → the aggregate metrics both backends log (mean, std, Student-t CI, repeats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from registry.stats import mean_ci

PREFIX = "eval/"
# metrics that are proportions (accuracies, rates): their interval is clipped to [0, 1]
PROPORTION_MARKS = ("accuracy", "_rate", "pass@")


def is_proportion(name: str) -> bool:
    return any(mark in name for mark in PROPORTION_MARKS)


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
        low, high = stats["ci_low"], stats["ci_high"]
        if is_proportion(base):  # a t-interval over few repeats can leave [0, 1]; a rate cannot
            low, high = max(0.0, low), min(1.0, high)
        out[f"{base}_{tag}_low"] = low
        out[f"{base}_{tag}_high"] = high
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
