"""The q* sampler as a Python API (the seed's ``create_optimal_sampling_model`` / ``model.generate``).

    from runners.generate.sampler import create_optimal_sampling_model

    sampler = create_optimal_sampling_model("path/to/policy", "path/to/teacher", alpha_method="kl_symmetry")
    out = sampler.generate(["What is 2 + 3?"], max_new_tokens=64, temperature=0.8, return_diagnostics=True)
    out.texts            # list[str], one per prompt
    out.alpha            # torch.Tensor [batch, seq]: α per generated token (NaN after a row stopped)
    out.ess_ratio        # torch.Tensor [batch, seq]: ESS_θ / ESS_t per token
    out.diagnostics      # per prompt: alpha_mean/std, ess_ratio_mean/std, kl_theta_mean, … + per-token lists

q*(v) ∝ π_θ(v)^(1−α) · π_t(v)^α per token (α weights π_t; docs/generate.md). The ``generate`` stage
runs the same code (``QStarMixer`` + ``decode``) over a dataset with resume and MLflow tracking; this
module is for notebooks and scripts. One model path is allowed (π_t = π_θ: q* = π_θ, one forward pass).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from runners.generate.decode import decode, sample_generators
from runners.generate.mixer import QStarMixer
from runners.generate.report import sample_summary

ALPHA_METHODS = ("kl_symmetry", "fixed", "entropy")


@dataclass
class QStarOutput:
    texts: list[str]
    """Generated text per prompt (the stop token excluded)."""
    token_ids: list[list[int]]
    alpha: torch.Tensor
    """[batch, seq] α per decoding step (the stop token's step included); NaN past a row's end."""
    ess_ratio: torch.Tensor
    """[batch, seq] ESS_θ/ESS_t per step (≈ 1 balanced); NaN past a row's end."""
    stopped_on_eos: list[bool]
    diagnostics: list[dict[str, Any]] | None = None
    """With ``return_diagnostics``: per prompt the ``.diagnostics.jsonl`` summary keys
    (``alpha_mean``, ``ess_ratio_mean``, ``kl_theta_mean``, ``kl_t_mean``, …) and ``tokens``:
    {name: per-token list} for alpha, ess_theta, ess_t, ess_ratio, kl_theta, kl_t (+ tail_mass)."""
    prompts: list[str] = field(default_factory=list)
    """The prompt texts the models read (after the chat template)."""


class QStarSampler:
    """Two causal LMs sharing one tokenizer, sampled through q*. Build with
    :func:`create_optimal_sampling_model` (or pass loaded ``model_theta``/``model_t``/``tokenizer``)."""

    def __init__(self, model_theta: Any, model_t: Any | None, tokenizer: Any, alpha_method: str = "kl_symmetry", *,
                 fixed_alpha: float = 0.5, alpha_tol: float = 1e-6, support_eps: float = 1e-5,
                 max_tail: float = 0.02, gap_rtol: float = 5e-3, chat_template: bool = True):
        if alpha_method not in ALPHA_METHODS:
            raise ValueError(f"alpha_method must be one of {', '.join(ALPHA_METHODS)} (got {alpha_method!r})")
        if not 0.0 <= fixed_alpha <= 1.0:
            raise ValueError(f"fixed_alpha must be in [0, 1] (got {fixed_alpha})")
        self.model_theta, self.model_t, self.tokenizer = model_theta, model_t, tokenizer
        self.alpha_method, self.fixed_alpha = alpha_method, fixed_alpha
        self.alpha_tol, self.support_eps, self.max_tail = alpha_tol, support_eps, max_tail
        self.gap_rtol = gap_rtol
        self.chat_template = chat_template
        width = _logit_width(model_theta)
        self.vocab_size = min(width, _logit_width(model_t)) if model_t is not None else width

    def generate(self, prompts: Sequence[str | Sequence[dict]], max_new_tokens: int = 256, temperature: float = 1.0,
                 top_p: float = 1.0, top_k: int = 0, return_diagnostics: bool = False, seed: int = 0) -> QStarOutput:
        """Sample one response per prompt. A prompt is a user message (str) or a list of chat messages;
        with ``chat_template`` (default) it is rendered with the tokenizer's chat template. Sample i
        draws from a generator seeded from (seed, i), as the generate stage does."""
        from runners.modeling import render_prompt

        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ValueError("prompts is empty")
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (q* mixes temperature-scaled distributions)")
        tok = self.tokenizer
        texts = []
        for p in prompts:
            messages = [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
            texts.append(render_prompt(tok, messages) if self.chat_template else
                         (p if isinstance(p, str) else "\n".join(m["content"] for m in messages)))
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        mixer = QStarMixer(self.alpha_method, fixed_alpha=self.fixed_alpha, tol=self.alpha_tol,
                           temperature=temperature, support_eps=self.support_eps, max_tail=self.max_tail,
                           gap_rtol=self.gap_rtol)
        models = [self.model_theta] if self.model_t is None else [self.model_theta, self.model_t]
        result = decode(models, ids, mixer, pad_id=tok.pad_token_id, eos_ids=_eos_ids(tok, self.model_theta),
                        max_new_tokens=max_new_tokens, top_k=top_k, top_p=top_p,
                        generators=sample_generators(seed, range(len(ids))), vocab_size=self.vocab_size)
        seq = max((len(d.get("alpha", [])) for d in result.diagnostics), default=0)
        alpha = torch.full((len(ids), seq), math.nan)
        ess = torch.full((len(ids), seq), math.nan)
        for row, d in enumerate(result.diagnostics):
            n = len(d.get("alpha", []))
            alpha[row, :n] = torch.tensor(d.get("alpha", []), dtype=torch.float32)
            ess[row, :n] = torch.tensor(d.get("ess_ratio", []), dtype=torch.float32)
        diagnostics = None
        if return_diagnostics:
            diagnostics = [{"sample_idx": i, "num_tokens": len(t), "stopped_on_eos": e, **sample_summary(d),
                            "tokens": d} for i, (t, e, d) in
                           enumerate(zip(result.tokens, result.stopped_on_eos, result.diagnostics))]
        return QStarOutput(texts=[tok.decode(t, skip_special_tokens=False) for t in result.tokens],
                           token_ids=result.tokens, alpha=alpha, ess_ratio=ess, stopped_on_eos=result.stopped_on_eos,
                           diagnostics=diagnostics, prompts=texts)


def create_optimal_sampling_model(model_theta: str | Path, model_t: str | Path | None = None,
                                  alpha_method: str = "kl_symmetry", *, dtype: str = "float32", device: str = "auto",
                                  trust_remote_code: bool = False, **options: Any) -> QStarSampler:
    """Load π_θ (``model_theta``) and π_t (``model_t``; None or the same path = π_θ) from local HF
    directories and return a :class:`QStarSampler`. ``alpha_method``: ``kl_symmetry`` (both KLs
    equal), ``fixed`` (``fixed_alpha=``), ``entropy`` (H(π_t)/(H(π_θ)+H(π_t))). ``options`` go to
    :class:`QStarSampler` (``fixed_alpha``, ``alpha_tol``, ``support_eps``, ``max_tail``,
    ``gap_rtol``, ``chat_template``). Raises ``UsageError`` when the two models do not share a tokenizer."""
    from runners.generate.models import check_same_tokenizer
    from runners.modeling import load_model

    if alpha_method not in ALPHA_METHODS:
        raise ValueError(f"alpha_method must be one of {', '.join(ALPHA_METHODS)} (got {alpha_method!r})")
    theta, tokenizer = load_model(model_theta, dtype, device, trust_remote_code=trust_remote_code)
    target = None
    if model_t is not None and Path(model_t).resolve() != Path(model_theta).resolve():
        target, tokenizer_t = load_model(model_t, dtype, device, trust_remote_code=trust_remote_code)
        check_same_tokenizer(tokenizer, tokenizer_t, Path(model_theta), Path(model_t))
    return QStarSampler(theta, target, tokenizer, alpha_method, **options)


def _logit_width(model: Any) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {int(i) for i in ids if i is not None}
