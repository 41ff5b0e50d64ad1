"""How long `rlreg compare` / `rlreg report` take on a store with 1000 runs (goal: ≤ 3 s).

The store: 250 spec executions of 25 spec names (10 each, the newest of each FAILED so "latest
finished" has to skip it), each a parent + convert/train/eval children = 1000 runs, 50 train
steps × 3 per-step metrics, 5 eval repeats; written once with analysis.synthetic (the registry's
run contract) and kept at --db for reruns.

    .venv/bin/python benchmarks/bench_analysis.py [--db /tmp/rlreg-bench-analysis.db] [--rebuild]

Prints the median of 3 warm in-process timings per operation and one cold CLI invocation each
(a new Python process: imports included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS, EXECUTIONS = 25, 10  # 250 executions × 4 runs


def build_store(uri: str) -> None:
    import mlflow

    from analysis import synthetic

    client = mlflow.MlflowClient(uri)
    t0, base = time.time(), 1_700_000_000_000
    for s in range(SPECS):
        for e in range(EXECUTIONS):
            egpo = s % 2 == 1
            spec = synthetic.demo_spec(f"bench-{s:02d}", egpo) | {"experiment": f"bench-exp-{s % 2}"}
            synthetic.write_spec_run(
                client, spec, seed=s * 100 + e, steps=50, repeats=5, acc_level=0.55 + 0.01 * (s % 7),
                status="FAILED" if e == EXECUTIONS - 1 else "FINISHED", start_time=base + (s * EXECUTIONS + e) * 1000,
                with_entropy_stage=False, with_artifacts=(e >= EXECUTIONS - 2),
            )
    n = len(client.search_runs([x.experiment_id for x in client.search_experiments()], max_results=5000))
    print(f"built {n} runs in {time.time() - t0:.0f} s")


def timed(fn, repeats: int = 3) -> tuple[str, object]:
    """Median wall and CPU seconds. CPU time is reported too because this box is shared: under a
    load average of ~20 on 2 cores, wall time is several times the work."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return f"{statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU", out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="/tmp/rlreg-bench-analysis.db")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    db = Path(args.db)
    if args.rebuild and db.exists():
        db.unlink()
    uri = f"sqlite:///{db}"
    if not db.exists():
        build_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri

    import resource

    import mlflow

    from analysis import compare, render, report

    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    client = mlflow.MlflowClient(uri)
    refs = ["bench-00", "bench-01"]  # GRPO-like vs EGPO-like, latest finished of 9 each

    s, comp = timed(lambda: render.to_text(compare.build(client, refs)))
    print(f"compare (resolve 2 specs among 1000 runs, children, repeats, Welch) + text: {s}")
    print(comp)
    s, rep = timed(lambda: report.build_report(client, refs))
    print(f"report build (compare + spec diff + 3 figures): {s}")
    with tempfile.TemporaryDirectory() as tmp:
        s, _ = timed(lambda: report.write_report(rep, Path(tmp) / "r.html"))
        print(f"report write (self-contained HTML): {s}")
        s, _ = timed(lambda: report.log_report(client, rep), repeats=1)
        print(f"report logged to MLflow (a report run + artifacts): {s}")
        for cmd in (["compare", *refs], ["report", *refs, "-o", str(Path(tmp) / "cli.html"), "--no-log"]):
            t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run([sys.executable, "-m", "registry", *cmd], capture_output=True, text=True, cwd=ROOT,
                                 check=False)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            assert res.returncode == 0, res.stderr
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            print(f"CLI `rlreg {cmd[0]}` cold (new process, imports included): "
                  f"{time.perf_counter() - t:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
