"""Write runs shaped exactly like the registry's run contract, without running any stage.

For tests, the benchmark and the browser proof: a parent run per spec execution (tags, flattened
spec params, ``spec.yaml``, headline metrics) and nested stage children (train per-step metrics,
eval per-repeat accuracy, optionally the entropy stage's ``entropy_data.json``). Every write is a
``log_batch``. Numbers are deterministic from ``seed`` so tests can check them.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from registry import parent_view
from registry.flatten import flatten, param_items
from registry.stats import mean_ci


def demo_spec(name: str, egpo: bool) -> dict[str, Any]:
    """A resolved spec like the demo pair: identical except the estimator and its EGPO keys."""
    algorithm: dict[str, Any] = {"adv_estimator": "egpo" if egpo else "grpo", "norm_adv_by_std_in_grpo": True}
    if egpo:
        algorithm.update({"egpo_lambda": 0.4, "egpo_alpha": 2.0, "entropy_scope": "think"})
    return {
        "name": name,
        "extends": "demo-grpo" if egpo else None,
        "description": "EGPO on the tiny demo" if egpo else "GRPO on the tiny demo",
        "experiment": "rlreg-demo",
        "seed": 42,
        "data": {"max_samples": 64, "test_size": 0.05, "seed": 42, "data_source": "hardgen"},
        "model": {"tiny": {"layers": 2, "hidden": 128, "vocab": 800}},
        "reward": {"name": "tool_call_match", "require_think": True},
        "train": {
            "backend": "builtin",
            "algorithm": algorithm | {"use_kl_loss": True, "kl_loss_coef": 0.001, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28},
            "rollout": {"n": 4, "temperature": 1.0, "max_response_length": 64},
            "optim": {"lr": 1e-5, "warmup_steps": 0},
            "train_batch_size": 8,
            "total_steps": 20,
        },
        "eval": {"repeats": 5, "max_samples": 32},
    }


@dataclass
class FakeRun:
    spec: dict[str, Any]
    accuracy: list[float]
    reward: list[float]
    entropy: list[float]
    parent_id: str = ""
    child_ids: dict[str, str] = field(default_factory=dict)


def curves(seed: int, steps: int, repeats: int, acc_level: float) -> tuple[list[float], list[float], list[float]]:
    rng = random.Random(seed)
    accuracy = [round(min(1.0, max(0.0, acc_level + rng.gauss(0, 0.02))), 4) for _ in range(repeats)]
    reward = [round(0.2 + 0.4 * (1 - math.exp(-s / 6)) + rng.gauss(0, 0.03), 4) for s in range(steps)]
    entropy = [round(2.5 * math.exp(-s / 15) + 0.5 + rng.gauss(0, 0.05), 4) for s in range(steps)]
    return accuracy, reward, entropy


def _batch(client: Any, run_id: str, metrics: dict[str, list[tuple[int, float]]] | None = None,
           params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, s) for k, pts in (metrics or {}).items() for s, v in pts]
    ps = [Param(k, v) for k, v in (params or {}).items()]
    tg = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(ms), 1), 1000):
        client.log_batch(run_id, metrics=ms[i : i + 1000], params=ps if i == 0 else [], tags=tg if i == 0 else [])


def write_spec_run(
    client: Any,
    spec: dict[str, Any],
    *,
    seed: int = 0,
    steps: int = 20,
    repeats: int = 5,
    acc_level: float = 0.6,
    status: str = "FINISHED",
    start_time: int | None = None,
    with_entropy_stage: bool = False,
    with_artifacts: bool = True,
    tags: dict[str, str] | None = None,
    entries: list[dict[str, Any]] | None = None,
    stages: tuple[str, ...] = ("convert", "train", "eval"),
    cache_keys: dict[str, str] | None = None,
) -> FakeRun:
    """One spec execution: parent + ``stages`` children (+ entropy), as the registry logs.
    ``tags`` go on the parent (e.g. study cell tags); ``entries`` becomes the eval child's
    ``eval/entries.json`` table and then sets the per-repeat accuracy (its mean per repeat);
    ``cache_keys`` sets a stage's ``rlreg.cache_key`` (default ``<stage>-<seed>``: not shared)."""
    import yaml

    name, exp_name = spec["name"], spec.get("experiment", "rl-registry")
    exp = client.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else client.create_experiment(exp_name)
    parent_view.mark_classic_ml(client, exp_id)
    accuracy, reward, entropy = curves(seed, steps, repeats, acc_level)
    if entries:
        accuracy = [round(sum(e["correct"] for e in entries if e["repeat"] == r)
                          / max(1, sum(1 for e in entries if e["repeat"] == r)), 6) for r in range(repeats)]
    run = FakeRun(copy.deepcopy(spec), accuracy, reward, entropy)
    start = start_time if start_time is not None else int(time.time() * 1000)
    common = {"rlreg.spec": name, "rlreg.spec_hash": f"{seed:064x}"}

    parent = client.create_run(exp_id, start_time=start, run_name=(tags or {}).get("rlreg.cell") or name, tags={
        **common, "rlreg.role": "parent", "rlreg.git_commit": "0" * 40, "rlreg.git_dirty": "false", **(tags or {})})
    run.parent_id = pid = parent.info.run_id
    acc = mean_ci(accuracy)
    headline = {
        "eval/accuracy_mean": acc["mean"], "eval/accuracy_ci95_low": acc["ci_low"],
        "eval/accuracy_ci95_high": acc["ci_high"], "eval/repeats": float(repeats),
        **({"train/reward_mean_last": reward[-1], "actor/entropy_last": entropy[-1]} if "train" in stages else {}),
    }
    # as registry.parent_view: the parent has means (bounds stay on the eval child), the train
    # curves, and only the params the run used
    curves_on_parent = ({"actor/entropy": list(enumerate(entropy)), "critic/score/mean": list(enumerate(reward))}
                        if "train" in stages else {})
    _batch(client, pid, {**{k: [(0, v)] for k, v in parent_view.headline(headline).items()}, **curves_on_parent},
           params=dict(param_items(flatten(parent_view.parent_params(spec)))),
           tags=parent_view.identity_tags(spec))
    if with_artifacts:
        client.log_text(pid, yaml.safe_dump(spec, sort_keys=False), "spec.yaml")

    stage_metrics: dict[str, dict[str, list[tuple[int, float]]]] = {
        "convert": {"convert/train_rows": [(0, 61.0)], "convert/test_rows": [(0, 3.0)]},
        "sft": {"sft/final_loss": [(0, 0.08)]},
        "train": {
            "train/reward_mean": list(enumerate(reward)),
            "critic/score/mean": list(enumerate(reward)),
            "actor/entropy": list(enumerate(entropy)),
        },
        "eval": {"eval/accuracy": list(enumerate(accuracy)), **{k: [(0, v)] for k, v in headline.items() if k.startswith("eval/")}},
    }
    stage_metrics = {k: v for k, v in stage_metrics.items() if k in stages}
    if with_entropy_stage:
        stage_metrics["entropy"] = {"entropy/after_tool_mean": [(0, 0.61)], "entropy/before_tool_mean": [(0, 0.42)]}
    for i, (stage, metrics) in enumerate(stage_metrics.items()):
        child = client.create_run(exp_id, start_time=start + 1 + i, run_name=stage, tags={
            **common, "mlflow.parentRunId": pid, "rlreg.role": "stage", "rlreg.stage": stage,
            "rlreg.cache_key": (cache_keys or {}).get(stage, f"{stage}-{seed}")})
        cid = run.child_ids[stage] = child.info.run_id
        _batch(client, cid, metrics)
        if stage == "eval" and entries:
            import pandas as pd

            client.log_table(cid, data=pd.DataFrame(entries), artifact_file="eval/entries.json")
        if stage == "entropy" and with_artifacts:
            client.log_text(cid, json.dumps(entropy_records(seed)), "entropy_data.json")
        client.set_terminated(cid, "FINISHED", end_time=start + 100 + i)
    client.set_terminated(pid, status, end_time=start + 200)
    return run


