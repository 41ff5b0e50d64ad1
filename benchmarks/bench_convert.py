"""Benchmark the convert stage: time and peak memory for 14k synthetic records.

    .venv/bin/python benchmarks/bench_convert.py                 # 14k records, JSON array + JSONL
    .venv/bin/python benchmarks/bench_convert.py --num-records 56000 --formats json

Each case runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own; the baseline is
the RSS after importing everything convert uses (pyarrow, pandas, mlflow), so ``peak - baseline``
is what converting added. MLflow logging goes to a NullTracker (the dataset sample is still built).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(source: str, max_samples: int | None, batch_size: int) -> None:
    sys.path.insert(0, str(ROOT))
    import mlflow.data  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from registry.context import StageContext
    from registry.spec import Spec
    from registry.tracking import NullTracker
    from runners import convert

    baseline = _rss_mib()
    spec = Spec.model_validate({"name": "bench", "data": {"source": source, "max_samples": max_samples,
                                                          "batch_size": batch_size}})
    out = Path(tempfile.mkdtemp(prefix="bench-convert-"))
    ctx = StageContext(stage="convert", spec=spec, out_dir=out, work_dir=out, inputs={},
                       tracker=NullTracker(), project_root=ROOT)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = convert.run(spec.data, ctx)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "baseline_rss_mib": baseline, "peak_rss_mib": _rss_mib(),
                      "rows_train": result.info["rows_train"], "rows_test": result.info["rows_test"],
                      "train_parquet_mib": result.outputs["train"].stat().st_size / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-records", type=int, default=14_000)
    parser.add_argument("--formats", nargs="+", default=["json", "jsonl"], choices=["json", "jsonl"])
    parser.add_argument("--max-samples", nargs="+", default=["all", "1000"],
                        help="max_samples values to run ('all' = null)")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[2000])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        source, max_samples, batch = args.child
        child(source, None if max_samples == "all" else int(max_samples), int(batch))
        return

    sys.path.insert(0, str(ROOT))
    from runners.synth_data import generate_records, write_json

    work = Path(tempfile.mkdtemp(prefix="bench-convert-in-"))
    sources = {"json": write_json(work / "synth.json", args.num_records, seed=0)}
    if "jsonl" in args.formats:
        sources["jsonl"] = work / "synth.jsonl"
        with sources["jsonl"].open("w") as f:
            for rec in generate_records(args.num_records, seed=0):
                f.write(json.dumps(rec) + "\n")
    print("| input | max_samples | batch | file MiB | rows train/test | wall s | CPU s | baseline RSS MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    cases = [(f, m, b) for f in args.formats for m in args.max_samples for b in args.batch_size]
    for fmt, max_samples, batch in cases:
        proc = subprocess.run([sys.executable, __file__, "--child", str(sources[fmt]), max_samples,
                               str(batch)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        size = sources[fmt].stat().st_size / 2**20
        print(f"| {args.num_records} records, {fmt} | {max_samples} | {batch} | {size:.1f} | "
              f"{r['rows_train']}/{r['rows_test']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['baseline_rss_mib']:.0f} | "
              f"{r['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
