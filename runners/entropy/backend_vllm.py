"""The optional vLLM backend (GPU): fast multi-turn generation, entropy from top-k logprobs.

vLLM returns only the top ``logprobs`` log-probabilities per position, so the full-vocabulary
entropy cannot be computed exactly. The estimate used here is the top-k partial sum
``-Σ_{i ≤ k} p_i log p_i``: every omitted term is ≥ 0, so it is a **lower bound** of the exact
entropy, tight when the top k tokens carry almost all the mass (the run logs that mass as
``entropy/topk_mass_mean``). The run's params/tags name the estimator
(``vllm_topk_lower_bound``) so it is never mistaken for the builtin exact value.

Temperature: with ``logprobs_mode="processed_logprobs"`` (newer vLLM) the returned logprobs are
already temperature-scaled; older vLLM returns raw logprobs, which are then scaled by 1/τ and
renormalised over the top k (estimator ``vllm_topk_renormalised``; exact only at τ = 1 in the
limit of full mass). Imported lazily: nothing here runs unless ``entropy.backend: vllm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from registry.errors import MissingExtra
from runners.entropy.backend_hf import end_token_ids, render_chat
from runners.entropy.decoding import Generation

STOP = "</tool_call>"


def topk_entropy(logprobs: Sequence[float], temperature: float = 1.0, renormalise: bool = False) -> tuple[float, float]:
    """(entropy in nats, probability mass covered) from the top-k log-probabilities of one position."""
    lps = [lp / temperature for lp in logprobs] if renormalise else list(logprobs)
    if renormalise:
        top = max(lps)
        log_z = top + math.log(sum(math.exp(lp - top) for lp in lps))
        lps = [lp - log_z for lp in lps]
    mass = sum(math.exp(lp) for lp in lps)
    return -sum(math.exp(lp) * lp for lp in lps if lp > -math.inf), mass


class VLLMBackend:
    def __init__(self, path: str, *, dtype: str, k: int, temperature: float, greedy: bool, seed: int,
                 logprobs: int, max_model_len: int | None = None):
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise MissingExtra("vllm (needed by entropy.backend: vllm)", "pip install 'rl-registry[vllm]' on a GPU machine") from exc
        from transformers import AutoTokenizer
        from vllm import LLM

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.k, self.temperature, self.greedy, self.seed, self.logprobs = k, temperature, greedy, seed, logprobs
        kwargs: dict[str, Any] = {"model": path, "dtype": dtype, "seed": seed,
                                  "max_logprobs": max(logprobs, 20), "enable_prefix_caching": True}
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        try:
            self.llm = LLM(**kwargs, logprobs_mode="processed_logprobs")
            self.renormalise = False
            self.estimator = "vllm_topk_lower_bound"
        except TypeError:  # vLLM without logprobs_mode (EngineArgs rejects the keyword): raw logprobs
            self.llm = LLM(**kwargs)
            self.renormalise = temperature != 1.0
            self.estimator = "vllm_topk_renormalised" if self.renormalise else "vllm_topk_lower_bound"
        self.vocab_size = self.llm.llm_engine.model_config.get_vocab_size()
        self.end_ids = end_token_ids(self.tokenizer)

    def render(self, messages: Sequence[dict], tools: Any) -> str:
        return render_chat(self.tokenizer, messages, tools)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        from vllm import SamplingParams

        params = [
            SamplingParams(
                temperature=0.0 if self.greedy else self.temperature, top_p=1.0, top_k=-1, max_tokens=m,
                stop=[STOP], include_stop_str_in_output=True, stop_token_ids=sorted(self.end_ids),
                logprobs=self.logprobs, skip_special_tokens=False,
            )  # no per-request seed: the engine's seed (LLM(seed=…)) makes the whole run reproducible
            for m in max_new_tokens
        ]
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        log_v = math.log(self.vocab_size)
        gens = []
        for out in outs:
            c = out.outputs[0]
            ents, masses = [], []
            for pos in (c.logprobs or [])[: self.k]:
                h, mass = topk_entropy([lp.logprob for lp in pos.values()], self.temperature, self.renormalise)
                ents.append(h / log_v)
                masses.append(mass)
            if c.finish_reason == "stop" and c.stop_reason == STOP:
                finish = "tool_call"
            else:
                finish = "end" if c.finish_reason == "stop" else "length"
            gens.append(Generation(c.text, list(c.token_ids), ents, finish, topk_mass=masses))
        return gens
