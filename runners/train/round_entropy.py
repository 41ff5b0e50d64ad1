"""Per training step: the entropy of the first ``entropy_k`` model tokens of each round of a
multi-turn rollout (round 0 = before any tool answer, round r ≥ 1 = right after the r-th), as the
user's ARPO fork recorded it during RL rollouts (seed 001's ``entropy_step_N.json``).

The values come from the old-policy forward pass the step computes anyway (``forward.token_stats``:
logits ÷ ``rollout.temperature``, float32, full vocabulary) and are divided by log V, V = the
logits' width — the entropy stage's convention (``runners.common.entropy.normalized_entropy``).
Tool tokens are never counted: a round's model tokens are contiguous and start at
``TurnInfo.round_starts[r]``.

File: ``entropy_step_<N>.json`` = ``[{"sample_idx", "round", "entropy", "is_after_tool_call",
"step", "k_used", "num_tokens", "uid"}]`` — the seed's four fields first; ``sample_idx`` is the row
of the step's trained batch, ``uid`` its GRPO group (the prompt's parquet row; with dynamic
sampling the kept groups are renumbered 0, 1, …). A round the budget
cut to 0 tokens has no record. Metrics: ``rollout/entropy_after_tool/round_<r>`` (mean over rows).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

METRIC_PREFIX = "rollout/entropy_after_tool/round_"


def round_records(entropy: torch.Tensor, turns: Sequence[Any], k: int, vocab_size: int, step: int,
                  uids: Sequence[Any] | None = None) -> list[dict]:
    """Records from ``entropy`` [N, R] (nats, per response position) and each row's ``TurnInfo``."""
    log_v = math.log(vocab_size)
    records = []
    for i, info in enumerate(turns):
        for r, (start, length) in enumerate(zip(info.round_starts, info.round_lengths)):
            used = min(k, length)
            if used == 0:
                continue
            value = float(entropy[i, start : start + used].double().mean()) / log_v
            rec = {"sample_idx": i, "round": r, "entropy": value, "is_after_tool_call": r > 0, "step": step,
                   "k_used": used, "num_tokens": length}
            if uids is not None:
                rec["uid"] = int(uids[i]) if isinstance(uids[i], int) else str(uids[i])
            records.append(rec)
    return records


def round_metrics(records: Sequence[dict]) -> dict[str, float]:
    by_round: dict[int, list[float]] = defaultdict(list)
    for rec in records:
        by_round[rec["round"]].append(rec["entropy"])
    return {f"{METRIC_PREFIX}{r}": sum(v) / len(v) for r, v in sorted(by_round.items())}


def record_step(entropy: torch.Tensor, batch: Any, *, k: int, vocab_size: int, step: int, directory: Path) -> dict[str, float]:
    """The step's records → ``directory/entropy_step_<step>.json``; returns the round entropies and
    the tool-round counts as metrics (``_train_step``'s ``on_entropy`` hook)."""
    from runners.train.multi_turn import turn_metrics

    records = round_records(entropy, batch.turns, k, vocab_size, step, batch.group_ids)
    write_step_file(directory, step, records)
    return {**round_metrics(records), **turn_metrics(batch.turns)}


def write_step_file(directory: Path, step: int, records: Sequence[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"entropy_step_{step}.json"
    path.write_text(json.dumps(list(records), indent=1))
    return path
