"""Scripted stand-ins for the entropy stage's model: a backend whose answers and entropies are
fixed per (conversation, round), and a step model with known logits. Shared by the
tests/test_entropy_*.py files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import torch

from runners.entropy.decoding import Generation


class ScriptedBackend:
    """``script(messages) -> (text, entropies, finish)``. ``render`` is the messages as JSON and
    ``encode`` its UTF-8 bytes, so ``generate`` recovers the conversation from the prompt ids."""

    estimator = "scripted"

    def __init__(self, script: Callable[[list[dict]], tuple[str, list[float], str]]):
        self.script = script
        self.calls: list[list[dict]] = []
        self.budgets: list[int] = []

    def render(self, messages: Sequence[dict], tools) -> str:
        return json.dumps(list(messages))

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def generate(self, prompts, max_new_tokens):
        out = []
        for ids, budget in zip(prompts, max_new_tokens):
            messages = json.loads(bytes(ids).decode())
            self.calls.append(messages)
            self.budgets.append(budget)
            text, ents, finish = self.script(messages)
            words = max(1, len(text.split()))  # one "token" per word
            if words > budget:  # cut by the budget, like a real decoder
                text, finish = " ".join(text.split()[:budget]), "length"
            out.append(Generation(text, list(range(min(words, budget))), list(ents), finish))
        return out


VOCAB = ["<end>", "</tool_call>", "<tool_call>", " ", "{", "}", '"', ":", "x", "y", "z", "name", "a", "b"]


def vocab_decode(ids: list[int]) -> str:
    return "".join(VOCAB[i] for i in ids)


class ScriptedStepModel:
    """Row i emits ``targets[i]`` one token per step; the logits put ``strengths[i][t]`` on the
    target and 0 elsewhere, so the entropy of step t is known in closed form."""

    def __init__(self, targets: list[list[int]], strengths: list[list[float]], vocab_size: int = len(VOCAB)):
        self.targets, self.strengths, self.vocab_size = targets, strengths, vocab_size
        self.t = 0
        self.prefill_prompts = None

    def _logits(self) -> torch.Tensor:
        logits = torch.zeros(len(self.targets), self.vocab_size)
        for i, (tg, st) in enumerate(zip(self.targets, self.strengths)):
            j = min(self.t, len(tg) - 1)
            logits[i, tg[j]] = st[j]
        return logits

    def prefill(self, prompts):
        self.prefill_prompts = [list(p) for p in prompts]
        self.t = 0
        return self._logits()

    def step(self, tokens):
        self.t += 1
        return self._logits()
