"""Where entropy data comes from, for ``rlreg plot-entropy``: files, globs, training logs, verl
rollout dumps and MLflow runs, each read into one of two shapes.

- **round records** (the ARPO figure, seeds 000/001): ``[{"sample_idx", "round", "entropy", …}]`` —
  the entropy stage's ``entropy_data.json``, the user's ARPO fork's ``entropy_step_<N>.json``.
- **step histories** (policy entropy over training, seed 002): ``[{"step", "entropy"}]`` — the
  trainers' ``entropy_history.json``, ``actor/entropy`` in a verl console log or an MLflow run.

Formats read (checked against verl 0.9.1's source):

- verl's console logger (``verl/utils/logger/aggregate_logger.py``: ``concat_dict_to_str``) prints
  ``step:12 - actor/entropy:0.53 - critic/score/mean:0.25 - …``, each value ``pprint.pformat``-ed:
  numpy scalars appear as ``np.float64(0.53)`` under numpy 2. Ray prefixes worker lines with
  ``(TaskRunner pid=123)``; colour codes may surround them.
- rlreg's builtin trainer writes ``metrics_history.jsonl`` (``{"step", "metrics": {…}}`` per line)
  and ``entropy_history.json``; a verl train stage keeps verl's console in ``logs/train.log``.
- verl's rollout dumps (``trainer.rollout_data_dir``, ``RayPPOTrainer._write_generations``) are one
  ``<global_step>.jsonl`` per step, each line ``{"input", "output", "gts", "score", "step", …}`` plus
  every ``reward_extra_info`` key the reward function returned. Stock verl puts no entropy there:
  entropy is read from a per-sample ``round_entropies`` list (one value per tool round) or a scalar
  ``entropy`` field, or from ``entropy_step_*.json`` / ``entropy_data.json`` files in the directory.
"""

from __future__ import annotations

import glob
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.errors import InputDataError, UsageError
from registry.jsonl import iter_jsonl

ENTROPY_KEY = "actor/entropy"
"""verl's (and the builtin trainer's) policy-entropy metric."""
HISTORY_ARTIFACT = "entropy_history.json"
STEPS_ARTIFACT = "entropy_steps"
"""The builtin trainer's multi-turn runs: ``entropy_steps/entropy_step_<N>.json`` per step."""
ENTROPY_DATA_ARTIFACT = "entropy_data.json"
ROLLOUT_ROUND_FIELDS = ("round_entropies", "entropy_by_round")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP_LINE = re.compile(r"(?:^|[\s)])step:(\d+)\s+-\s+(.*)$")
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)"
# `key:value`, the value bare or wrapped by numpy 2's repr (`np.float64(0.5)`, `np.int64(3)`)
_METRIC = re.compile(r"([A-Za-z0-9_./@:\-]+?):(?:np\.[a-z0-9_]+\()?(" + _NUMBER + r")\)?(?=\s+-\s+|\s*$)")
_STEP_FILE = re.compile(r"entropy_step_(\d+)\.json$")


@dataclass
class Source:
    """What one command-line source yielded: exactly one of ``records`` / ``history`` is set."""

    label: str
    records: list[dict] | None = None
    history: list[dict] | None = None
    origin: str = ""
    notes: list[str] = field(default_factory=list)
    label_given: bool = False
    """Set by ``--labels``: the label replaces the records' own model labels."""

    @property
    def kind(self) -> str:
        return "rounds" if self.records is not None else "steps"


# -- console logs ---------------------------------------------------------------------------------
def parse_step_line(line: str) -> tuple[int, dict[str, float]] | None:
    """One verl console line → (step, {metric: value}); None when the line is not a step line."""
    match = _STEP_LINE.search(_ANSI.sub("", line).rstrip())
    if not match:
        return None
    metrics = {}
    for key, value in _METRIC.findall(match.group(2)):
        metrics[key] = float(value)
    return int(match.group(1)), metrics


