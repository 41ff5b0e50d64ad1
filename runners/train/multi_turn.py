"""Multi-turn, tool-executing rollouts (``train.rollout.multi_turn``; ARPO-style, verl's tool agent loop).

For each prompt × n: generate until ``</tool_call>``, an end token or the token budget; answer the
call(s) (``runners.common.tools.ToolAnswerer``: the record's recorded tool turn, or a tools_config
callable, or an error message); cut the answer to ``max_tool_response_length`` characters on the
configured side (verl 0.9.1's rule and markers); append the tokens the chat template puts between
the end of that assistant turn and the next assistant generation prompt (the assistant turn's
close, the ``tool`` turn(s), the generation prompt); continue, until an answer without a call or
``max_tool_rounds`` tool answers have been read.

The result is a :class:`RolloutBatch` whose response holds model and tool tokens: the attention
mask is 1 on both, the response mask only on the model's (non-contiguous). ``max_response_length``
bounds the whole response, tool tokens included, as verl's ``response_length`` does: a tool answer
that would fill it ends the trajectory (finish ``length``) without being appended.

With multi_turn on, a training row's prompt is cut at its first assistant turn (the entropy
stage's rule); the tool turns the record holds after it are what ``replay`` answers with, round by
round. The reward scores the last assistant turn; ``extra_info`` carries the whole trajectory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from registry.errors import UsageError
from registry.spec.train import MultiTurnSpec
from runners.common.tools import RecordedRound, ToolAnswerer, load_tools_config, recorded_rounds
from runners.train.prompts import Prompt
from runners.train.rollout import RolloutBatch, _eos_ids, left_pad

TOOL_CALL_CLOSE = "</tool_call>"
FIELD = "train.rollout.multi_turn"
_SENTINEL = "RLREG_ASSISTANT_TURN_END_7f3a"
# verl renders a tool turn after a fixed dummy history; any user turn works for the delta
_BASE = [{"role": "user", "content": "I am a user."}]
_TAIL_TOKENS = 16  # tokens decoded to find a multi-token stop string


def truncate_tool_text(text: str, limit: int, side: str) -> str:
    """verl 0.9.1's ``ToolAgentLoop`` rule (characters): ``left`` keeps the end, ``right`` the
    start, ``middle`` both ends, each with verl's ``(truncated)`` marker."""
    if not text or len(text) <= limit:
        return text
    if side == "left":
        return "(truncated)..." + text[-limit:]
    if side == "right":
        return text[:limit] + "...(truncated)"
    half = limit // 2
    return text[:half] + "...(truncated)..." + text[-half:]


def split_prompt(messages: Sequence[dict]) -> tuple[list[dict], list[RecordedRound]]:
    """(the messages before the first assistant turn, the tool rounds recorded after it)."""
    msgs = [dict(m) for m in messages]
    first = next((j for j, m in enumerate(msgs) if m.get("role") == "assistant"), len(msgs))
    return msgs[:first], recorded_rounds(msgs[first:])


def render_cut_prompt(tokenizer: Any, messages: Sequence[dict], tools: Any) -> str:
    """``render_prompt`` of the messages before the first assistant turn (for ``load_prompts``)."""
    from runners.modeling import render_prompt

    return render_prompt(tokenizer, split_prompt(messages)[0], tools)


@dataclass
class TrainConversation:
    """What ``ToolAnswerer`` reads of a training row: its tools and recorded rounds."""

    tools: list[dict] | None
    recorded: list[RecordedRound]

    def recorded_round(self, round_idx: int) -> RecordedRound | None:
        return self.recorded[round_idx - 1] if 1 <= round_idx <= len(self.recorded) else None


def conversation(prompt: Prompt) -> TrainConversation:
    import json

    tools = prompt.tools
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else None
    return TrainConversation([dict(t) for t in tools] if tools else None, split_prompt(prompt.messages)[1])


class ToolTurns:
    """Token ids between an assistant turn that ended in a tool call and the next assistant
    generation prompt, rendered by the tokenizer's own chat template: the text after a sentinel
    assistant content in ``[user, assistant(sentinel), tool…]`` with the generation prompt."""

    def __init__(self, tokenizer: Any):
        if not getattr(tokenizer, "chat_template", None):
            where = getattr(tokenizer, "name_or_path", "the model's tokenizer")
            raise UsageError(f"{FIELD}.enable: {where}: the tokenizer has no chat template, so tool turns cannot be "
                             "rendered (use a chat model, or turn multi_turn off)")
        self.tokenizer = tokenizer
        self.text(["probe"])  # fail now, not mid-training

    def text(self, answers: Sequence[str]) -> str:
        from runners.modeling import render_prompt

        msgs = [*_BASE, {"role": "assistant", "content": _SENTINEL}, *({"role": "tool", "content": a} for a in answers)]
        rendered = render_prompt(self.tokenizer, msgs, None)
        if rendered.count(_SENTINEL) != 1:
            raise UsageError(f"{FIELD}.enable: the chat template does not render assistant content verbatim, so "
                             "the tool turn's tokens cannot be placed after the model's (use a Hermes/Qwen-style template)")
        return rendered.split(_SENTINEL, 1)[1]

    def ids(self, answers: Sequence[str]) -> list[int]:
        return self.tokenizer(self.text(answers), add_special_tokens=False)["input_ids"]


