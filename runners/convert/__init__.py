"""Convert stage: OpenAI-messages JSON/JSONL → verl's ``train.parquet`` + ``test.parquet``.

Two streaming passes, so memory is bounded by ``batch_size`` rows (plus one byte per valid record
for the split plan), never by the file:

1. scan: read every record, validate it, count valid/skipped, hash the file;
2. plan: a seeded choice of ``max_samples`` valid records and their train/test split;
3. write: read again, convert the chosen records and append them to their split's parquet file.

Rows are written in input order within each split (verl shuffles batches itself with
``data.shuffle``); ``extra_info.index`` numbers rows within their split and
``extra_info.source_index`` is the record's position in the input file.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.context import StageContext, StageResult
from registry.errors import InputDataError
from registry.spec.data import DataSpec
from runners.convert.reader import RecordReader, detect_format
from runners.convert.records import BadRecord, normalize, to_row, with_tools_in_system
from runners.convert.writer import SplitWriter, file_sha256

SKIP_SAMPLE = 20
DATASET_SAMPLE_ROWS = 1000
TRAIN, TEST = 1, 2


@dataclass
class Scan:
    """What the first pass learned about the input."""

    sha256: str = ""
    records: int = 0
    valid: int = 0
    skipped: int = 0
    skipped_sample: list[dict[str, Any]] = field(default_factory=list)


def describe(stage_spec: DataSpec, spec: Any = None) -> str:
    if stage_spec.synthetic is not None:
        syn = stage_spec.synthetic
        source = f"synthetic ({syn.num_records} records, seed {syn.seed})"
    else:
        source = f"{stage_spec.source} ({stage_spec.format})"
    return (f"convert {source} -> train.parquet + test.parquet: max_samples={stage_spec.max_samples}, "
            f"shuffle={stage_spec.shuffle}, split={stage_spec.split}, test_size={stage_spec.test_size}, seed={stage_spec.seed}, "
            f"on_error={stage_spec.on_error}")


def external_inputs(stage_spec: DataSpec, project_root: Path) -> dict[str, Path]:
    """Files outside the stage store whose content decides this stage's result. The cache key
    must hash their bytes: the spec only names the path, and an input edited in place would
    otherwise be a stale cache hit."""
    if stage_spec.source is None:
        return {}
    raw = Path(os.path.expanduser(os.path.expandvars(stage_spec.source)))
    return {"data.source": raw if raw.is_absolute() else project_root / raw}


def run(stage_spec: DataSpec, ctx: StageContext) -> StageResult:
    path = _source_path(stage_spec, ctx)
    fmt = detect_format(path, stage_spec.format)
    scan = _scan(path, fmt, stage_spec.on_error)
    plan, n_train, n_test = _plan(scan.valid, stage_spec, path)

    token_stats = None
    if stage_spec.tokenizer:
        from runners.convert.token_stats import TokenStats

        ref = stage_spec.tokenizer
        token_stats = TokenStats(ctx.resolve_ref(ref) if ref.startswith("@") else ctx.resolve_path(ref))

    outputs = {"train": ctx.out_dir / "train.parquet", "test": ctx.out_dir / "test.parquet"}
    _write(path, fmt, scan, plan, outputs, stage_spec, token_stats)
    digests = {split: file_sha256(p) for split, p in outputs.items()}

    metrics = {
        "convert/rows_train": n_train, "convert/rows_test": n_test,
        "convert/records_read": scan.records, "convert/records_skipped": scan.skipped,
    }
    if token_stats is not None:
        metrics.update(token_stats.metrics())
    _log(ctx, stage_spec, path, fmt, scan, outputs, digests, metrics)
    if stage_spec.synthetic is not None:
        outputs["source"] = path
    return StageResult(
        outputs=outputs,
        metrics={"convert/rows_train": float(n_train), "convert/rows_test": float(n_test)},
        info={"rows_train": n_train, "rows_test": n_test, "records_skipped": scan.skipped,
              "train_sha256": digests["train"][:12], "test_sha256": digests["test"][:12]},
    )


def _source_path(stage_spec: DataSpec, ctx: StageContext) -> Path:
    if stage_spec.synthetic is not None:
        from runners.synth_data import write_json

        syn = stage_spec.synthetic
        return write_json(ctx.out_dir / "synthetic.json", syn.num_records, syn.seed,
                          syn.tool_response_fraction, syn.two_call_fraction, syn.distractor_tools,
                          syn.multi_turn_fraction, syn.wording, list(syn.tasks) if syn.tasks else None)
    path = ctx.resolve_path(stage_spec.source or "")
    if not path.is_file():
        raise InputDataError(
            f"data.source: {path} does not exist or is not a file; set `data.source` to a JSON/JSONL "
            "file of {\"messages\": [...]} records (relative paths start at the project root), "
            "or use `data.synthetic` for generated data"
        )
    return path


def _scan(path: Path, fmt: str, on_error: str) -> Scan:
    scan = Scan()
    reader = RecordReader(path, fmt)  # type: ignore[arg-type]
    for rec in reader:
        scan.records += 1
        reason = rec.error
        if reason is None:
            try:
                normalize(rec.value)
            except BadRecord as exc:
                reason = str(exc)
        if reason is None:
            scan.valid += 1
            continue
        if on_error == "fail":
            raise InputDataError(
                f"{path}: {rec.where()}: {reason}. Fix that record, or set `data.on_error: skip` to drop "
                "bad records (their count and a sample are logged to the convert run)"
            )
        scan.skipped += 1
        if len(scan.skipped_sample) < SKIP_SAMPLE:
            scan.skipped_sample.append({"index": rec.index, "line": rec.line, "reason": reason,
                                        "excerpt": rec.excerpt})
    scan.sha256 = reader.sha256 or ""
    return scan


@dataclass
class Plan:
    """Which valid records go to train (1) / test (2) / nowhere (0), by valid-record position, and
    (split: hardtry) each chosen record's row number within its split."""

    splits: bytearray
    rank: dict[int, int] | None = None