def parse_log(path: str | Path) -> dict[int, dict[str, float]]:
    """Every step's metrics in a log: a verl console log (any text holding ``step:N - k:v`` lines)
    or rlreg's ``metrics_history.jsonl``. A step printed twice (a resumed run) keeps the later values."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: log file not found (give verl's console log or a run's logs/train.log)")
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stripped = line.strip()
            if stripped.startswith("{") and '"metrics"' in stripped:
                try:
                    row = json.loads(stripped)
                    steps[int(row["step"])].update(
                        {k: float(v) for k, v in row["metrics"].items() if v is not None})
                    continue
                except (ValueError, KeyError, TypeError):
                    pass
            parsed = parse_step_line(line)
            if parsed:
                steps[parsed[0]].update(parsed[1])
    return dict(sorted(steps.items()))


def history_from_log(path: str | Path, key: str = ENTROPY_KEY) -> list[dict]:
    steps = parse_log(path)
    history = [{"step": s, "entropy": m[key]} for s, m in steps.items() if key in m]
    if not history:
        seen = sorted({k for m in steps.values() for k in m})
        hint = f"keys seen: {', '.join(seen[:8])}{'…' if len(seen) > 8 else ''}" if seen else "no `step:N - key:value` lines"
        raise InputDataError(f"{path}: no `{key}` values in the log ({hint}; pick the metric with --metric)")
    return history


# -- files and globs ------------------------------------------------------------------------------
def expand(patterns: Iterable[str]) -> list[Path]:
    """Paths and glob patterns → files, in the order given (each glob sorted by step number when
    its files are ``entropy_step_<N>.json``, else by name). A pattern matching nothing is an error."""
    out: list[Path] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern), key=_step_sort_key)
            if not matches:
                raise InputDataError(f"{pattern}: the pattern matches no file")
            out += [Path(m) for m in matches]
        else:
            out.append(Path(pattern))
    return list(dict.fromkeys(out))


def _step_sort_key(name: str) -> tuple:
    m = _STEP_FILE.search(name)
    return (Path(name).parent.as_posix(), int(m.group(1)) if m else -1, name)


def read_json_records(path: Path) -> list:
    if not path.is_file():
        raise InputDataError(f"{path}: entropy file not found (give entropy_data.json, entropy_step_*.json "
                             "or entropy_history.json)")
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("[") or not text.strip():
            data = json.loads(text or "[]")
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); expected a list of "
                             '{"sample_idx", "round", "entropy"} or {"step", "entropy"} records') from exc
    if not isinstance(data, list):
        raise InputDataError(f"{path}: expected a JSON list of records")
    return data


def validate_history(rows: Any, where: str) -> list[dict]:
    out = []
    for i, row in enumerate(rows):
        try:
            out.append({"step": int(row["step"]), "entropy": float(row["entropy"])})
        except (TypeError, ValueError, KeyError):
            raise InputDataError(f"{where}: record {i}: needs an integer `step` and a numeric `entropy` "
                                 f"(got {row!r:.100})") from None
    return sorted(out, key=lambda r: r["step"])


def is_history(rows: Sequence) -> bool:
    """A step history (``{"step", "entropy"}`` rows without ``round``) rather than round records."""
    return bool(rows) and all(isinstance(r, dict) and "step" in r and "round" not in r for r in rows)


def file_sources(patterns: Iterable[str]) -> list[Source]:
    """One source per file, except ``entropy_step_<N>.json`` files of one directory, which pool into
    one source (the ARPO fork wrote one per training step; each record gets ``step`` = N)."""
    from analysis.tool_entropy import validate_records

    pooled: dict[Path, Source] = {}
    out: list[Source] = []
    for path in expand(patterns):
        rows = read_json_records(path)
        step_match = _STEP_FILE.search(path.name)
        if is_history(rows):
            out.append(Source(_file_label(path), history=validate_history(rows, str(path)), origin=str(path)))
            continue
        records = validate_records(rows, str(path))
        if step_match:
            step = int(step_match.group(1))
            records = [{**r, "step": r.get("step", step)} for r in records]
            key = path.parent.resolve()
            if key not in pooled:
                pooled[key] = Source(path.parent.name or "entropy", records=[], origin=str(path.parent))
                out.append(pooled[key])
            pooled[key].records += records
            pooled[key].notes.append(path.name)
        else:
            out.append(Source(_file_label(path), records=records, origin=str(path)))
    return out


def _file_label(path: Path) -> str:
    stem = path.stem
    if stem in ("entropy_data", "entropy_history") or stem.startswith("entropy_history_"):
        name = stem.removeprefix("entropy_history_") if stem.startswith("entropy_history_") else ""
        return name or path.parent.name or stem
    return stem


# -- verl rollout dumps ---------------------------------------------------------------------------
def rollout_source(directory: str | Path) -> Source:
    """Entropy from a ``trainer.rollout_data_dir``: round records when the dumps carry per-round
    entropies (``round_entropies``) or the directory holds ``entropy_step_*.json`` files, else a step
    history of the mean scalar ``entropy`` field per dump."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputDataError(f"{directory}: rollout directory not found (give verl's trainer.rollout_data_dir)")
    step_files = sorted(directory.glob("entropy_step_*.json"), key=lambda p: _step_sort_key(str(p)))
    if step_files or (directory / ENTROPY_DATA_ARTIFACT).is_file():
        sources = file_sources([str(p) for p in step_files] or [str(directory / ENTROPY_DATA_ARTIFACT)])
        return Source(directory.name, records=[r for s in sources for r in (s.records or [])], origin=str(directory))
    dumps = sorted((p for p in directory.glob("*.jsonl") if p.stem.isdigit()), key=lambda p: int(p.stem))
    if not dumps:
        raise InputDataError(f"{directory}: no verl rollout dumps (<step>.jsonl) and no entropy_step_*.json files")
    records: list[dict] = []
    scalar: dict[int, list[float]] = defaultdict(list)
    fields_seen: set[str] = set()
    for dump in dumps:
        entries = iter_jsonl(dump.read_text(encoding="utf-8", errors="replace"), str(dump),
                             fix="a verl rollout dump has one JSON object per line")
        for line_no, entry in entries:
            i = line_no - 1  # the sample index: its line in the dump
            if not isinstance(entry, dict):
                raise InputDataError(f"{dump}: line {line_no}: expected a JSON object, got {type(entry).__name__}")
            fields_seen.update(entry)
            step = int(entry.get("step", dump.stem))
            rounds = next((entry[f] for f in ROLLOUT_ROUND_FIELDS if isinstance(entry.get(f), list)), None)
            if rounds is not None:
                for r, value in enumerate(rounds):
                    if value is not None:
                        records.append({"sample_idx": i, "round": r, "entropy": float(value),
                                        "is_after_tool_call": r > 0, "step": step})
            elif isinstance(entry.get("entropy"), (int, float)):
                scalar[step].append(float(entry["entropy"]))
    if records:
        return Source(directory.name, records=records, origin=str(directory))
    if scalar:
        history = [{"step": s, "entropy": sum(v) / len(v)} for s, v in sorted(scalar.items())]
        return Source(directory.name, history=history, origin=str(directory),
                      notes=[f"mean per-sample `entropy` of {len(dumps)} dumps"])
    raise InputDataError(
        f"{directory}: the rollout dumps carry no entropy (fields: {', '.join(sorted(fields_seen))}); stock verl "
        "dumps only text and scores — return `round_entropies` (per tool round) or `entropy` from the reward "
        "function's extra info, use the run's actor/entropy (--log_file / --run), or run the entropy stage")


# -- MLflow ---------------------------------------------------------------------------------------
def run_history(client: Any, run_id: str, key: str = ENTROPY_KEY) -> list[dict]:
    """A run's entropy history: its ``entropy_history.json`` (the run's or its train child's), else
    the ``key`` metric history of the run or its train child. Empty when it has none."""
    import tempfile

    from analysis import runs as R

    candidates = _train_candidates(client, run_id)
    for rid in candidates:
        if any(a.path == HISTORY_ARTIFACT for a in client.list_artifacts(rid)):
            with tempfile.TemporaryDirectory(prefix="rlreg-entropy-") as tmp:
                local = R.download_artifact(client, rid, HISTORY_ARTIFACT, tmp)
                return validate_history(json.loads(local.read_text()), f"run {rid}: {HISTORY_ARTIFACT}")
    for rid in candidates:
        hist = client.get_metric_history(rid, key)
        if hist:
            by_step = {m.step: m.value for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}
            return [{"step": int(s), "entropy": float(v)} for s, v in sorted(by_step.items()) if math.isfinite(v)]
    return []


def _train_candidates(client: Any, run_id: str) -> list[str]:
    """The run itself and, for a parent, its train child (a cache hit: the run that holds the data)."""
    from analysis import runs as R

    candidates = [run_id]
    record = R.get_run(client, run_id)
    if record.role != "stage":
        kids = R.children(client, record)
        candidates += [R.data_run_id(kids[s]) for s in ("train",) if s in kids]
    elif record.tags.get(R.TAG_CACHE_HIT) == "true":
        candidates.insert(0, R.data_run_id(record))
    return candidates


def run_step_records(client: Any, run_id: str) -> list[dict]:
    """A multi-turn training run's round records of every step (its ``entropy_steps/`` artifacts,
    or its train child's), each with ``step``. Empty when it has none."""
    import tempfile

    from analysis import runs as R

    for rid in _train_candidates(client, run_id):
        if any(a.path == STEPS_ARTIFACT for a in client.list_artifacts(rid)):
            with tempfile.TemporaryDirectory(prefix="rlreg-entropy-") as tmp:
                local = R.download_artifact(client, rid, STEPS_ARTIFACT, tmp)
                sources = file_sources([str(local / "entropy_step_*.json")])
                return [r for src in sources for r in src.records or []]
    return []


def rounds_by_step(source: Source) -> list[Source]:
    """Round records with a ``step`` → one step history per round (mean entropy of the round's
    records at each step), labelled ``<label> round <r>``."""
    by_round: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in source.records or []:
        if "step" not in rec:
            raise InputDataError(f"{source.origin}: round records without a `step` (per-step plots need "
                                 "entropy_step_<N>.json files or a multi-turn train run)")
        value = float(rec["entropy"])
        if math.isfinite(value):
            by_round[int(rec["round"])][int(rec["step"])].append(value)
    return [Source(f"{source.label} round {r}", origin=source.origin,
                   history=[{"step": st, "entropy": sum(v) / len(v)} for st, v in sorted(steps.items())])
            for r, steps in sorted(by_round.items())]


def find_runs(client: Any, experiment: str | None = None, study: str | None = None) -> list[tuple[str, str]]:
    """Parent runs of an MLflow experiment (by name) or a study (tag ``rlreg.study``), newest first
    per label, as (label, run_id); labels are study cells (``rlreg.cell``) or spec names."""
    from analysis import runs as R

    flt = f"tags.`{R.TAG_ROLE}` = 'parent'"
    if study:
        flt += f" and tags.`rlreg.study` = {R._quote(study)}"
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = [e.name for e in client.search_experiments()][:20]
            raise UsageError(f"no MLflow experiment named '{experiment}' (experiments: {', '.join(names) or 'none'})")
        found = list(client.search_runs([exp.experiment_id], filter_string=flt, max_results=5000,
                                        order_by=["attributes.start_time DESC"]))
    else:
        found = R._search(client, flt, max_results=5000)
    out: dict[str, str] = {}
    for run in found:
        tags = run.data.tags
        label = tags.get("rlreg.cell") if study else tags.get(R.TAG_SPEC) or run.info.run_name
        label = label or run.info.run_id[:8]
        if label in out:  # an older rerun of the same spec/cell: tell them apart
            label = f"{label}@{run.info.run_id[:8]}"
        out[label] = run.info.run_id
    return list(out.items())