@dataclass
class TurnInfo:
    """Per trajectory: where each round's model tokens sit in the response, and its tool calls."""

    round_starts: list[int] = field(default_factory=list)
    round_lengths: list[int] = field(default_factory=list)
    tool_rounds: int = 0
    """Tool answers appended to the response (each starts a round ≥ 1)."""
    tool_calls: int = 0
    tool_errors: int = 0
    malformed: int = 0
    tool_tokens: int = 0
    finish: str = ""
    """``end`` (an end token), ``length`` (budget), ``max_rounds`` (called a tool after the last allowed one)."""


@dataclass
class _Trajectory:
    prompt: Prompt
    conv: TrainConversation
    response: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    turns: list[dict] = field(default_factory=list)
    info: TurnInfo = field(default_factory=TurnInfo)
    done: bool = False


class MultiTurnRollout:
    """A drop-in for ``generate_rollouts`` (same call) that runs tools between turns."""

    def __init__(self, spec: MultiTurnSpec, tokenizer: Any, answerer: ToolAnswerer):
        self.spec = spec
        self.tokenizer = tokenizer
        self.answerer = answerer
        self.turn_renderer = ToolTurns(tokenizer)
        close = tokenizer.encode(TOOL_CALL_CLOSE, add_special_tokens=False)
        self.stop_id = close[0] if len(close) == 1 else None

    @torch.no_grad()
    def __call__(self, model: Any, tokenizer: Any, prompts: Sequence[Prompt], *, n: int, temperature: float,
                 top_p: float, max_response_length: int, do_sample: bool = True,
                 generation_batch_size: int | None = None, device: torch.device | str = "cpu") -> RolloutBatch:
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos_ids = _eos_ids(model, tokenizer)
        rows = [_Trajectory(p, conversation(p)) for p in prompts for _ in range(n)]
        chunk = generation_batch_size or len(rows)
        was_training = model.training
        model.eval()
        started = time.perf_counter()
        sampling = {"do_sample": do_sample, "temperature": temperature, "top_p": top_p}
        for start in range(0, len(rows), chunk):
            self._roll(model, rows[start : start + chunk], max_response_length, sampling, pad_id, eos_ids, device)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        model.train(was_training)
        return self._batch(rows, pad_id, seconds)

    def _roll(self, model, rows: list[_Trajectory], budget: int, sampling: dict, pad_id: int, eos_ids: set[int],
              device) -> None:
        spec = self.spec
        round_idx = 0
        while True:
            live = [t for t in rows if not t.done]
            if not live:
                return
            contexts = [t.prompt.input_ids + t.response for t in live]
            outs = self._generate(model, contexts, [budget - len(t.response) for t in live], sampling, pad_id,
                                  eos_ids, device)
            for t, (tokens, finish) in zip(live, outs):
                t.info.round_starts.append(len(t.response))
                t.info.round_lengths.append(len(tokens))
                t.response += tokens
                t.mask += [1] * len(tokens)
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                t.turns.append({"role": "assistant", "content": text})
                if finish != "tool_call":
                    t.done, t.info.finish = True, finish
                    continue
                t.info.tool_calls += 1
                if round_idx >= spec.max_tool_rounds:  # one tool call more than allowed
                    t.done, t.info.finish = True, "max_rounds"
                    continue
                answers = self.answerer.answer(t.conv, round_idx + 1, text)
                contents = [truncate_tool_text(a.content, spec.max_tool_response_length,
                                               spec.tool_response_truncate_side) for a in answers]
                tool_ids = self.turn_renderer.ids(contents)
                t.info.tool_errors += sum(a.source == "error" for a in answers)
                t.info.malformed += sum(not a.parsed for a in answers)
                if len(t.response) + len(tool_ids) >= budget:  # verl: no room left to read the answer
                    t.done, t.info.finish = True, "length"
                    continue
                t.response += tool_ids
                t.mask += [0] * len(tool_ids)
                t.turns += [{"role": "tool", "content": c} for c in contents]
                t.info.tool_rounds += 1
                t.info.tool_tokens += len(tool_ids)
            round_idx += 1

    def _generate(self, model, contexts: list[list[int]], budgets: list[int], sampling: dict, pad_id: int,
                  eos_ids: set[int], device) -> list[tuple[list[int], str]]:
        """One round for every live row: (new tokens, finish) cut at the first end token (kept),
        ``</tool_call>`` (kept) or the row's own budget."""
        ids, mask = left_pad(contexts, pad_id)
        stops = set(eos_ids) | ({self.stop_id} if self.stop_id is not None else set())
        kwargs: dict[str, Any] = {}
        if self.stop_id is None:
            kwargs = {"stop_strings": [TOOL_CALL_CLOSE], "tokenizer": self.tokenizer}
        do_sample = sampling["do_sample"]
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=do_sample,
            temperature=sampling["temperature"] if do_sample else None,
            top_p=sampling["top_p"] if do_sample else None,
            top_k=0 if do_sample else None,  # as the single-turn rollout: no HF top_k=50
            max_new_tokens=max(budgets), pad_token_id=pad_id, eos_token_id=sorted(stops), use_cache=True, **kwargs,
        )
        new = out[:, ids.shape[1] :].cpu().tolist()
        return [self._cut(row, limit, eos_ids) for row, limit in zip(new, budgets)]

    def _cut(self, tokens: list[int], limit: int, eos_ids: set[int]) -> tuple[list[int], str]:
        for i, tok in enumerate(tokens[:limit]):
            if tok in eos_ids:
                return tokens[: i + 1], "end"
            if tok == self.stop_id or (self.stop_id is None and TOOL_CALL_CLOSE in self.tokenizer.decode(
                    tokens[max(0, i + 1 - _TAIL_TOKENS) : i + 1], skip_special_tokens=False)):
                return tokens[: i + 1], "tool_call"
        return tokens[:limit], "length"

    def _batch(self, rows: list[_Trajectory], pad_id: int, seconds: float) -> RolloutBatch:
        prompt_ids, prompt_mask = left_pad([t.prompt.input_ids for t in rows], pad_id)
        width = max(1, max(len(t.response) for t in rows))
        responses = torch.full((len(rows), width), pad_id, dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.float)
        response_attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, t in enumerate(rows):
            n = len(t.response)
            responses[i, :n] = torch.tensor(t.response, dtype=torch.long)
            response_mask[i, :n] = torch.tensor(t.mask, dtype=torch.float)
            response_attn[i, :n] = 1
        extra = [{"trajectory": self.tokenizer.decode(t.response, skip_special_tokens=True), "turns": t.turns,
                  "tool_rounds": t.info.tool_rounds, "finish": t.info.finish} for t in rows]
        return RolloutBatch(
            input_ids=torch.cat([prompt_ids, responses], dim=1),
            attention_mask=torch.cat([prompt_mask, response_attn], dim=1),
            response_mask=response_mask,
            prompt_length=prompt_ids.shape[1],
            group_ids=[t.prompt.uid for t in rows],
            ground_truths=[t.prompt.ground_truth for t in rows],
            texts=[next((m["content"] for m in reversed(t.turns) if m["role"] == "assistant"), "") for t in rows],
            truncated=torch.tensor([t.info.finish == "length" for t in rows]),
            prompt_tokens=prompt_mask.sum(-1),
            generate_seconds=seconds,
            extra_infos=extra,
            turns=[t.info for t in rows],
        )


