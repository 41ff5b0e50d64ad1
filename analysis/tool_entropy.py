"""The entropy-after-tool-call figure (ARPO, seeds 000/001): x = tool-call round, y = normalised
entropy of the first k tokens the model generates in that round, mean with std error bars, one
line per model.

Data: ``entropy_data.json`` records ``{"sample_idx", "round", "entropy", "is_after_tool_call"}``
(the entropy stage adds ``model``, ``tool_name``, ``parsed``…), read from a file or from an MLflow
run's artifacts; or ``simulate()``'d demo data, which is labelled SIMULATED in the figure.

CLI (``rlreg plot-entropy``, in ``analysis/entropy_cli.py``; more sources there)::

    rlreg plot-entropy --entropy_file entropy_results/entropy_data.json -o entropy_increase.png
    rlreg plot-entropy --run <run id | spec name> -o entropy_increase.png
    rlreg plot-entropy --simulate --num_rounds 5 --num_samples 100 -o demo.png
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InputDataError, UsageError

ENTROPY_ARTIFACT = "entropy_data.json"
REQUIRED = ("sample_idx", "round", "entropy")
SIMULATED_LABEL = "simulated"


@dataclass(frozen=True)
class RoundStats:
    mean: float
    std: float
    """Population standard deviation (numpy's default, as the seed's plot), 0 for one value."""
    count: int


def round_stats(records: Iterable[dict], model: str | None = None) -> dict[int, RoundStats]:
    """Mean / std / count of the entropy per round (NaN entropies — rounds that produced no token
    — are left out). ``model`` selects one profile when records carry a ``model`` field."""
    by_round: dict[int, list[float]] = defaultdict(list)
    for rec in records:
        if model is not None and rec.get("model", "") != model:
            continue
        value = float(rec["entropy"])
        if math.isfinite(value):
            by_round[int(rec["round"])].append(value)
    out = {}
    for r in sorted(by_round):
        vals = by_round[r]
        mean = sum(vals) / len(vals)
        out[r] = RoundStats(mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)), len(vals))
    return out


def profiles(records: Sequence[dict]) -> dict[str, dict[int, RoundStats]]:
    """One entropy profile per ``model`` label (``""`` when the records carry none), in order of
    first appearance."""
    labels = list(dict.fromkeys(rec.get("model", "") for rec in records))
    return {label: round_stats(records, label) for label in labels}


# -- figure --------------------------------------------------------------------------------------


def entropy_figure(records: Sequence[dict], title: str | None = None) -> Any:
    """The figure: one errorbar line per model (slightly offset in x so bars do not overlap)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    profs = profiles(records)
    simulated = any(rec.get("simulated") for rec in records)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.08 * (len(profs) - 1)
    for i, (label, stats) in enumerate(profs.items()):
        if not stats:
            continue
        offset = (i * 0.08 - width / 2) if len(profs) > 1 else 0.0
        rounds = list(stats)
        line = ax.errorbar(
            [r + offset for r in rounds], [stats[r].mean for r in rounds], yerr=[stats[r].std for r in rounds],
            marker="o", capsize=4, linewidth=1.8, label=_legend(label, stats),
        )
        if len({s.count for s in stats.values()}) > 1:  # fewer conversations reach later rounds: say so
            color = line.lines[0].get_color()
            for r in rounds:  # counts along the bottom, one row per model, in the line's colour
                ax.annotate(f"n={stats[r].count}", (r + offset, 0.0), textcoords="offset points",
                            xytext=(0, 4 + 10 * i), fontsize=7, color=color, ha="center")
    all_rounds = sorted({r for stats in profs.values() for r in stats})
    ax.set_xticks(all_rounds)
    ax.set_xticklabels([("0\n(before tools)" if r == 0 else str(r)) for r in all_rounds])
    ax.set_xlabel("Tool-call round")
    ax.set_ylabel("Normalised entropy of first k tokens (H / log V)")
    ax.set_ylim(0.0, 1.05)
    ax.grid(True, alpha=0.3)
    if any(label for label in profs) or len(profs) > 1:
        ax.legend(loc="best", fontsize=8)
    heading = title or "Entropy after tool calls (mean ± std)"
    if simulated:
        heading = "SIMULATED DATA — " + heading
        ax.text(0.5, 0.5, "SIMULATED", transform=ax.transAxes, fontsize=40, color="gray", alpha=0.15,
                ha="center", va="center", rotation=20)
    ax.set_title(heading, fontsize=10)
    fig.tight_layout()
    return fig


