"""Builtin GRPO vs TRL's GRPOTrainer: throughput on the same tiny model, data and settings.

    .venv/bin/python benchmarks/bench_grpo_vs_trl.py [--steps 6] [--trl-python .venv-trl/bin/python]

TRL lives in its own venv (``python -m venv .venv-trl``; ``.venv-trl/bin/pip install
/opt/wheels/torch-2.13.0+cpu-*.whl trl transformers==<the project's>``); without it only the
builtin side runs. Both sides get: the demo's tiny Qwen2 (width 128, 2 layers, BPE vocab 800,
untrained, so every response runs to the length cap and both generate exactly the same number of
tokens), the demo's synthetic tool-calling prompts rendered with the same chat template, 8 prompts
× n=4 per step, one optimizer step per step, max 64 new tokens, temperature 1, no top-k, lr 1e-4,
KL (k3 / low_var_kl) β=0.001 against a frozen reference, clip 0.2/0.28, token-mean loss, one
thread. Measured per step after the first (warm-up): wall and CPU seconds, generated tokens/s.

Known difference kept on purpose: with one PPO epoch TRL skips the "old log-prob" forward pass
(it reuses the detached current log-probs), the builtin trainer runs it as verl does (and gets the
per-token entropy from it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS, N, MAX_NEW, LR = 8, 4, 64, 1e-4


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """The demo's data and model: (train parquet, model dir, prompts.jsonl of rendered text)."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from registry.spec.model import TinyModelSpec
    from runners.modeling import (
        build_tiny_model,
        load_model,
        render_prompt,
        render_record_text,
    )
    from runners.synth_data import generate_records

    records = list(generate_records(64, seed=0))
    rows = [{"data_source": "synthetic", "prompt": r["messages"][:-1], "ability": "function_call",
             "reward_model": {"style": "rule", "ground_truth": r["messages"][-1]["content"]},
             "extra_info": {"split": "train", "index": i, "tools": json.dumps(r.get("tools") or [])}}
            for i, r in enumerate(records)]
    parquet = work / "train.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    texts = [render_record_text({"messages": r["messages"][:-1], "ground_truth": r["messages"][-1]["content"],
                                 "tools": r.get("tools")}) for r in records]
    model_dir = build_tiny_model(TinyModelSpec(), texts, work / "model")
    _, tok = load_model(model_dir, "float32", "cpu")
    jsonl = work / "prompts.jsonl"
    with jsonl.open("w") as fh:
        for r in records:
            fh.write(json.dumps({"prompt": render_prompt(tok, r["messages"][:-1], r.get("tools")),
                                 "ground_truth": r["messages"][-1]["content"]}) + "\n")
    return parquet, model_dir, jsonl


def run_builtin(parquet: Path, model_dir: Path, steps: int, work: Path) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from registry.context import StageContext
    from registry.spec import Spec
    from registry.tracking import NullTracker
    from runners.train import run

    spec = Spec.model_validate({
        "name": "bench", "data": {"synthetic": {"num_records": 64}}, "model": {"tiny": {}, "device": "cpu"},
        "reward": {"function": "think_tool_call"},
        "train": {"algorithm": {"adv_estimator": "grpo", "kl_loss_coef": 0.001, "clip_ratio_low": 0.2,
                                "clip_ratio_high": 0.28},
                  "rollout": {"n": N, "max_response_length": MAX_NEW, "max_prompt_length": 2048},
                  "optimizer": {"lr": LR}, "train_batch_size": PROMPTS, "ppo_mini_batch_size": PROMPTS,
                  "total_training_steps": steps, "save_freq": -1, "test_freq": -1},
    })
    tracker = NullTracker()
    (work / "out").mkdir()
    (work / "wd").mkdir()
    ctx = StageContext(stage="train", spec=spec, out_dir=work / "out", work_dir=work / "wd",
                       inputs={"convert.train": parquet, "sft.model": model_dir}, tracker=tracker, project_root=ROOT)
    import time

    # CPU time per step: the loop's own timings are wall-clock, so sample process_time around steps
    # through the tracker (one log_metrics call per step).
    marks = [time.process_time()]
    original = tracker.log_metrics

    def log_metrics(metrics, step=None):
        marks.append(time.process_time())
        original(metrics, step)

    tracker.log_metrics = log_metrics
    run(spec.train, ctx)
    per_step: dict[int, dict] = {}
    for key, value, step in tracker.metrics:
        per_step.setdefault(step, {})[key] = value
    out = []
    for i, step in enumerate(sorted(per_step)):
        m = per_step[step]
        tokens = m["response_length/mean"] * PROMPTS * N
        out.append({"step": step, "wall_s": m["timing_s/step"], "cpu_s": marks[i + 1] - marks[i], "gen_tokens": tokens})
    return out