def build(spec: MultiTurnSpec, tokenizer: Any, ctx: Any, prompts: Sequence[Prompt]) -> MultiTurnRollout:
    """The spec's multi-turn rollout, or a clear refusal (``UsageError``, exit 2)."""
    tools = {}
    if spec.tools_config:
        tools = load_tools_config(ctx.resolve_path(spec.tools_config), field=f"{FIELD}.tools_config")
    if spec.tool_source == "replay" and not tools and not any(conversation(p).recorded for p in prompts):
        raise UsageError(
            f"{FIELD}.tool_source: replay: no training row records a tool turn after its first assistant turn and "
            f"no {FIELD}.tools_config is set, so every tool call would be answered with an error "
            "(set tools_config, or train on data whose records hold their tool turns)")
    return MultiTurnRollout(spec, tokenizer, ToolAnswerer(spec.tool_source, tools))


def turn_metrics(turns: Sequence[TurnInfo]) -> dict[str, float]:
    """Per-step tool-round counts (``rollout/…``)."""
    n = max(1, len(turns))
    return {
        "rollout/tool_rounds_mean": sum(t.tool_rounds for t in turns) / n,
        "rollout/tool_rounds_max": float(max((t.tool_rounds for t in turns), default=0)),
        "rollout/tool_calls": float(sum(t.tool_calls for t in turns)),
        "rollout/tool_errors": float(sum(t.tool_errors for t in turns)),
        "rollout/tool_calls_malformed": float(sum(t.malformed for t in turns)),
        "rollout/tool_tokens_mean": sum(t.tool_tokens for t in turns) / n,
        "rollout/finish_max_rounds": sum(t.finish == "max_rounds" for t in turns) / n,
    }
