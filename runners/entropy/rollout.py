"""Multi-turn tool rollouts with per-round entropy bookkeeping.

Round 0 is the model's first generation (before any tool call). When a round ends in a tool call
(the ``</tool_call>`` stop string), the call is answered (``ToolAnswerer``), the assistant text and
the tool turn(s) are appended to the conversation, and round r + 1 is generated from the whole
conversation. A conversation ends at an end token, when its token budget
(``max_response_length``) is spent, or after the model has read ``max_rounds`` tool answers.

Each round records the mean normalised entropy of its first ``k`` generated tokens, plus the tool
call it read (name, whether it parsed, where the answer came from).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from runners.common.tools import ToolAnswer, ToolAnswerer
from runners.entropy.conversations import Conversation
from runners.entropy.decoding import Generation

TOOL_RESPONSE = "<tool_response>\n{}\n</tool_response>"


class Backend(Protocol):
    estimator: str

    def render(self, messages: Sequence[dict], tools: Any) -> str: ...

    def encode(self, text: str) -> list[int]: ...

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[Generation]: ...


@dataclass
class RoundRecord:
    """One row of ``entropy_data.json`` (the seed's four fields first)."""

    sample_idx: int
    round: int
    entropy: float
    is_after_tool_call: bool
    tool_name: str | None = None
    """The tool whose answer this round reads (round ≥ 1); comma-joined when several."""
    parsed: bool | None = None
    """Whether that call parsed; None in round 0."""
    tool_source: str | None = None
    """``replay``, ``tools_config`` or ``error`` (several comma-joined)."""
    num_tokens: int = 0
    k_used: int = 0
    """Tokens averaged: min(k, tokens generated in the round)."""
    finish: str = ""
    """How the round ended: ``tool_call``, ``end`` or ``length``."""
    model: str = ""
    topk_mass: float | None = None
    """vLLM backend: mean probability mass its top-k logprobs covered over the k tokens."""
    record_type: str = ""
    """The conversation's kind (``Conversation.record_type``: with_tool_turn, single_call, …)."""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ConversationResult:
    conv: Conversation
    prompt_text: str
    messages: list[dict] = field(default_factory=list)
    """Turns generated after the prompt: assistant texts and tool answers."""
    response: str = ""
    """Assistant text and tool answers, concatenated in order (the seed's ``response``)."""
    rounds: list[RoundRecord] = field(default_factory=list)
    tokens_left: int = 0
    done: bool = False
    finish: str = ""

    def response_json(self, model: str) -> dict:
        return {"prompt": self.prompt_text, "response": self.response, "sample_idx": self.conv.sample_idx,
                "model": model, "num_rounds": len(self.rounds) - 1 if self.rounds else 0,
                "finish": self.finish, "messages": self.messages}


@dataclass
class RolloutStats:
    conversations: int = 0
    skipped_long_prompts: int = 0
    rounds: int = 0
    tool_calls: int = 0
    malformed_calls: int = 0
    tool_errors: int = 0
    replayed: int = 0
    executed: int = 0
    generated_tokens: int = 0


def rollout(
    conversations: Sequence[Conversation],
    backend: Backend,
    answerer: ToolAnswerer,
    *,
    max_rounds: int,
    max_prompt_length: int,
    max_response_length: int,
    batch_size: int,
    model: str = "",
    progress: Any = None,
) -> tuple[list[ConversationResult], RolloutStats]:
    """Roll out every conversation; returns the finished results (in input order) and counts."""
    stats = RolloutStats()
    results: list[ConversationResult] = []
    for start in range(0, len(conversations), batch_size):
        batch = []
        for conv in conversations[start : start + batch_size]:
            text = backend.render(conv.prompt, conv.tools)
            if len(backend.encode(text)) > max_prompt_length:
                stats.skipped_long_prompts += 1
                continue
            batch.append(ConversationResult(conv, text, tokens_left=max_response_length))
        _rollout_batch(batch, backend, answerer, max_rounds, model, stats)
        results.extend(batch)
        if progress is not None:
            progress(len(results) + stats.skipped_long_prompts, len(conversations))
    stats.conversations = len(results)
    return results, stats


def _rollout_batch(batch: list[ConversationResult], backend: Backend, answerer: ToolAnswerer,
                   max_rounds: int, model: str, stats: RolloutStats) -> None:
    pending_answers: dict[int, list[ToolAnswer]] = {}
    round_idx = 0
    while True:
        live = [i for i, r in enumerate(batch) if not r.done]
        if not live:
            return
        prompts = [backend.encode(backend.render(batch[i].conv.prompt + batch[i].messages, batch[i].conv.tools))
                   for i in live]
        gens = backend.generate(prompts, [batch[i].tokens_left for i in live])
        for i, gen in zip(live, gens):
            res = batch[i]
            answered = pending_answers.pop(i, None)
            res.rounds.append(_round_record(res.conv.sample_idx, round_idx, gen, answered, model))
            res.rounds[-1].record_type = res.conv.record_type
            res.tokens_left -= len(gen.token_ids)
            res.messages.append({"role": "assistant", "content": gen.text})
            res.response += gen.text
            stats.rounds += 1
            stats.generated_tokens += len(gen.token_ids)
            if gen.finish != "tool_call":
                res.done, res.finish = True, gen.finish
                continue
            stats.tool_calls += 1
            if round_idx >= max_rounds:  # the model asked for one tool answer more than allowed
                res.done, res.finish = True, "max_rounds"
                continue
            answers = answerer.answer(res.conv, round_idx + 1, gen.text)
            for a in answers:
                stats.malformed_calls += not a.parsed
                stats.tool_errors += a.source == "error"
                stats.replayed += a.source == "replay"
                stats.executed += a.source == "tools_config"
                res.messages.append({"role": "tool", "content": a.content})
                res.response += "\n" + TOOL_RESPONSE.format(a.content) + "\n"
            if res.tokens_left <= 0:  # answered, but no budget left to read it
                res.done, res.finish = True, "length"
                continue
            pending_answers[i] = answers
        round_idx += 1


def _round_record(sample_idx: int, round_idx: int, gen: Generation, answered: list[ToolAnswer] | None,
                  model: str) -> RoundRecord:
    entropy = statistics.fmean(gen.entropies) if gen.entropies else float("nan")
    rec = RoundRecord(sample_idx=sample_idx, round=round_idx, entropy=entropy, is_after_tool_call=round_idx > 0,
                      num_tokens=len(gen.token_ids), k_used=len(gen.entropies), finish=gen.finish, model=model)
    if gen.topk_mass:
        rec.topk_mass = statistics.fmean(gen.topk_mass)
    if answered:
        names = [a.tool_name for a in answered]
        rec.tool_name = None if not any(names) else ",".join(n or "?" for n in names)
        rec.parsed = all(a.parsed for a in answered)
        rec.tool_source = ",".join(a.source for a in answered)
    return rec
