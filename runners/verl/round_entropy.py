"""Per training step on verl: the entropy of the first ``k`` model tokens of each round of a
multi-turn rollout (round 0 = before any tool answer, round r = right after the r-th), normalised
by log V — what verl does not record (docs/verl.md, "Multi-turn rollouts").

verl's response is ``assistant turn | tool turn | assistant turn | … | padding`` with
``response_mask`` 1 on the model's tokens only, so a round is a maximal run of mask-1 tokens: run 0
is round 0, run r follows the r-th tool answer. The entropy is the old-log-prob pass's per-token
``entropy`` (the pre-update policy at the rollout temperature), which the EGPO plugin's driver
patch reads anyway. Same schema, file name, metric names as the builtin trainer's
``runners/train/round_entropy.py`` (kept separate: runners do not import each other; the file
format is the contract): ``entropy_step_<N>.json`` = ``[{"sample_idx", "round", "entropy",
"is_after_tool_call", "step", "k_used", "num_tokens", "uid"}]``; metrics
``rollout/entropy_after_tool/round_<r>`` (mean over the step's responses).

Standard library + torch only: it runs inside verl's driver.
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


def mask_rounds(mask_row: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, length)`` of each maximal run of 1s in a response mask row, in order."""
    valid = mask_row.to(torch.int8).flatten()
    edges = torch.diff(valid, prepend=torch.zeros(1, dtype=torch.int8), append=torch.zeros(1, dtype=torch.int8))
    starts = (edges == 1).nonzero().flatten().tolist()
    ends = (edges == -1).nonzero().flatten().tolist()
    return [(s, e - s) for s, e in zip(starts, ends)]


def round_records(entropy: torch.Tensor, response_mask: torch.Tensor, k: int, vocab_size: int, step: int,
                  uids: Sequence[Any] | None = None) -> list[dict]:
    """Records from ``entropy`` [B, T] (nats) over the rounds of ``response_mask`` [B, T]."""
    log_v = math.log(vocab_size)
    records = []
    for i in range(entropy.shape[0]):
        for r, (start, length) in enumerate(mask_rounds(response_mask[i])):
            used = min(k, length)
            value = float(entropy[i, start : start + used].double().mean()) / log_v
            rec = {"sample_idx": i, "round": r, "entropy": value, "is_after_tool_call": r > 0, "step": step,
                   "k_used": used, "num_tokens": length}
            if uids is not None:
                rec["uid"] = uids[i] if isinstance(uids[i], (int, str)) else str(uids[i])
            records.append(rec)
    return records


def round_metrics(records: Sequence[dict]) -> dict[str, float]:
    by_round: dict[int, list[float]] = defaultdict(list)
    for rec in records:
        by_round[rec["round"]].append(rec["entropy"])
    return {f"{METRIC_PREFIX}{r}": sum(v) / len(v) for r, v in sorted(by_round.items())}


def write_step_file(directory: Path, step: int, records: Sequence[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"entropy_step_{step}.json"
    path.write_text(json.dumps(list(records), indent=1))
    return path
