"""A task a tiny model learns by RL in seconds, for the train-stage tests.

Every prompt asks for a tool; the ground truth is always ``get_weather``. A short supervised warm
start teaches the model the think + tool-call format with the tool chosen uniformly among four
names, so before RL the strict ``think_tool_call`` reward is ≈ 0.25 and RL can lift it towards 1
by making the model pick the rewarded tool. Real parquet (verl columns), real tokenizer and model,
real reward function.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

TOOLS = ["get_weather", "get_time", "send_email", "book_flight"]
TARGET = "get_weather"
N_PROMPTS = 16


def answer(tool: str) -> str:
    call = json.dumps({"name": tool, "arguments": {}})
    return f"<think>pick a tool</think>\n\n<tool_call>{call}</tool_call>"


def prompts() -> list[list[dict]]:
    return [[{"role": "user", "content": f"task {i}: call a tool"}] for i in range(N_PROMPTS)]


def write_parquet(path: Path) -> Path:
    rows = [
        {
            "data_source": "test", "prompt": p, "ability": "function_call",
            "reward_model": {"style": "rule", "ground_truth": answer(TARGET)},
            "extra_info": {"split": "train", "index": i, "tools": "[]"},
        }
        for i, p in enumerate(prompts())
    ]
    pd.DataFrame(rows).to_parquet(path)
    return path


def build_warm_model(out_dir: Path, sft_steps: int = 60) -> Path:
    """A tiny Qwen2 whose tokenizer is trained on the task, then supervised on the four answers."""
    from registry.spec.model import TinyModelSpec
    from runners.modeling import (
        build_tiny_model,
        load_model,
        render_prompt,
        render_record_text,
    )

    texts = [
        render_record_text({"messages": p, "ground_truth": answer(t), "tools": None}) for p in prompts() for t in TOOLS
    ]
    base = build_tiny_model(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=2, vocab_size=600), texts, out_dir / "base")
    model, tok = load_model(base, "float32", "cpu")
    examples = []
    for p in prompts():
        prompt_ids = tok(render_prompt(tok, p), add_special_tokens=False)["input_ids"]
        for t in TOOLS:
            resp = tok(answer(t), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            examples.append((prompt_ids, resp))
    width = max(len(a) + len(b) for a, b in examples)
    ids = torch.full((len(examples), width), tok.pad_token_id)
    labels = torch.full((len(examples), width), -100)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (a, b) in enumerate(examples):
        seq = a + b
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(a) : len(seq)] = torch.tensor(b)
        attn[i, : len(seq)] = 1
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(sft_steps):
        pick = torch.randint(0, len(examples), (32,), generator=gen)
        loss = model(input_ids=ids[pick], attention_mask=attn[pick], labels=labels[pick]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = out_dir / "warm"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_spec(adv_estimator: str = "grpo", **train_overrides) -> dict:
    algorithm = {"adv_estimator": adv_estimator, "kl_loss_coef": 0.001}
    algorithm.update(train_overrides.pop("algorithm", {}))
    train = {
        "algorithm": algorithm,
        "rollout": {"n": 8, "temperature": 1.0, "max_prompt_length": 64, "max_response_length": 28},
        "optimizer": {"lr": 2e-3},
        "train_batch_size": 4,
        "ppo_mini_batch_size": 2,
        "total_training_steps": 8,
        "save_freq": -1,
        "test_freq": -1,
        **train_overrides,
    }
    return {
        "data": {"synthetic": {"num_records": 16}},
        "model": {"tiny": {}, "device": "cpu"},
        "reward": {"function": "think_tool_call"},
        "train": train,
    }


def cached_task(tmp_path_factory) -> tuple[Path, Path]:
    """(train parquet, warm model dir), built once per test session and shared by test modules."""
    root = tmp_path_factory.getbasetemp() / "train-task"
    if not (root / "warm" / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        build_warm_model(root)
    return write_parquet(root / "train.parquet"), root / "warm"


def sampled_reward(model_dir: Path, samples: int = 64, seed: int = 0) -> float:
    """Mean think_tool_call reward of ``samples`` sampled answers (temperature 1), seeded."""
    from runners.modeling import load_model, render_prompt
    from runners.reward import REWARD_FUNCTIONS

    model, tok = load_model(model_dir, "float32", "cpu")
    chats = (prompts() * samples)[:samples]
    batch = tok([render_prompt(tok, p) for p in chats], return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=28,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    texts = tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    reward = REWARD_FUNCTIONS["think_tool_call"]
    return sum(reward(t, answer(TARGET)) for t in texts) / len(texts)
