"""The seed-level verdict of a finished study on its training curves: policy entropy and reward.

`rlreg compare --study NAME` judges the parent metrics (eval accuracy, the last step's entropy);
this script adds what a single logged step cannot say well, from each cell's train child:

- per arm and step, the mean ± sd over seeds of ``actor/entropy`` and ``rollout/reward_mean_generated``
  (the curves as a table);
- per seed, ``actor/entropy`` averaged over all steps (less noisy than one step: each step's
  value is over that step's kept batch only) and the change from the first to the last third of
  the run (entropy and reward), so "entropy falls as reward rises" is asked of every seed;
- Welch over seeds for arm B − arm A on those (``analysis.verdict.seeds_diff``: the interval
  covers training-seed variation), and per arm a t-interval over seeds of the within-seed change
  (paired: each seed against its own start);
- the same differences **paired by seed** (``scipy.stats.ttest_rel``), eval accuracy included, SFT
  baseline arm too: cells of one seed share the rollout and eval sampling seeds (common random
  numbers: GRPO and EGPO of one seed draw identical samples until their weights diverge), so
  seed s of arm A is seed s of arm B's natural pair; Welch ignores that and is wider. ``rlreg compare``
  pairs by seed as well (``analysis.seedpair``); this hand computation is its cross-check.

Step 1's ``actor/entropy`` is the warm start's entropy on that step's batch (the builtin trainer
computes it in the old-log-prob pass, before the first update).

    RLREG_HOME=… MLFLOW_TRACKING_URI=… .venv/bin/python benchmarks/bench_study_verdict.py grpo-vs-egpo [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import arms as A  # noqa: E402
from analysis import runs as R  # noqa: E402
from analysis.stats import mean_ci  # noqa: E402
from analysis.verdict import seeds_diff  # noqa: E402

# The reward of every response generated that step; ``train/reward_mean`` is over the kept batch
# only, which dynamic sampling restricts to groups with mixed rewards.
ENTROPY, REWARD = "actor/entropy", "rollout/reward_mean_generated"


def per_seed(client, arm: A.Arm) -> list[dict]:
    """One dict per seed of ``arm``: the step series of entropy and reward and their summaries."""
    out = []
    for run in arm.runs:
        train = R.children(client, run).get("train")
        if train is None:
            continue
        hist = R.metric_histories(client, [R.data_run_id(train)], [ENTROPY, REWARD])
        series = {k: [float(v) for v in g.sort_values("step")["value"]] for k, g in hist.groupby("key")}
        ent, rew = series.get(ENTROPY, []), series.get(REWARD, [])
        third = max(1, len(ent) // 3)
        out.append({"seed": A.seed_of(run), "entropy": ent, "reward": rew,
                    "entropy_mean": statistics.fmean(ent), "entropy_first": ent[0], "entropy_last": ent[-1],
                    "entropy_change": statistics.fmean(ent[-third:]) - statistics.fmean(ent[:third]),
                    "reward_change": statistics.fmean(rew[-third:]) - statistics.fmean(rew[:third])})
    return out


def accuracy(arm: A.Arm) -> dict[str, float]:
    return {A.seed_of(r): float(r.metrics["eval/accuracy_mean"]) for r in arm.runs if "eval/accuracy_mean" in r.metrics}


def paired_by_seed(a: dict[str, float], b: dict[str, float]) -> dict | None:
    """b − a over the seeds both have: mean, 95 % t interval, p (ttest_rel)."""
    from scipy import stats

    seeds = sorted(set(a) & set(b), key=lambda x: (len(x), x))
    if len(seeds) < 2:
        return None
    xa, xb = [a[s] for s in seeds], [b[s] for s in seeds]
    diffs = [y - x for x, y in zip(xa, xb)]
    if len(set(diffs)) == 1:
        return {"n": len(seeds), "diff": diffs[0], "low": diffs[0], "high": diffs[0], "p": float("nan"), "diffs": diffs}
    res = stats.ttest_rel(xb, xa)
    ci = res.confidence_interval(0.95)
    return {"n": len(seeds), "diff": statistics.fmean(diffs), "low": float(ci.low), "high": float(ci.high),
            "p": float(res.pvalue), "diffs": diffs}


def curve_rows(arms: dict[str, list[dict]], key: str) -> list[str]:
    steps = max(len(s[key]) for seeds in arms.values() for s in seeds)
    rows = []
    for step in range(steps):
        cells = []
        for seeds in arms.values():
            vals = [s[key][step] for s in seeds if step < len(s[key])]
            sd = statistics.stdev(vals) if len(vals) > 1 else math.nan
            cells.append(f"{statistics.fmean(vals):.3f} ± {sd:.3f}")
        rows.append(f"| {step + 1} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of text")
    args = ap.parse_args(argv)
    client = R.get_client()
    study_arms = A.study_arms(client, args.study)
    acc = {a.label: accuracy(a) for a in study_arms}
    arms = {a.label: per_seed(client, a) for a in study_arms}
    arms = {k: v for k, v in arms.items() if v}  # arms without a train stage (an SFT baseline)
    names = list(arms)
    summary = {k: {m: mean_ci(s[m] for s in v) for m in ("entropy_mean", "entropy_first", "entropy_last",
                                                          "entropy_change", "reward_change")}
               for k, v in arms.items()}
    sentences = []
    a = names[0]
    for b in names[1:]:
        for m in ("entropy_mean", "entropy_last"):
            sentences.append(seeds_diff(f"{ENTROPY} ({m.split('_')[1]})", a, b, summary[a][m], summary[b][m]).sentence())
    paired = {}
    labels = list(acc)
    for i, x in enumerate(labels):
        for y in labels[i + 1:]:
            paired[f"eval/accuracy_mean: {y} − {x}"] = paired_by_seed(acc[x], acc[y])
    for m in ("entropy_mean", "entropy_last"):
        for b in names[1:]:
            paired[f"{ENTROPY} ({m.split('_')[1]}): {b} − {a}"] = paired_by_seed(
                {s["seed"]: s[m] for s in arms[a]}, {s["seed"]: s[m] for s in arms[b]})
    if args.json:
        print(json.dumps({"arms": arms, "accuracy": acc, "paired_by_seed": paired,
                          "summary": {k: {m: vars(c) for m, c in v.items()} for k, v in summary.items()},
                          "verdicts": sentences}, indent=1))
        return 0
    for key, title in (("entropy", ENTROPY), ("reward", REWARD)):
        print(f"\n{title} per step, mean ± sd over seeds\n| step | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        print("\n".join(curve_rows(arms, key)))
    print("\nper arm, t-interval over seeds (95 %):")
    for k, v in summary.items():
        for m, c in v.items():
            print(f"  {k} {m}: {c.mean:+.4f} [{c.low:+.4f}, {c.high:+.4f}] (n = {c.n} seeds; "
                  f"values {', '.join(f'{s[m]:+.4f}' for s in arms[k])})")
    print("\n" + "\n".join(sentences))
    print("\npaired by seed (95 % t interval over the per-seed differences; covers training-seed variation "
          "given the shared sampling seeds):")
    for k, d in paired.items():
        if d:
            print(f"  {k} = {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}], p = {d['p']:.2g} "
                  f"(n = {d['n']} seeds; per seed {', '.join(f'{x:+.4f}' for x in d['diffs'])})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