def _plan(n_valid: int, stage_spec: DataSpec, path: Path) -> tuple[Plan, int, int]:
    k = min(stage_spec.max_samples or n_valid, n_valid)
    if k < 2:
        raise InputDataError(
            f"{path}: only {k} valid record(s) to convert; a train/test split needs at least 2 "
            "(add records, or check the skipped-record count if `on_error: skip` dropped them)"
        )
    if stage_spec.split == "hardtry":
        # datasets.train_test_split: ceil of the float product as is (0.07*100 -> 8)
        n_test = math.ceil(stage_spec.test_size * k)
    else:  # ceil, but round() first so 0.07*100 is 7, not 8
        n_test = math.ceil(round(stage_spec.test_size * k, 9))
    n_train = k - n_test
    if n_train < 1:
        raise InputDataError(
            f"{path}: test_size {stage_spec.test_size} of {k} records leaves no training rows; "
            "lower `data.test_size` or add records"
        )
    if stage_spec.split == "hardtry":
        return _hardtry_plan(n_valid, k, n_test, stage_spec), n_train, n_test
    if stage_spec.shuffle:
        chosen = random.Random(stage_spec.seed).sample(range(n_valid), k)  # O(k) memory
        test, train = chosen[:n_test], chosen[n_test:]
    else:  # first k records; the last n_test of them are the test split
        train, test = range(n_train), range(n_train, k)
    plan = bytearray(n_valid)
    for i in train:
        plan[i] = TRAIN
    for i in test:
        plan[i] = TEST
    return Plan(plan), n_train, n_test


def _hardtry_plan(n_valid: int, k: int, n_test: int, stage_spec: DataSpec) -> Plan:
    """hardtry's convert_messages_to_verl.py: ``ds.shuffle(seed)`` (only when shuffle and
    max_samples are set), ``ds.select(range(k))``, ``ds.train_test_split(test_size, seed)``. Both
    ``datasets`` calls draw ``numpy.random.default_rng(seed).permutation(len(ds))``; the split's
    first ``n_test`` permuted rows are test, the rest train, each in permutation order."""
    import numpy as np

    seed = stage_spec.seed
    if stage_spec.shuffle and stage_spec.max_samples:
        kept = np.random.default_rng(seed).permutation(n_valid)[:k]
    else:
        kept = np.arange(k)
    order = kept[np.random.default_rng(seed).permutation(k)]
    plan, rank = bytearray(n_valid), {}
    for row, pos in enumerate(order.tolist()):
        plan[pos] = TEST if row < n_test else TRAIN
        rank[pos] = row if row < n_test else row - n_test
    return Plan(plan, rank)


