"""How much the CPU demo's models solve: pass@1 / pass@k on the demo's test prompts, by record
type, for the SFT model and (``--train``) for the GRPO/EGPO policy trained from it, paired per
prompt. The numbers in docs/training.md (``## Tuning the CPU demo``) come from this script.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_demo_learning.py \
        --spec specs/demo-grpo.yaml --set sft.max_steps=900 --k 8 [--train] [--json out.json]

It runs the spec's convert and sft stages in-process (runners, no MLflow; cached under
``--work`` by the sections they read), then samples ``k`` responses per test prompt at the
training temperature (``train.rollout.temperature``) and at the eval temperature, scored by the
eval runner's own scorer. ``--set`` takes ``dotted.key=YAML`` changes to the spec (applied before
validation). Reports CPU seconds (``resource.getrusage``) beside wall seconds, because the box is
shared and wall time is inflated by other processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def load(spec_path: Path, sets: list[str]):
    from registry.loader import deep_merge, load_spec
    from registry.spec import Spec

    data = load_spec(spec_path).spec.model_dump(mode="json", exclude_none=False)
    data.pop("extends", None)
    for item in sets:
        key, _, raw = item.partition("=")
        node: dict = {}
        cur = node
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = yaml.safe_load(raw)
        data = deep_merge(data, node)
    return Spec.model_validate(data)


def key_of(*sections: Any) -> str:
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ctx_for(spec, stage: str, work: Path, inputs: dict[str, Path]):
    from registry.context import StageContext
    from registry.tracking import NullTracker

    out, scratch = work / "out", work / "work"
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    return StageContext(stage=stage, spec=spec, out_dir=out, work_dir=scratch, inputs=inputs,
                        tracker=NullTracker(), project_root=ROOT)


def stage(spec, name: str, root: Path, inputs: dict[str, Path], sections: tuple, run) -> tuple[dict[str, Path], dict]:
    work = root / f"{name}-{key_of(*sections)}"
    done = work / "done.json"
    if done.exists():
        saved = json.loads(done.read_text())
        return {k: Path(v) for k, v in saved["outputs"].items()}, saved["timing"]
    t0, c0 = time.monotonic(), cpu_seconds()
    result = run(ctx_for(spec, name, work, inputs))
    timing = {"wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(cpu_seconds() - c0, 1),
              "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
    outputs = {k: str(v) for k, v in result.outputs.items()}
    done.write_text(json.dumps({"outputs": outputs, "timing": timing}))
    return {k: Path(v) for k, v in outputs.items()}, timing


def record_type(rec) -> str:
    if any(m.get("role") == "tool" for m in rec.messages):
        return "chain"
    return "two_call" if str(rec.ground_truth).count("<tool_call>") > 1 else "single"


def sample_scores(model_path: Path, spec, records, k: int, temperature: float, seed: int) -> list[list[float]]:
    """scores[i][j]: sample j of test prompt i (k samples per prompt); cached beside the model."""
    cache = Path(model_path).parent / f"scores-k{k}-T{temperature}-s{seed}-n{len(records)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    out = _sample_scores(model_path, spec, records, k, temperature, seed)
    cache.write_text(json.dumps(out))
    return out


def _sample_scores(model_path: Path, spec, records, k: int, temperature: float, seed: int) -> list[list[float]]:
    from runners.eval.generation import cpu_threads_for, generate, prompt_texts
    from runners.eval.scoring import score_sample
    from runners.modeling import load_model
    from runners.reward import REWARD_FUNCTIONS

    reward_fn = REWARD_FUNCTIONS[spec.reward.function]
    model, tok = load_model(model_path, dtype="float32", device="cpu")
    prompts = prompt_texts(tok, records)
    out: list[list[float]] = [[] for _ in records]
    with cpu_threads_for(model):
        for j in range(k):
            gens = generate(model, tok, prompts, batch_size=spec.eval.batch_size, do_sample=True,
                            temperature=temperature, top_p=1.0, max_new_tokens=spec.eval.max_new_tokens,
                            max_prompt_length=spec.eval.max_prompt_length, seed=seed + j)
            for i, (rec, g) in enumerate(zip(records, gens)):
                out[i].append(score_sample(rec, g.text, reward_fn, spec.reward.function == "think_tool_call").score)
    return out


def summarize(scores: list[list[float]], types: list[str], group_sizes=(4, 8)) -> dict[str, Any]:
    k = len(scores[0])
    solved = [[s >= 1.0 for s in row] for row in scores]
    per_prompt = [sum(r) / k for r in solved]
    res: dict[str, Any] = {"pass@1": round(sum(per_prompt) / len(per_prompt), 3),
                           f"pass@{k}": round(sum(any(r) for r in solved) / len(solved), 3),
                           "never_solved": sum(not any(r) for r in solved), "prompts": len(solved)}
    for n in group_sizes:  # expected share of GRPO groups of size n whose rewards are not all equal
        res[f"informative@n={n}"] = round(sum(1 - p**n - (1 - p) ** n for p in per_prompt) / len(per_prompt), 3)
    for t in sorted(set(types)):
        rows = [p for p, tt in zip(per_prompt, types) if tt == t]
        res[f"pass@1/{t}"] = round(sum(rows) / len(rows), 3)
        res[f"n/{t}"] = len(rows)
    return res


def paired(a: list[list[float]], b: list[list[float]]) -> dict[str, Any]:
    """Per-prompt solve-rate differences b − a (prompts are the unit; scipy's paired t and Wilcoxon)."""
    from scipy import stats

    pa = [sum(s >= 1 for s in r) / len(r) for r in a]
    pb = [sum(s >= 1 for s in r) / len(r) for r in b]
    d = [y - x for x, y in zip(pa, pb)]
    mean = sum(d) / len(d)
    t = stats.ttest_rel(pb, pa)
    ci = t.confidence_interval(0.95) if hasattr(t, "confidence_interval") else (float("nan"), float("nan"))
    try:
        w = stats.wilcoxon(pb, pa).pvalue
    except ValueError:
        w = float("nan")
    return {"delta_pass@1": round(mean, 3), "ci95": [round(float(ci[0]), 3), round(float(ci[1]), 3)],
            "t_p": float(t.pvalue), "wilcoxon_p": float(w), "better": sum(x > 0 for x in d), "worse": sum(x < 0 for x in d)}


def main(argv: list[str] | None = None) -> None:
    import runners.convert as convert
    import runners.sft as sft
    from runners.eval.records import load_convert_split

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "demo-grpo.yaml"))
    ap.add_argument("--set", action="append", default=[], help="dotted.key=YAML change to the spec")
    ap.add_argument("--k", type=int, default=8, help="samples per test prompt")
    ap.add_argument("--train", action="store_true", help="also train (spec.train) and measure the policy")
    ap.add_argument("--eval-temperature", type=float, default=None, help="default: spec.eval.temperature")
    ap.add_argument("--eval-only", action="store_true", help="measure at the eval temperature only")
    ap.add_argument("--work", default="/tmp/rlreg-demo-bench")
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)

    spec = load(Path(args.spec), args.set)
    root = Path(args.work)
    report: dict[str, Any] = {"spec": args.spec, "set": args.set, "k": args.k}
    conv, report["convert"] = stage(spec, "convert", root, {}, (spec.data.model_dump(mode="json"),),
                                    lambda c: convert.run(spec.data, c))
    inputs = {"convert.train": conv["train"], "convert.test": conv["test"]}
    sft_out, report["sft"] = stage(spec, "sft", root, inputs,
                                   (spec.data.model_dump(mode="json"), spec.model.model_dump(mode="json"),
                                    spec.sft.model_dump(mode="json")),
                                   lambda c: sft.run(spec.sft, c))
    records = load_convert_split(conv["test"], None)
    types = [record_type(r) for r in records]
    t_train = spec.train.rollout.temperature
    t_eval = args.eval_temperature or spec.eval.temperature
    t0, c0 = time.monotonic(), cpu_seconds()
    temps = [t_eval] if args.eval_only else sorted({t_train, t_eval})
    base = {t: sample_scores(sft_out["model"], spec, records, args.k, t, 1000) for t in temps}
    report["sft_measure"] = {f"T={t}": summarize(s, types) for t, s in base.items()}
    report["measure_timing"] = {"wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(cpu_seconds() - c0, 1)}
    if args.train:
        from runners.train import run as train_run

        trained, report["train"] = stage(
            spec, "train", root, {**inputs, "sft.model": sft_out["model"]},
            (spec.data.model_dump(mode="json"), spec.model.model_dump(mode="json"), spec.sft.model_dump(mode="json"),
             spec.train.model_dump(mode="json"), spec.reward.model_dump(mode="json")),
            lambda c: train_run(spec.train, c))
        hist = [json.loads(line) for line in Path(trained["model"]).parent.joinpath("metrics_history.jsonl").read_text().splitlines()]
        report["train_curve"] = {k: [round(h["metrics"].get(k, float("nan")), 3) for h in hist]
                                 for k in ("train/reward_mean", "actor/entropy", "actor/kl_loss", "adv/zero_adv_frac",
                                           "rollout/informative_share")}
        rl = {t: sample_scores(trained["model"], spec, records, args.k, t, 1000) for t in base}
        report["rl_measure"] = {f"T={t}": summarize(s, types) for t, s in rl.items()}
        report["rl_vs_sft"] = {f"T={t}": paired(base[t], rl[t]) for t in base}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
