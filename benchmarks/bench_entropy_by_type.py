"""Entropy after tool calls by record type and round, from entropy stages' ``entropy_data.json``.

The demo data mixes records whose model was trained to read a tool answer (``with_tool_turn``: a
chained record's first call is answered by the dataset's own tool turn) with records whose
answer ends at ``</tool_call>`` (``single_call``, ``multi_call``): the entropy stage still
executes that call, so their round 1 reads a tool answer the SFT data never followed. Pooling
the types mixes the ARPO effect with that distribution shift; this prints them apart:

- per model, record type and round: mean ± sd of the first-k entropy, n conversations, and how
  the tool answers read in that round came about (replayed / executed / parse error);
- per model and type: round 1 − round 0 paired per conversation (t interval over conversations,
  ``scipy.stats.ttest_rel``; Wilcoxon signed-rank p). The interval covers which conversations were
  drawn and the one sampled rollout of each, not training seeds.

    .venv/bin/python benchmarks/bench_entropy_by_type.py PATH/entropy_data.json [...] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path


def load(paths: list[Path]) -> list[dict]:
    return [rec for p in paths for rec in json.loads(p.read_text(encoding="utf-8"))]


def table(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r.get("model", ""), r.get("record_type") or "unknown", r["round"])].append(r)
    rows = []
    for (model, kind, rnd), recs in sorted(groups.items()):
        vals = [r["entropy"] for r in recs if r["entropy"] == r["entropy"]]
        sources = Counter((r.get("tool_source") or "-") for r in recs)
        rows.append({"model": model, "record_type": kind, "round": rnd, "n": len(vals),
                     "mean": statistics.fmean(vals), "sd": statistics.pstdev(vals), "sources": dict(sources)})
    return rows


def jumps(records: list[dict], later: int = 1) -> list[dict]:
    from scipy import stats

    by_conv: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in records:
        by_conv[(r.get("model", ""), r.get("record_type") or "unknown", r["sample_idx"])][r["round"]] = r["entropy"]
    pairs: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for (model, kind, _), rounds in by_conv.items():
        if 0 in rounds and later in rounds:
            pairs[(model, kind)].append((rounds[0], rounds[later]))
    out = []
    for (model, kind), ps in sorted(pairs.items()):
        a, b = [p[0] for p in ps], [p[1] for p in ps]
        diffs = [y - x for x, y in ps]
        res = stats.ttest_rel(b, a)
        ci = res.confidence_interval(0.95)
        wil = stats.wilcoxon(b, a).pvalue if len(ps) > 1 and any(diffs) else float("nan")
        out.append({"model": model, "record_type": kind, "n": len(ps), "round0": statistics.fmean(a),
                    f"round{later}": statistics.fmean(b), "diff": statistics.fmean(diffs),
                    "ci_low": float(ci.low), "ci_high": float(ci.high), "t_p": float(res.pvalue),
                    "wilcoxon_p": float(wil), "rose": sum(d > 0 for d in diffs)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    records = load(args.paths)
    rows, jmp = table(records), jumps(records)
    if args.json:
        print(json.dumps({"rounds": rows, "jumps": jmp}, indent=1))
        return 0
    print("| model | record type | round | n | entropy mean ± sd | tool answers read |\n|---|---|---|---|---|---|")
    for r in rows:
        src = ", ".join(f"{k} {v}" for k, v in sorted(r["sources"].items()) if k != "-") or "—"
        print(f"| {r['model']} | {r['record_type']} | {r['round']} | {r['n']} | {r['mean']:.4f} ± {r['sd']:.4f} | {src} |")
    print("\n| model | record type | n | round 0 | round 1 | round 1 − round 0 [95 % CI] | t p | Wilcoxon p | rose |"
          "\n|---|---|---|---|---|---|---|---|---|")
    for j in jmp:
        print(f"| {j['model']} | {j['record_type']} | {j['n']} | {j['round0']:.4f} | {j['round1']:.4f} | "
              f"{j['diff']:+.4f} [{j['ci_low']:+.4f}, {j['ci_high']:+.4f}] | {j['t_p']:.2g} | {j['wilcoxon_p']:.2g} | "
              f"{j['rose']}/{j['n']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
