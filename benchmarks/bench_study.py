"""The shipped study (demo-sft baseline, demo-grpo, demo-egpo × seeds 1–3) with --jobs 1 vs --jobs 2.

Each measurement runs `rlreg study run` in a fresh store and stage cache (so convert and SFT are
computed once, by the first cell, and reused by the other cells in both cases) and reports wall
seconds and the CPU seconds of the driver and all its cell processes.

    .venv/bin/python benchmarks/bench_study.py [--scale 1.0] [--jobs 1 2]

--scale < 1 shrinks the demo (SFT steps, train steps, eval samples) for a quick run; the sizes used
are printed. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def scaled_specs(specs: Path, scale: float) -> dict:
    grpo = yaml.safe_load((ROOT / "specs" / "demo-grpo.yaml").read_text())
    if scale < 1:
        grpo["sft"]["max_steps"] = max(10, int(grpo["sft"]["max_steps"] * scale))
        grpo["train"]["total_training_steps"] = max(1, int(grpo["train"]["total_training_steps"] * scale))
        grpo["train"]["save_freq"] = -1
        # the demo evaluates every test record (no max_samples): 100 = 2000 records × test_size 0.05
        grpo["eval"]["max_samples"] = max(4, int(grpo["eval"].get("max_samples", 100) * scale))
    (specs / "demo-grpo.yaml").write_text(yaml.safe_dump(grpo, sort_keys=False))
    # every spec that extends demo-grpo is copied, so it extends the scaled one
    for name in ("demo-egpo.yaml", "demo-sft.yaml"):
        (specs / name).write_text((ROOT / "specs" / name).read_text())
    (specs / "study-grpo-vs-egpo.yaml").write_text((ROOT / "specs" / "study-grpo-vs-egpo.yaml").read_text())
    return {"sft.max_steps": grpo["sft"]["max_steps"], "train.total_training_steps": grpo["train"]["total_training_steps"],
            "eval.max_samples": grpo["eval"]["max_samples"]}


def measure(jobs: int, scale: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="rlreg-bench-study-") as tmp:
        tmp = Path(tmp)
        specs = tmp / "specs"
        specs.mkdir()
        sizes = scaled_specs(specs, scale)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "RLREG_HOME": str(tmp / "home"),
               "RLREG_SPECS_DIR": str(specs), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("MLFLOW_RUN_ID", None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "registry", "study", "run", "grpo-vs-egpo", "--jobs", str(jobs)],
                           env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"study failed (jobs={jobs}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {"jobs": jobs, "wall_s": wall, "cpu_s": cpu, "sizes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="Shrink the demo sizes (1.0 = the shipped demo).")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rows = [measure(j, args.scale) for j in args.jobs]
    print(f"sizes: {rows[0]['sizes']}  load average: {os.getloadavg()[0]:.1f}  cores: {os.cpu_count()}")
    for row in rows:
        print(f"--jobs {row['jobs']}: wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s")
    if len(rows) == 2:
        print(f"wall ratio jobs {rows[0]['jobs']} / jobs {rows[1]['jobs']}: {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}")


if __name__ == "__main__":
    main()