def _legend(label: str, stats: dict[int, RoundStats]) -> str:
    n = max(s.count for s in stats.values())
    return f"{label or 'model'} (n={n})"


def save_figure(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


# -- data sources --------------------------------------------------------------------------------


def load_entropy_file(path: str | Path) -> list[dict]:
    """Records from an ``entropy_data.json`` (a JSON list) or a JSONL of records, validated."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: entropy file not found (give the stage's entropy_data.json)")
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); expected a list of "
                             '{"sample_idx", "round", "entropy", "is_after_tool_call"} records') from exc
    return validate_records(records, str(path))


def validate_records(records: Any, where: str) -> list[dict]:
    if not isinstance(records, list):
        raise InputDataError(f"{where}: expected a JSON list of records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
            raise InputDataError(f"{where}: record {i}: needs fields {list(REQUIRED)} (got {rec!r:.100})")
        try:
            int(rec["round"])
            float(rec["entropy"])
        except (TypeError, ValueError):
            raise InputDataError(f"{where}: record {i}: `round` must be an integer and `entropy` a number") from None
    return records


def load_entropy_run(ref: str, tracking_uri: str | None = None) -> list[dict]:
    """Records from an MLflow run: the run itself when it holds ``entropy_data.json`` (the entropy
    stage's run), else its ``entropy`` stage child (a parent run id, or a spec name = its latest
    finished parent)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    run_id = _run_id(client, ref)
    for rid in [run_id, *_entropy_children(client, run_id)]:
        if any(a.path == ENTROPY_ARTIFACT for a in client.list_artifacts(rid)):
            with tempfile.TemporaryDirectory(prefix="rlreg-entropy-") as tmp:
                local = client.download_artifacts(rid, ENTROPY_ARTIFACT, tmp)
                return load_entropy_file(local)
    raise UsageError(f"run {run_id} has no {ENTROPY_ARTIFACT} and no entropy stage child "
                     "(pick the run of a spec whose pipeline includes `entropy`)")


def _run_id(client: Any, ref: str) -> str:
    import re

    from mlflow.exceptions import MlflowException

    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref).info.run_id
        except MlflowException:
            raise UsageError(f"run '{ref}' is not in the store (check --run and MLFLOW_TRACKING_URI)") from None
    from analysis.runs import (
        latest_parent,  # a spec name → its newest finished parent run
    )

    return latest_parent(client, ref).run_id


def _entropy_children(client: Any, run_id: str) -> list[str]:
    from mlflow.entities import ViewType

    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    runs = client.search_runs(exp_ids, filter_string=f"tags.`mlflow.parentRunId` = '{run_id}' and "
                              "tags.`rlreg.stage` = 'entropy'", order_by=["attributes.start_time DESC"])
    return [r.info.run_id for r in runs]


def simulate(num_rounds: int = 5, num_samples: int = 100, seed: int = 0) -> list[dict]:
    """Demo records shaped like the ARPO finding (entropy jumps after each tool answer, then
    decays within the round). NOT measured data: every record carries ``simulated: true`` and
    the model label ``simulated``, and the figure says so."""
    import numpy as np

    if num_rounds < 1 or num_samples < 1:
        raise UsageError("--num_rounds and --num_samples must be at least 1")
    rng = np.random.default_rng(seed)
    records = []
    for sample in range(num_samples):
        base = rng.normal(0.45, 0.05)
        for r in range(num_rounds + 1):
            mean = base if r == 0 else min(0.95, base + 0.25 + 0.03 * r)
            value = float(np.clip(rng.normal(mean, 0.08), 0.0, 1.0))
            records.append({"sample_idx": sample, "round": r, "entropy": value, "is_after_tool_call": r > 0,
                            "model": SIMULATED_LABEL, "simulated": True})
    return records


# -- CLI: analysis/entropy_cli.py (kept importable from here) ----------------------------------
def __getattr__(name: str):
    if name == "plot_entropy":
        from analysis.entropy_cli import plot_entropy

        return plot_entropy
    raise AttributeError(name)
