"""Scripted multi-turn trajectories on a real tiny model, for the multi-turn rollout tests.

``ForcedModel`` wraps a transformers model: its ``generate`` is the real one (padding, KV cache,
end tokens, sampling) with every new token forced to a script, chosen per row by the task named in
the prompt and per round by the tool responses already in the context.
"""

from __future__ import annotations

import json

import torch

LOOKUP = json.dumps({"name": "lookup", "arguments": {"key": "k1"}})
ROUND0 = f"<think>find it</think>\n<tool_call>{LOOKUP}</tool_call>"
ROUND1 = "<think>now answer</think>\nvalue is v1"


def lookup(key: str) -> str:
    return f"value-of-{key}"


class ForcedModel:
    """``scripts[task] = [round 0 text, round 1 text, …]``; a row whose script is over emits eos."""

    def __init__(self, model, tokenizer, scripts: dict[str, list[str]]):
        self.model, self.tokenizer = model, tokenizer
        self.generation_config, self.config = model.generation_config, model.config
        self.scripts = {k: [tokenizer.encode(t, add_special_tokens=False) for t in v] for k, v in scripts.items()}
        self.training = False
        self.calls = 0

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls += 1
        width = input_ids.shape[1]
        eos = self.tokenizer.convert_tokens_to_ids("<|im_end|>")

        def allowed(batch_id, ids):
            text = self.tokenizer.decode(ids[:width])
            task = next(k for k in self.scripts if k in text)
            rounds = self.scripts[task]
            r = text.count("<tool_response>")
            t = ids.shape[0] - width
            script = rounds[r] + [eos] if r < len(rounds) else [eos]
            return [script[t] if t < len(script) else eos]

        return self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                   prefix_allowed_tokens_fn=allowed, **kwargs)


def prompt(tokenizer, uid: int, task: str, extra_turns: list | None = None):
    from runners.modeling import render_prompt
    from runners.train.multi_turn import split_prompt
    from runners.train.prompts import Prompt

    messages = [{"role": "user", "content": f"{task}: look up k1"}, *(extra_turns or [])]
    ids = tokenizer(render_prompt(tokenizer, split_prompt(messages)[0]), add_special_tokens=False)["input_ids"]
    return Prompt(uid, ids, "v1", messages, None)


def tokens(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def first(seq: torch.Tensor) -> list[int]:
    return [int(x) for x in seq]
