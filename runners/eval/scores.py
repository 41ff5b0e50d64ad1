"""Read what ``bfcl evaluate`` writes into its score directory.

- ``data_<group>.csv`` (``data_multi_turn.csv``, ``data_live.csv``, ``data_non_live.csv``,
  ``data_agentic.csv``, ``data_overall.csv``): one row per model, e.g.
  ``Rank,Model,Multi Turn Overall Acc,Base,Miss Func,Miss Param,Long Context`` /
  ``1,Qwen3-4B (FC),15.43%,61.70%,N/A,N/A,N/A``. Percent cells become fractions, ``N/A`` (category
  not run) is dropped. BFCL writes rows with a bare ``",".join`` (no quoting), so a row with more
  cells than the header (a comma inside the model's display name) is re-joined from the left.
  Caution: BFCL's group "overall" columns count the categories NOT run as 0 (its
  ``display_na_if_category_missing=False``): after running only ``multi_turn_base`` "Multi Turn
  Overall Acc" is Base / 4 and data_overall's "Overall Acc" 0.3 × Base / 4 (0.053 for a 0.705
  model). Such a column is kept only when every category it averages was run
  (``BFCL_AGGREGATES``); BFCL's other summaries already read ``N/A`` when a member is missing.
- ``<model>/<group>/BFCL_v4_<category>_score.json``: JSON lines whose first line is
  ``{"accuracy", "correct_count", "total_count"}`` — the exact per-category numbers.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from registry.errors import InputDataError

SCORE_JSON_RE = re.compile(r"^BFCL_v\d+_(?P<category>.+)_score\.json$")
# columns that are not accuracies (kept out of the metrics)
NON_METRIC_COLUMNS = {"rank", "model", "model link", "organization", "license", "total cost ($)",
                      "latency mean (s)", "latency standard deviation (s)", "latency 95th percentile (s)"}


def _not_an_accuracy(column: str) -> bool:
    # cost/latency are raw numbers, format-sensitivity columns are deltas over prompt configs
    low = column.lower()
    return low in NON_METRIC_COLUMNS or low.startswith(("format sensitivity", "config "))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def parse_cell(cell: str) -> float:
    """``"61.70%"`` → 0.617; ``"0.617"`` → 0.617; ``"N/A"``/empty → NaN."""
    cell = cell.strip()
    if not cell or cell.upper() == "N/A":
        return math.nan
    if cell.endswith("%"):
        return float(cell[:-1]) / 100.0
    return float(cell)


def parse_score_csv(text: str, source: str = "<csv>") -> list[dict[str, Any]]:
    """Rows of a BFCL score CSV as ``{"Model": str, "Rank": str, <column>: fraction|NaN, …}``."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not rows[0]:
        raise InputDataError(f"{source}: empty score file (did `bfcl evaluate` finish?)")
    header = [h.strip() for h in rows[0]]
    if "Model" not in header:
        raise InputDataError(f"{source}: header {header[:4]} has no 'Model' column; not a BFCL score CSV")
    model_at = header.index("Model")
    out = []
    for lineno, cells in enumerate(rows[1:], 2):
        if not any(c.strip() for c in cells):
            continue
        extra = len(cells) - len(header)
        if extra > 0:  # an unquoted comma inside the model name
            cells = cells[:model_at] + [",".join(cells[model_at : model_at + extra + 1])] + cells[model_at + extra + 1 :]
        if len(cells) != len(header):
            raise InputDataError(f"{source}: line {lineno} has {len(cells)} cells for {len(header)} columns")
        row: dict[str, Any] = {}
        for name, cell in zip(header, cells):
            if _not_an_accuracy(name):
                row[name] = cell.strip()
                continue
            try:
                row[name] = parse_cell(cell)
            except ValueError as exc:
                raise InputDataError(f"{source}: line {lineno}, column '{name}': '{cell}' is not a percentage") from exc
        out.append(row)
    return out