def _write(path: Path, fmt: str, scan: Scan, plan: Plan, outputs: dict[str, Path],
           stage_spec: DataSpec, token_stats: Any) -> None:
    writers = {TRAIN: SplitWriter(outputs["train"], stage_spec.batch_size),
               TEST: SplitWriter(outputs["test"], stage_spec.batch_size)}
    names = {TRAIN: "train", TEST: "test"}
    counts = {TRAIN: 0, TEST: 0}
    held: dict[int, dict[int, dict]] = {TRAIN: {}, TEST: {}}  # split: hardtry writes rows in plan order
    reader = RecordReader(path, fmt)  # type: ignore[arg-type]
    valid_pos = 0
    try:
        for rec in reader:
            if rec.error is not None:
                continue
            try:
                prompt, answer, tools = normalize(rec.value)
            except BadRecord:
                continue
            pos = valid_pos
            split = plan.splits[pos] if pos < len(plan.splits) else 0
            valid_pos += 1
            if not split:
                continue
            if stage_spec.tools_in_system_prompt:
                prompt = with_tools_in_system(prompt, tools)
            index = plan.rank[pos] if plan.rank is not None else counts[split]
            row = to_row(prompt, answer, tools, data_source=stage_spec.data_source, ability=stage_spec.ability,
                         split=names[split], index=index, source_index=rec.index)
            if plan.rank is not None:
                held[split][index] = row
            else:
                writers[split].add(row)
            counts[split] += 1
            if token_stats is not None:
                token_stats.add(names[split], prompt, answer, tools)
        for split, rows in held.items():
            for index in sorted(rows):
                writers[split].add(rows[index])
    finally:
        for w in writers.values():
            w.close()
    if reader.sha256 != scan.sha256:
        raise InputDataError(f"{path}: the file changed while it was being converted; run the stage again")


def _log(ctx: StageContext, stage_spec: DataSpec, path: Path, fmt: str, scan: Scan,
         outputs: dict[str, Path], digests: dict[str, str], metrics: dict[str, float]) -> None:
    tracker = ctx.tracker
    tracker.log_params({
        "input_path": str(path), "input_format": fmt, "input_sha256": scan.sha256,
        "records_read": scan.records, "records_valid": scan.valid, "records_skipped": scan.skipped,
        "train_sha256": digests["train"], "test_sha256": digests["test"],
    })
    tracker.log_metrics(metrics, step=0)
    if scan.skipped:
        tracker.log_dict({"count": scan.skipped, "sample": scan.skipped_sample}, "convert/skipped_records.json")
    for split, parquet in outputs.items():
        dataset = _dataset(parquet, path, f"{stage_spec.data_source}-{split}", digests[split],
                           min(DATASET_SAMPLE_ROWS, stage_spec.batch_size))
        tracker.log_input(dataset, context=split)


def _dataset(parquet: Path, source: Path, name: str, sha256: str, max_rows: int) -> Any:
    """An ``mlflow.data`` dataset of the split's first ``max_rows`` rows (flattened to scalar columns) with
    the parquet file's sha256 as its digest; the full row count is in the run's metrics."""
    import json
    import warnings

    import mlflow.data
    import pandas as pd
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(parquet)
    rows: list[dict[str, Any]] = []
    for batch in pf.iter_batches(batch_size=max_rows):
        rows = batch.to_pylist()
        break
    df = pd.DataFrame([{
        "data_source": r["data_source"], "ability": r["ability"],
        "prompt": json.dumps(r["prompt"], ensure_ascii=False),
        "ground_truth": r["reward_model"]["ground_truth"],
        "split": r["extra_info"]["split"], "index": r["extra_info"]["index"],
        "source_index": r["extra_info"]["source_index"], "tools": r["extra_info"]["tools"] or "",
    } for r in rows])
    with warnings.catch_warnings():
        # MLflow registers the local-file source for both "" and "file" schemes and warns that a
        # path matches two (identical) source types; the choice is the same either way
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        # schema inference hints that int columns cannot hold NaN: ours never miss values
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        # MLflow stores at most 36 characters of digest
        dataset = mlflow.data.from_pandas(df, source=str(source), name=name, digest=sha256[:32])
        _ = dataset.schema  # cached: inferred here, inside the warning filter
    return dataset