def entropy_records(seed: int, samples: int = 6, rounds: int = 3) -> list[dict[str, Any]]:
    """Seed schema: ``[{"sample_idx", "round", "entropy", "is_after_tool_call"}]`` (entropy in
    [0, 1]); round 0 is before any tool answer, rounds 1..N follow one."""
    rng = random.Random(seed)
    out = []
    for s in range(samples):
        for r in range(rounds + 1):
            base = 0.35 + (0.25 + 0.03 * r if r else 0.0)
            out.append({"sample_idx": s, "round": r, "entropy": round(min(1, base + rng.gauss(0, 0.04)), 4),
                        "is_after_tool_call": r > 0})
    return out


def demo_pair(client: Any, with_entropy_stage: bool = True) -> tuple[FakeRun, FakeRun]:
    """demo-grpo and demo-egpo, finished, the EGPO one newer, accuracies not told apart by their repeats."""
    now = int(time.time() * 1000)
    grpo = write_spec_run(client, demo_spec("demo-grpo", False), seed=1, acc_level=0.60, start_time=now - 10_000,
                          with_entropy_stage=with_entropy_stage)
    egpo = write_spec_run(client, demo_spec("demo-egpo", True), seed=2, acc_level=0.61, start_time=now - 5_000,
                          with_entropy_stage=with_entropy_stage)
    return grpo, egpo


