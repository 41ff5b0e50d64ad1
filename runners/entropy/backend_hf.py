"""The builtin backend: a transformers model, exact full-vocabulary entropy (CPU or CUDA)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from runners.entropy.decoding import Generation, HFStepModel, StepModel, decode_batch

END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")


class TransformersBackend:
    """Renders conversations with the tokenizer's chat template and decodes with ``decode_batch``.

    ``step_model`` defaults to the HF model with a KV cache; tests may pass a scripted one."""

    estimator = "exact_full_vocab"

    def __init__(self, model: Any, tokenizer: Any, *, k: int, temperature: float, greedy: bool = False,
                 seed: int = 0, step_model: StepModel | None = None):
        self.tokenizer = tokenizer
        self.k, self.temperature, self.greedy = k, temperature, greedy
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.step_model = step_model or HFStepModel(model, pad_id)
        self.end_ids = end_token_ids(tokenizer, model)
        device = getattr(self.step_model, "device", torch.device("cpu"))
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def render(self, messages: Sequence[dict], tools: Any) -> str:
        return render_chat(self.tokenizer, messages, tools)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def generate(self, prompts: Sequence[list[int]], max_new_tokens: Sequence[int]) -> list[Generation]:
        return decode_batch(
            self.step_model, prompts, max_new_tokens=max_new_tokens, decode=self.decode,
            end_ids=self.end_ids, k=self.k, temperature=self.temperature, greedy=self.greedy,
            generator=self.generator,
        )

    def close(self) -> None:
        self.step_model = None  # type: ignore[assignment]


def render_chat(tokenizer: Any, messages: Sequence[dict], tools: Any) -> str:
    """The prompt for the next assistant turn; a clear error when the tokenizer has no chat template."""
    from registry.errors import InputDataError
    from runners.modeling import render_prompt

    if not getattr(tokenizer, "chat_template", None):
        where = getattr(tokenizer, "name_or_path", "the model's tokenizer")
        raise InputDataError(f"{where}: the tokenizer has no chat template, so tool conversations cannot be "
                             "rendered (use an instruct/chat model, or add `chat_template` to tokenizer_config.json)")
    return render_prompt(tokenizer, messages, tools)


def end_token_ids(tokenizer: Any, model: Any = None) -> set[int]:
    """Token ids that end an assistant turn: eos, the generation config's eos ids, and chat
    end markers (``<|im_end|>``) present in the vocabulary."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if gen_eos is not None:
        ids.update(int(i) for i in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_TOKENS if t in vocab)
    return ids


def load_transformers_backend(path: str, *, dtype: str, device: str, k: int, temperature: float,
                              greedy: bool, seed: int) -> TransformersBackend:
    from runners.modeling import load_model

    model, tokenizer = load_model(path, dtype, device)
    model.eval()
    return TransformersBackend(model, tokenizer, k=k, temperature=temperature, greedy=greedy, seed=seed)
