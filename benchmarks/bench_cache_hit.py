"""Benchmark a stage-cache hit on a large output directory: full re-hash (before) vs stat
fingerprint (after).

    .venv/bin/python benchmarks/bench_cache_hit.py                # 5 files x 1 GiB = 5 GiB
    .venv/bin/python benchmarks/bench_cache_hit.py --files 2 --gib-per-file 0.25

Writes pseudo-random bytes (numpy PCG64 doubles, incompressible) into a temporary directory, then times:
publishing (digest + fingerprint), the old hit (``digest_path``: every byte read and hashed) cold
and warm, the new hit (``cache.check_output`` with the recorded fingerprint) with the file pages
evicted, and a whole ``cache.find_cached`` lookup against a real sqlite MLflow store. "Cold" evicts
only this directory's data pages (``posix_fadvise(DONTNEED)``; no root, nothing else on the machine
is touched); inode metadata stays cached. Single-threaded. The directory is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry import cache, hashing  # noqa: E402

CHUNK = 64 << 20


def write_random(path: Path, size: int, seed: int) -> None:
    import numpy as np

    rng = np.random.Generator(np.random.PCG64(seed))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(rng.random(n // 8).tobytes())  # 4x faster than rng.bytes here
            left -= n
        f.flush()
        os.fsync(f.fileno())


def evict(directory: Path) -> None:
    for p in directory.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def lookup_seconds(out_dir: Path, digest: str, fingerprint: str, repeats: int) -> list[float]:
    """A whole cache lookup (MLflow search + checks) of a FINISHED run recording ``out_dir``."""
    import mlflow

    store = Path(tempfile.mkdtemp(prefix="bench-cache-store-"))
    try:
        client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
        exp = client.create_experiment("bench")
        run = client.create_run(exp, tags={cache.TAG_KEY: "k" * 64, cache.TAG_HEADLINE: "{}",
                                           cache.TAG_OUTPUTS: cache.outputs_tag({"model": out_dir}, {"model": digest},
                                                                                {"model": fingerprint})})
        client.set_terminated(run.info.run_id, "FINISHED")
        times = []
        for _ in range(repeats):
            t, hit = timed(cache.find_cached, client, [exp], "k" * 64)
            assert hit is not None and hit.digests["model"] == digest
            times.append(t)
        return times
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--gib-per-file", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="Parent directory (default: the temp dir).")
    ap.add_argument("--json", dest="json_out", type=Path, help="Also write the results here.")
    args = ap.parse_args()

    size = int(args.gib_per_file * (1 << 30)) // 8 * 8
    out = Path(tempfile.mkdtemp(prefix="bench-cache-hit-", dir=args.dir))
    res: dict = {"files": args.files, "bytes": size * args.files, "dir": str(out)}
    try:
        (out / "model").mkdir()
        t, _ = timed(lambda: [write_random(out / "model" / f"shard-{i}.bin", size, i) for i in range(args.files)])
        res["write_s"] = t
        (out / "model" / "config.json").write_text("{}")
        model = out / "model"

        # Publishing: just written, so the fingerprint is racily fresh and not recorded.
        t, (digest, fp_publish) = timed(hashing.digest_and_fingerprint, model)
        res["publish_s"], res["publish_fingerprint_recorded"] = t, fp_publish is not None
        evict(model)
        res["before_cold_s"], _ = timed(hashing.digest_path, model)
        res["before_warm_s"], _ = timed(hashing.digest_path, model)
        # First hit: no recorded fingerprint -> one full re-hash, which records one.
        evict(model)
        t, (intact, fingerprint) = timed(cache.check_output, model, digest, fp_publish)
        assert intact and fingerprint, "the first hit should record a fingerprint"
        res["first_hit_cold_s"] = t
        after = []
        for _ in range(args.repeats):
            evict(model)
            t, (intact, _) = timed(cache.check_output, model, digest, fingerprint)
            assert intact
            after.append(t)
        res["after_cold_median_s"], res["after_cold_max_s"] = statistics.median(after), max(after)
        lookups = lookup_seconds(model, digest, fingerprint, max(5, args.repeats // 4))
        res["lookup_median_s"], res["lookup_max_s"] = statistics.median(lookups), max(lookups)
        # A same-size in-place rewrite with mtime restored must still be caught (ctime moves).
        shard = model / "shard-0.bin"
        st = shard.stat()
        time.sleep(0.05)
        with open(shard, "r+b") as f:
            f.seek(size // 2)
            f.write(b"\0")
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
        t, (intact, _) = timed(cache.check_output, model, digest, fingerprint)
        res["tampered_detected"], res["tampered_check_s"] = not intact, t
    finally:
        shutil.rmtree(out, ignore_errors=True)
    res["deleted"] = not out.exists()
    text = json.dumps(res, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