def entries(seed: int, prompts: int = 20, repeats: int = 3, skill: float = 0.6,
            hard: list[float] | None = None) -> list[dict[str, Any]]:
    """``eval/entries.json`` rows (entry × repeat) like the builtin eval writes: a prompt's chance of
    being answered is ``skill`` shifted by its difficulty (``hard``, shared across models, so paired
    comparisons have something to pair)."""
    import hashlib

    rng = random.Random(seed)
    hard = hard if hard is not None else [random.Random(p).uniform(-0.35, 0.35) for p in range(prompts)]
    rows = []
    for p in range(prompts):
        prompt = f"prompt {p}: call the tool"
        chance = min(1.0, max(0.0, skill - hard[p]))
        for r in range(repeats):
            ok = float(rng.random() < chance)
            rows.append({"entry_id": f"p{p:03d}", "repeat": r, "seed": 1000 + r, "correct": ok, "reward": ok,
                         "format_valid": 1.0, "tool_name_correct": ok, "args_correct": ok,
                         "response": "<tool_call>{}</tool_call>", "parsed_calls": "[]", "prompt": prompt,
                         "prompt_sha": hashlib.sha256(prompt.encode()).hexdigest()[:16]})
    return rows


def study(client: Any, name: str = "demo-study", arms: dict[str, float] | None = None,
          seeds: tuple[int, ...] = (1, 2, 3), prompts: int = 20, repeats: int = 3,
          steps: int = 12, untrained: tuple[str, ...] = (),
          arm_seeds: dict[str, tuple[int, ...]] | None = None) -> dict[str, list[FakeRun]]:
    """A study's cell parents (tags rlreg.study/arm/seed/cell/grid) with per-entry eval tables:
    ``arms`` maps arm name → skill level; ``untrained`` arms are an SFT baseline (convert, sft,
    eval: no train stage, one shared SFT run); every cell shares one convert run; ``arm_seeds``
    gives an arm other seeds.
    As ``registry.seeds``, ``train.seed`` and ``eval.seed`` follow the cell's seed, so cells of one
    seed share them. Returns ``{arm: [run per seed]}``."""
    arms = arms or {"grpo": 0.55, "egpo": 0.65}
    now = int(time.time() * 1000)
    out: dict[str, list[FakeRun]] = {}
    for i, (arm, skill) in enumerate(arms.items()):
        for j, seed in enumerate((arm_seeds or {}).get(arm, seeds)):
            spec = demo_spec(f"demo-{arm}", arm != "grpo") | {"seed": seed}
            spec["eval"] = spec["eval"] | {"seed": seed}
            stages, keys = ("convert", "train", "eval"), {"convert": "convert-shared"}  # a study's shared stage
            if arm in untrained:
                del spec["train"]
                spec["sft"] = {"epochs": 1, "seed": 0}
                stages, keys = ("convert", "sft", "eval"), {"convert": "convert-shared", "sft": "sft-shared"}
            else:
                spec["train"] = spec["train"] | {"seed": seed}
            tags = {"rlreg.study": name, "rlreg.arm": arm, "rlreg.seed": str(seed),
                    "rlreg.cell": f"{arm}/seed={seed}", "rlreg.grid": "{}"}
            rows = entries(seed * 100 + i, prompts, repeats, skill + random.Random(seed * 7 + i).gauss(0, 0.02))
            run = write_spec_run(client, spec, seed=seed * 10 + i, steps=steps, repeats=repeats,
                                 start_time=now - 100_000 + (i * len(seeds) + j) * 1000, tags=tags, entries=rows,
                                 stages=stages, cache_keys=keys)
            out.setdefault(arm, []).append(run)
    return out