TRL_SCRIPT = r'''
import json, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, ROOT)
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer
import runners.reward as reward_module

rows = [json.loads(l) for l in open(JSONL)]
ds = Dataset.from_list(rows)
score = reward_module.REWARD_FUNCTIONS["think_tool_call"]

def reward(completions, ground_truth, **kw):
    return [score(c, g) for c, g in zip(completions, ground_truth)]

tok = AutoTokenizer.from_pretrained(MODEL)
tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
args = GRPOConfig(
    output_dir=OUT, per_device_train_batch_size=PROMPTS * N, num_generations=N, gradient_accumulation_steps=1,
    max_completion_length=MAX_NEW, temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR, lr_scheduler_type="constant",
    warmup_steps=0, weight_decay=0.01, max_grad_norm=1.0, beta=0.001, epsilon=0.2, epsilon_high=0.28,
    num_iterations=1, loss_type="bnpo", max_steps=STEPS, logging_steps=1, report_to="none", save_strategy="no",
    use_cpu=True, bf16=False, seed=42, shuffle_dataset=True, dataloader_num_workers=0,
)
marks = []
class Clock(TrainerCallback):
    def on_step_begin(self, a, s, c, **k):
        marks.append(("begin", time.perf_counter(), time.process_time()))
    def on_step_end(self, a, s, c, **k):
        marks.append(("end", time.perf_counter(), time.process_time()))
trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=tok, callbacks=[Clock()])
trainer.train()
logs = [l for l in trainer.state.log_history if "completions/mean_length" in l]
begins = [m for m in marks if m[0] == "begin"]
ends = [m for m in marks if m[0] == "end"]
out = []
for i, (b, e) in enumerate(zip(begins, ends)):
    length = logs[i]["completions/mean_length"] if i < len(logs) else float("nan")
    out.append({"step": i + 1, "wall_s": e[1] - b[1], "cpu_s": e[2] - b[2], "gen_tokens": length * PROMPTS * N})
print("RESULT " + json.dumps(out))
'''


def run_trl(python: str, model_dir: Path, jsonl: Path, steps: int, work: Path) -> list[dict] | None:
    header = (f"ROOT={str(ROOT)!r}; JSONL={str(jsonl)!r}; MODEL={str(model_dir)!r}; OUT={str(work / 'trl')!r}; "
              f"PROMPTS={PROMPTS}; N={N}; MAX_NEW={MAX_NEW}; LR={LR}; STEPS={steps}\n")
    proc = subprocess.run([python, "-c", header + TRL_SCRIPT], check=False, capture_output=True, text=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"})
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        print(proc.stderr[-3000:], file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def summary(name: str, steps: list[dict]) -> str:
    timed = steps[1:] or steps  # the first step pays one-off costs (allocations, lazy imports)
    wall = statistics.median(s["wall_s"] for s in timed)
    cpu = statistics.median(s["cpu_s"] for s in timed)
    tokens = statistics.median(s["gen_tokens"] for s in timed)
    return f"| {name} | {len(timed)} | {tokens:.0f} | {wall:.2f} | {cpu:.2f} | {tokens / wall:.0f} | {tokens / cpu:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--trl-python", default=str(ROOT / ".venv-trl" / "bin" / "python"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        work = Path(tmp)
        parquet, model_dir, jsonl = prepare(work)
        builtin = run_builtin(parquet, model_dir, args.steps, work)
        trl = run_trl(args.trl_python, model_dir, jsonl, args.steps, work) if Path(args.trl_python).exists() else None
    print("| trainer | steps timed | gen tokens/step | wall s/step | CPU s/step | tokens/wall-s | tokens/CPU-s |")
    print("|---|---|---|---|---|---|---|")
    print(summary("builtin GRPO", builtin))
    print(summary("TRL GRPOTrainer", trl) if trl else "| TRL GRPOTrainer | not run (no .venv-trl) | | | | | |")
    print(json.dumps({"builtin": builtin, "trl": trl}))


if __name__ == "__main__":
    main()
