"""Chunked vs naive per-token entropy: peak memory and time (docs/benchmarks.md, ## training).

    .venv/bin/python benchmarks/bench_entropy.py [--rows 4096] [--vocab 32000] [--device cpu|cuda]

Each case runs in a fresh subprocess so peak RSS (``ru_maxrss``) belongs to that case alone; the
figure reported is the peak above the RSS right after the bf16 logits were built. On CUDA the
peak is ``torch.cuda.max_memory_allocated`` above the same baseline. ``naive`` is the textbook
``-(softmax(z) * log_softmax(z)).sum(-1)`` on the whole float32 tensor; ``chunked`` is
``runners.common.entropy.entropy_from_logits`` (float32 per chunk of rows, as verl does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _case(variant: str, rows: int, vocab: int, chunk: int, device: str) -> dict:
    import resource
    import time

    import torch

    sys.path.insert(0, str(ROOT))
    from runners.common.entropy import entropy_from_logits

    torch.set_num_threads(1)
    gen = torch.Generator(device="cpu").manual_seed(0)
    # Filled in slices so no full float32 temporary raises the RSS high-water mark before we measure.
    logits = torch.empty(rows, vocab, dtype=torch.bfloat16)
    for start in range(0, rows, 128):
        logits[start : start + 128] = torch.randn(min(128, rows - start), vocab, generator=gen) * 3
    logits = logits.to(device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = _rss_mib()
    wall, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        if variant == "naive":
            z = logits.float()
            out = -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)
        else:
            out = entropy_from_logits(logits, chunk_size=chunk)
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    reference = -(torch.softmax(logits[:256].double(), -1) * torch.log_softmax(logits[:256].double(), -1)).sum(-1)
    err = float((out[:256].double().cpu() - reference.cpu()).abs().max())
    return {"variant": variant, "chunk": chunk if variant == "chunked" else None, "rows": rows, "vocab": vocab,
            "device": device, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_extra_mib": round(peak, 1),
            "logits_mib": round(rows * vocab * 2 / 2**20, 1), "max_abs_err_vs_float64": err}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunks", default="256,2048")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._case:
        variant, chunk = args._case.split(":")
        print(json.dumps(_case(variant, args.rows, args.vocab, int(chunk), args.device)))
        return
    cases = [("naive", 0)] + [("chunked", int(c)) for c in args.chunks.split(",")]
    print("| variant | chunk rows | rows × vocab | bf16 logits MiB | peak extra MiB | wall s | CPU s | max abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for variant, chunk in cases:
        cmd = [sys.executable, __file__, "--rows", str(args.rows), "--vocab", str(args.vocab), "--device", args.device,
               "--_case", f"{variant}:{chunk}"]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"| {r['variant']} | {r['chunk'] or '-'} | {r['rows']} × {r['vocab']} | {r['logits_mib']} | "
              f"{r['peak_extra_mib']} | {r['wall_s']} | {r['cpu_s']} | {r['max_abs_err_vs_float64']:.1e} |")


if __name__ == "__main__":
    main()