# The columns bfcl-eval (2026.3.23, eval_runner_helper.generate_leaderboard_csv) aggregates with
# missing categories counted as 0, and the categories each one averages: (file group, column).
_NON_LIVE = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple")
_LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
_MULTI_TURN = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
_AGENTIC = ("web_search_base", "web_search_no_snippet", "memory_kv", "memory_vector", "memory_rec_sum")
BFCL_AGGREGATES: dict[tuple[str, str], frozenset[str]] = {
    ("non_live", "Non-Live Overall Acc"): frozenset(_NON_LIVE),
    ("live", "Live Overall Acc"): frozenset(_LIVE),
    ("multi_turn", "Multi Turn Overall Acc"): frozenset(_MULTI_TURN),
    ("agentic", "Agentic Overall Acc"): frozenset(_AGENTIC),
    ("overall", "Live Acc"): frozenset(_LIVE),
    ("overall", "Multi Turn Acc"): frozenset(_MULTI_TURN),
    ("overall", "Overall Acc"): frozenset(_NON_LIVE + _LIVE + _MULTI_TURN + _AGENTIC + ("irrelevance", "live_irrelevance")),
}


def _complete(group: str, column: str, ran: set[str] | None) -> bool:
    """Whether BFCL's value in this column averages only categories that were run."""
    members = BFCL_AGGREGATES.get((group, column))
    if members is None:
        # an aggregate a newer BFCL added: its treatment of missing categories is unknown
        return "overall" not in column.lower()
    return ran is not None and members <= ran


def csv_metrics(score_dir: Path, ran: set[str] | None = None) -> dict[str, float]:
    """``eval/bfcl/<file>/<column>`` for every accuracy cell of every score CSV (first model row;
    a repeat's score dir holds one model). ``N/A`` cells are left out, and so are BFCL's overall
    columns that count a category of ``ran`` (the categories run) missing as 0."""
    metrics: dict[str, float] = {}
    for path in sorted(score_dir.glob("data_*.csv")):
        rows = parse_score_csv(path.read_text(), str(path))
        if not rows:
            continue
        group = slug(path.stem[len("data_"):])
        for column, value in rows[0].items():
            if isinstance(value, float) and not math.isnan(value) and _complete(group, column, ran):
                metrics[f"eval/bfcl/{group}/{slug(column)}"] = value
    return metrics


def category_scores(score_dir: Path) -> dict[str, dict[str, float]]:
    """``{category: {"accuracy", "correct_count", "total_count"}}`` from the per-category score JSONs."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted(score_dir.rglob("*_score.json")):
        m = SCORE_JSON_RE.match(path.name)
        if not m:
            continue
        first = path.read_text().split("\n", 1)[0]
        try:
            header = json.loads(first)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: first line is not JSON ({exc.msg}); not a BFCL score file") from exc
        if not {"accuracy", "total_count"} <= set(header):
            raise InputDataError(f"{path}: first line lacks accuracy/total_count; not a BFCL score file")
        out[m.group("category")] = {k: float(header[k]) for k in ("accuracy", "correct_count", "total_count") if k in header}
    return out


def repeat_metrics(score_dir: Path) -> dict[str, float]:
    """A repeat's metrics: ``eval/accuracy`` = correct / total over the categories run (with one
    category: BFCL's own number for it; with a whole BFCL group: BFCL's group number where BFCL
    weights by entry count — live — or the group's categories are equally large — multi-turn),
    ``eval/<category>_accuracy`` each, and the CSV accuracy columns that are complete."""
    cats = category_scores(score_dir)
    if not cats:
        raise InputDataError(f"{score_dir}: no BFCL_v*_<category>_score.json files; `bfcl evaluate` wrote no scores")
    metrics = {f"eval/{slug(c)}_accuracy": s["accuracy"] for c, s in cats.items()}
    total = sum(s["total_count"] for s in cats.values())
    correct = sum(s.get("correct_count", s["accuracy"] * s["total_count"]) for s in cats.values())
    metrics["eval/accuracy"] = correct / total if total else math.nan
    metrics.update(csv_metrics(score_dir, set(cats)))
    return metrics


INFERENCE_ERROR = "Error during inference"


def inference_errors(result_dir: Path) -> tuple[int, int]:
    """``(entries whose generation raised, entries)`` over BFCL's result files. BFCL records a
    request that failed (server down, context overflow) as the answer text
    ``"Error during inference: …"`` and scores it as wrong, so a dead server looks like a bad model
    unless this is counted."""
    errors = total = 0
    for path in sorted(result_dir.rglob("BFCL_v*_result.json")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            total += 1
            try:
                result = json.loads(line).get("result")
            except json.JSONDecodeError:
                errors += 1
                continue
            if INFERENCE_ERROR in json.dumps(result, ensure_ascii=False)[:200]:
                errors += 1
    return errors, total
