"""Tracking and entropy overhead of a demo-sized builtin train stage (docs/benchmarks.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tracking_overhead.py [--steps 16] [--sft-steps 100]

Runs demo-grpo's convert → sft → train in a throwaway store (sft shortened: the base only has to
write tool calls sometimes) and, during the train stage only, times every call of rlreg's tracker
(``registry.tracking.Tracker`` methods: metric buffering, log_batch flushes, params, tags,
artifacts, tables) and every per-token entropy computation (``entropy_from_logits`` in the
training forward), in wall seconds and in CPU seconds of the calling thread
(``time.thread_time``: the box is shared, so wall time includes other people's load). Goals
(issue 17): tracking ≤ 1 % and entropy ≤ 5 % of the stage. System metrics run as usual (their
thread is MLflow's, sampled every 10 s; its CPU shows in the process CPU, reported apart).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACKER_METHODS = ("log_metrics", "flush", "log_params", "set_tags", "log_artifact", "log_artifacts", "log_text",
                   "log_dict", "log_figure", "log_table", "log_input")


class Clock:
    def __init__(self) -> None:
        self.active = False
        self.depth = 0
        self.totals: dict[str, list[float]] = {}  # name -> [wall, cpu, calls]

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.active or self.depth:  # nested tracker calls (log_dict → log_text) count once
                return fn(*args, **kwargs)
            self.depth += 1
            w, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                t = self.totals.setdefault(name, [0.0, 0.0, 0])
                t[0] += time.perf_counter() - w
                t[1] += time.thread_time() - c
                t[2] += 1
        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=16, help="train.total_training_steps (demo: 16)")
    ap.add_argument("--sft-steps", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="rlreg-bench-track-"))
    os.environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "RLREG_HOME": str(tmp / "home"),
                       "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    os.environ.pop("MLFLOW_RUN_ID", None)

    import runners.train as train_runner
    import runners.train.forward as forward
    from registry.loader import load_spec
    from registry.pipeline import Pipeline
    from registry.tracking import Tracker

    tracking, entropy = Clock(), Clock()
    for name in TRACKER_METHODS:
        setattr(Tracker, name, tracking.wrap(name, getattr(Tracker, name)))
    forward.entropy_from_logits = entropy.wrap("entropy_from_logits", forward.entropy_from_logits)
    stage: dict[str, float] = {}
    original_run = train_runner.run

    def timed_run(section, ctx):
        tracking.active = entropy.active = True
        w, c, pc = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            return original_run(section, ctx)
        finally:
            stage.update(wall=time.perf_counter() - w, cpu=time.thread_time() - c, process_cpu=time.process_time() - pc)
            tracking.active = entropy.active = False

    train_runner.run = timed_run
    loaded = load_spec("demo-grpo", overrides=[f"train.total_training_steps={args.steps}", f"sft.max_steps={args.sft_steps}",
                                               "pipeline=[convert, sft, train]", "experiment=bench-tracking"])
    Pipeline(loaded, echo=lambda m: print(m, file=sys.stderr)).run()

    def share(clock: Clock) -> dict:
        wall = sum(t[0] for t in clock.totals.values())
        cpu = sum(t[1] for t in clock.totals.values())
        return {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "calls": sum(int(t[2]) for t in clock.totals.values()),
                "pct_of_stage_wall": round(100 * wall / stage["wall"], 3),
                "pct_of_stage_cpu": round(100 * cpu / stage["cpu"], 3),
                "by_call": {k: {"wall_s": round(v[0], 4), "cpu_s": round(v[1], 4), "calls": int(v[2])}
                            for k, v in sorted(clock.totals.items(), key=lambda kv: -kv[1][0])}}

    result = {"steps": args.steps, "stage_wall_s": round(stage["wall"], 2), "stage_cpu_s": round(stage["cpu"], 2),
              "process_cpu_s": round(stage["process_cpu"], 2), "load_avg_1m": os.getloadavg()[0],
              "tracking": share(tracking), "entropy": share(entropy)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"train stage, {args.steps} steps: {result['stage_wall_s']} s wall, {result['stage_cpu_s']} s CPU (main thread), "
          f"{result['process_cpu_s']} s CPU (process), load avg {result['load_avg_1m']:.1f}")
    for name in ("tracking", "entropy"):
        r = result[name]
        print(f"  {name:<9} {r['wall_s']:.3f} s wall = {r['pct_of_stage_wall']:.2f} %, {r['cpu_s']:.3f} s CPU = "
              f"{r['pct_of_stage_cpu']:.2f} %  ({r['calls']} calls)")
        for k, v in list(r["by_call"].items())[:5]:
            print(f"      {k:<20} {v['wall_s']:.3f} s wall, {v['cpu_s']:.3f} s CPU, {v['calls']} calls")


if __name__ == "__main__":
    main()
