"""``rlreg plot``: per-step curves of runs or a study's arms, mean ± 1 sd band across seeds.

A run's curve is read from its train child (the run that computed it, for a cached stage), else
from the run itself (a parent carries its train curves, ``registry.parent_view``; a plain MLflow
run its own metrics). Through ``analysis.runs.metric_histories`` (public client API).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analysis import arms as A
from analysis import plots
from analysis import runs as R
from registry.errors import UsageError


def collect(client: Any, arms: list[A.Arm], keys: Sequence[str]) -> dict[str, dict[str, list[tuple[list, list]]]]:
    """``{metric: {arm: [(steps, values) per run]}}`` for the keys some run logged."""
    sources = []
    for arm in arms:
        for run, kids in zip(arm.runs, arm.children):
            sources.append((arm.label, R.data_run_id(kids["train"]) if "train" in kids else run.run_id, run.run_id))
    ids = [s for _, s, _ in sources] + [p for _, _, p in sources]
    hist = R.metric_histories(client, ids, keys)
    out: dict[str, dict[str, list[tuple[list, list]]]] = {}
    for key in keys:
        for label, source, parent in sources:
            for rid in (source, parent):
                h = hist[(hist.run_id == rid) & (hist.key == key)].drop_duplicates("step", keep="last")
                if len(h):
                    out.setdefault(key, {}).setdefault(label, []).append((h["step"].tolist(), h["value"].tolist()))
                    break
    return out


def plot_curves(client: Any, refs: Sequence[str], keys: list[str], pinned: dict[str, str] | None = None, *,
                study: str | None = None, where: str | None = None, output: Path = Path("plot.png")) -> tuple[Path, list[str]]:
    arms = A.ref_arms(client, refs, pinned or {})
    if study:
        arms += A.study_arms(client, study, where)
    elif where:
        arms += A.where_arms(client, where)
    if not arms:
        raise UsageError("plot needs runs: spec names, run ids, --study NAME or --where FILTER")
    if output.suffix.lower() != ".png":
        raise UsageError(f"-o {output}: plot writes PNG (end the name in .png)")
    A.label_arms(arms)
    for arm in arms:
        arm.children = [R.children(client, r) for r in arm.runs]
    panels = collect(client, arms, keys)
    missing = [k for k in keys if k not in panels]
    if not panels:
        raise UsageError(f"none of the runs logged {', '.join(keys)} per step (try actor/entropy, critic/score/mean)")
    fig = plots.band_steps(next(iter(panels.values())), keys[0]) if len(panels) == 1 else plots.band_panels(panels)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(plots.to_png(fig))
    return output, [f"no run logged {k} per step" for k in missing]
