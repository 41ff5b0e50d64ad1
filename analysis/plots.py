"""Figures that overlay runs, built from plain data so stages and reports can share them.

Every function takes ``{label: data}`` and returns a ``matplotlib.figure.Figure`` made without
pyplot (no global state, no display, nothing to close; PNG rendering uses Agg). Stages log them
with ``ctx.tracker.log_figure(fig, "plots/x.png")``; reports embed ``to_png(fig)``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from analysis.stats import mean_ci

Series = tuple[Sequence[float], Sequence[float]]  # (steps, values)
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")


def _figure(width: float = 7.0, height: float = 3.6, cols: int = 1) -> tuple[object, list]:
    from matplotlib.figure import Figure

    # Fixed margins, not constrained/tight layout: the layout solver measured half of a report's
    # rendering time, and these labels always fit.
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.35 / height,
                        wspace=0.22)
    axes = fig.subplots(1, cols, squeeze=False)[0]
    return fig, list(axes)


def _integer_x(ax: object) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # type: ignore[attr-defined]


def to_png(fig: object, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # type: ignore[attr-defined]
    return buf.getvalue()


def overlay_steps(series: Mapping[str, Series], metric: str, title: str | None = None) -> object:
    """One line per run: ``metric`` over training steps."""
    fig, (ax,) = _figure()
    _lines(ax, series, metric)
    ax.set_title(title or f"{metric} over steps")
    return fig


def _finish_axes(ax: object, xlabel: str, ylabel: str, legend: bool) -> None:
    """Integer x ticks, labels, a light grid and a legend when something was drawn."""
    _integer_x(ax)
    ax.set_xlabel(xlabel)  # type: ignore[attr-defined]
    ax.set_ylabel(ylabel)  # type: ignore[attr-defined]
    ax.grid(alpha=0.3)  # type: ignore[attr-defined]
    if legend:
        ax.legend(fontsize=8)  # type: ignore[attr-defined]


def _lines(ax: object, series: Mapping[str, Series], metric: str) -> None:
    for i, (label, (steps, values)) in enumerate(series.items()):
        ax.plot(list(steps), list(values), label=label, color=COLORS[i % len(COLORS)], lw=1.6)  # type: ignore[attr-defined]
    _finish_axes(ax, "step", metric, legend=bool(series))


def with_stats(series: Mapping[str, Series], metric: str, title: str | None = None) -> object:
    """The seed's ``--with_stats`` view: the curves, and beside them mean / max / min per run."""
    fig, (ax, bars) = _figure(width=10.0, cols=2)
    _lines(ax, series, metric)
    ax.set_title(title or f"{metric} over steps")
    stats = {label: _summary(values) for label, (_, values) in series.items()}
    width = 0.8 / max(len(stats), 1)
    for i, (label, (mean, hi, lo)) in enumerate(stats.items()):
        xs = [k + (i - (len(stats) - 1) / 2) * width for k in range(3)]
        rects = bars.bar(xs, [mean, hi, lo], width=width, label=label, color=COLORS[i % len(COLORS)])
        bars.bar_label(rects, fmt="%.3g", fontsize=7)
    bars.set_xticks(range(3), ["mean", "max", "min"])
    bars.set_title(f"{metric}: statistics per run")
    bars.grid(axis="y", alpha=0.3)
    if stats:
        bars.legend(fontsize=8)
    return fig


def _summary(values: Sequence[float]) -> tuple[float, float, float]:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return (math.nan, math.nan, math.nan)
    return (sum(xs) / len(xs), max(xs), min(xs))


def eval_repeats(values: Mapping[str, Sequence[float]], metric: str, percent: bool = False) -> object:
    """Each eval repeat as a point, with each run's mean (line) and 95 % Student-t band."""
    fig, (ax,) = _figure()
    _repeats_panel(ax, values, metric, percent)
    ax.set_title(f"{metric} per repeat: mean and 95% CI")
    return fig


