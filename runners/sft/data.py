"""SFT examples: the convert stage's rows as (token ids, assistant mask), and step-indexed batches.

The batch for an optimizer step is a pure function of (seed, step), so a resumed run sees exactly
the batches the crashed run would have seen, without saving a data-loader state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from registry.errors import InputDataError
from runners.modeling import iter_parquet_records, render_conversation


@dataclass
class Example:
    input_ids: list[int]
    loss_mask: list[int]
    prompt: list[dict]
    tools: list[dict] | None
    ground_truth: str


def load_examples(parquet: Path, tokenizer: Any, *, max_length: int, train_on: str,
                  truncation: str = "delete") -> tuple[list[Example], int]:
    """Every row of ``parquet`` as a conversation = prompt + the ground-truth assistant turn, and
    the number of rows skipped. Over ``max_length`` tokens a row is skipped (``delete``, the
    default: a truncated answer would teach the model never to close its tool call) or cut at
    the start (``left``) or end (``right``); a cut row with no assistant token left is skipped."""
    examples, skipped = [], 0
    for record in iter_parquet_records(parquet):
        messages = record["messages"] + [{"role": "assistant", "content": record["ground_truth"]}]
        ids, mask = render_conversation(tokenizer, messages, record["tools"], train_on=train_on)
        if len(ids) > max_length:
            if truncation == "delete":
                skipped += 1
                continue
            cut = slice(len(ids) - max_length, None) if truncation == "left" else slice(0, max_length)
            ids, mask = ids[cut], mask[cut]
            if not any(mask):
                skipped += 1
                continue
        examples.append(Example(ids, mask, record["messages"], record["tools"], record["ground_truth"]))
    if not examples:
        raise InputDataError(
            f"{parquet}: all {skipped} rows are longer than sft.max_length={max_length} tokens "
            "(raise sft.max_length or set sft.truncation)"
        )
    return examples, skipped


class BatchPlan:
    """Example indices of every optimizer step, a pure function of (seed, step).

    Each epoch is a seeded permutation; with ``group_by_length`` every run of ``8 x batch_size``
    examples is sorted by length before it is cut into micro-batches, so a micro-batch holds
    similar lengths and little padding (the tiny model's cost is its padded token count)."""

    GROUP_BATCHES = 8

    def __init__(self, lengths: list[int], *, seed: int, batch_size: int, micro_batches: int, group_by_length: bool):
        self.lengths, self.seed = lengths, seed
        self.batch_size, self.micro_batches = batch_size, micro_batches
        self.group = batch_size * self.GROUP_BATCHES if group_by_length else 1
        self._orders: dict[int, list[int]] = {}

    def step(self, step: int) -> list[list[int]]:
        """Micro-batches of optimizer step ``step`` (0-based), wrapping into the next epoch."""
        n, per_step = len(self.lengths), self.micro_batches * self.batch_size
        start = step * per_step
        flat: list[int] = []
        while len(flat) < per_step:
            epoch, offset = divmod(start + len(flat), n)
            flat.extend(self._order(epoch)[offset : offset + per_step - len(flat)])
        return [flat[i * self.batch_size : (i + 1) * self.batch_size] for i in range(self.micro_batches)]

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
            if self.group > 1:
                chunks = [order[i : i + self.group] for i in range(0, len(order), self.group)]
                order = [j for chunk in chunks for j in sorted(chunk, key=lambda k: -self.lengths[k])]
            self._orders = {epoch: order}  # steps move forward: keep one epoch in memory
        return self._orders[epoch]


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside assistant turns)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        attention[row, :n] = 1
        labels[row, :n] = torch.where(torch.tensor(e.loss_mask, dtype=torch.bool), ids[row, :n], -100)
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}