def eval_repeats_panels(panels: Mapping[str, tuple[Mapping[str, Sequence[float]], bool]], cols: int = 2) -> object:
    """Several eval metrics at once (``{metric: ({label: values}, percent)}``), one panel each:
    one figure to render instead of one per metric (the eval stage logs ~5 metrics per repeat)."""
    from matplotlib.figure import Figure

    cols = max(1, min(cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    width, height = 5.0 * cols, 3.2 * rows
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.35 / height,
                        wspace=0.3, hspace=0.45)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (metric, (values, percent)) in zip(axes, panels.items()):
        _repeats_panel(ax, values, metric, percent)
        ax.set_title(metric, fontsize=10)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def _repeats_panel(ax: object, values: Mapping[str, Sequence[float]], metric: str, percent: bool) -> None:
    scale = 100.0 if percent else 1.0
    for i, (label, vals) in enumerate(values.items()):
        color = COLORS[i % len(COLORS)]
        ys = [float(v) * scale for v in vals]
        ax.plot(range(len(ys)), ys, "o", color=color, label=f"{label} (n={len(ys)})")  # type: ignore[attr-defined]
        ci = mean_ci(vals)
        if ci.n:
            ax.axhline(ci.mean * scale, color=color, lw=1.2)  # type: ignore[attr-defined]
        if ci.has_ci:
            ax.axhspan(ci.low * scale, ci.high * scale, color=color, alpha=0.15)  # type: ignore[attr-defined]
    _finish_axes(ax, "repeat", f"{metric}{' (%)' if percent else ''}", legend=bool(values))


Runs = Sequence[Series]  # one (steps, values) per training seed


def band_steps(groups: Mapping[str, Runs], metric: str, title: str | None = None) -> object:
    """One line per arm: the mean over its seeds at each step, with a ±1 sd band across seeds
    when the arm has ≥ 2 (a single-seed arm is its plain curve). Steps a seed did not log are
    left out of that step's mean."""
    fig, (ax,) = _figure()
    _band_panel(ax, groups, metric)
    banded = any(len(r) > 1 for r in groups.values())
    ax.set_title(title or f"{metric} over steps" + (" (band: ±1 sd across seeds)" if banded else ""))
    return fig


def band_panels(panels: Mapping[str, Mapping[str, Runs]], cols: int = 2) -> object:
    """Several per-step metrics (``{metric: {arm: [(steps, values) per seed]}}``), one panel each."""
    from matplotlib.figure import Figure

    cols = max(1, min(cols, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    width, height = 6.0 * cols, 3.6 * rows
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.4 / height,
                        wspace=0.3, hspace=0.45)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (metric, groups) in zip(axes, panels.items()):
        _band_panel(ax, groups, metric)
        ax.set_title(metric, fontsize=10)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def _band_panel(ax: object, groups: Mapping[str, Runs], metric: str) -> None:
    for i, (label, runs) in enumerate(groups.items()):
        color = COLORS[i % len(COLORS)]
        by_step: dict[float, list[float]] = {}
        for steps, values in runs:
            for s, v in zip(steps, values):
                if v is not None and math.isfinite(float(v)):
                    by_step.setdefault(float(s), []).append(float(v))
        xs = sorted(by_step)
        means = [sum(by_step[x]) / len(by_step[x]) for x in xs]
        n = len(runs)
        ax.plot(xs, means, color=color, lw=1.6, label=f"{label} (mean of {n} seeds)" if n > 1 else label)  # type: ignore[attr-defined]
        if n > 1:
            sds = [_sd(by_step[x]) for x in xs]
            ax.fill_between(xs, [m - s for m, s in zip(means, sds)], [m + s for m, s in zip(means, sds)],  # type: ignore[attr-defined]
                            color=color, alpha=0.18, lw=0)
    _finish_axes(ax, "step", metric, legend=bool(groups))


def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def wins_losses(pairs: Mapping[str, tuple[int, int, int]], title: str = "Per-prompt wins / ties / losses") -> object:
    """Stacked horizontal bars per compared pair: prompts where B beat A, tied, lost (per-prompt
    correctness averaged over repeats)."""
    height = 1.2 + 0.5 * max(1, len(pairs))
    fig, (ax,) = _figure(height=height)
    fig.subplots_adjust(left=2.4 / 7.0, bottom=0.5 / height)  # room for "egpo vs grpo" labels
    labels = list(pairs)
    parts = (("wins", 0, "#2ca02c"), ("ties", 1, "#bbbbbb"), ("losses", 2, "#d62728"))
    left = [0.0] * len(labels)
    for name, k, color in parts:
        vals = [float(pairs[lbl][k]) for lbl in labels]
        bars = ax.barh(labels, vals, left=left, color=color, label=name)
        ax.bar_label(bars, labels=[str(int(v)) if v else "" for v in vals], label_type="center", fontsize=8)
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel("prompts")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return fig
