"""One decoding step's distribution: the two models' next-token logits → log q* + diagnostics.

A mixer is ``mixer(logits_theta, logits_t) -> StepOutput``; the decoding loop samples from
``StepOutput.logp`` and stores ``StepOutput.diagnostics``. ``ThetaOnlyMixer`` is the baseline the
benchmark compares against (both models run, the sample comes from π_θ).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from runners.generate import qstar

DIAGNOSTIC_NAMES = ("alpha", "ess_theta", "ess_t", "ess_ratio", "kl_theta", "kl_t")


@dataclass
class StepOutput:
    logp: torch.Tensor
    """(B, V) normalised log-probs to sample from (before top-k/top-p)."""
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per-row (B,) values, names from DIAGNOSTIC_NAMES (+ ``tail_mass``)."""


@dataclass
class MixerStats:
    """Run-level counters: how the α solve went (logged to MLflow)."""

    positions: int = 0
    exact_rows: int = 0
    solve_seconds: float = 0.0
    max_tail: float = 0.0
    gap_fallback_rows: int = 0
    """Rows whose compact α failed the KL-gap certificate and were re-solved exactly."""
    max_rel_gap: float = 0.0
    """Largest (|KL(q‖π_θ) − KL(q‖π_t)| − 1e-6)⁺ / max(KLs) returned (after any fallback)."""


class QStarMixer:
    """q* = π_θ^(1−α)·π_t^α per position, α by ``method``; exact diagnostics on the full vocabulary."""

    def __init__(
        self, method: str, *, fixed_alpha: float = 0.5, tol: float = 1e-6, temperature: float = 1.0,
        support_eps: float = 1e-5, max_tail: float = 0.02, with_diagnostics: bool = True,
        gap_rtol: float = qstar.GAP_RTOL,
    ):
        if method not in ("fixed", "kl_symmetry", "entropy"):
            raise ValueError(f"unknown alpha_method '{method}' (use fixed, kl_symmetry or entropy)")
        self.method = method
        self.fixed_alpha = fixed_alpha
        self.tol = tol
        self.temperature = temperature
        self.support_eps = support_eps
        self.max_tail = max_tail
        self.with_diagnostics = with_diagnostics
        self.gap_rtol = gap_rtol
        self.stats = MixerStats()

    def __call__(self, logits_theta: torch.Tensor, logits_t: torch.Tensor | None) -> StepOutput:
        lth = torch.log_softmax(logits_theta.float() / self.temperature, dim=-1)
        if logits_t is None:  # one model: q* = π_θ whatever α is
            return self._same_model(lth)
        lt = torch.log_softmax(logits_t.float() / self.temperature, dim=-1)
        lth.clamp_min_(qstar.LOGP_FLOOR)  # once, in place, instead of in every helper
        lt.clamp_min_(qstar.LOGP_FLOOR)
        extra: dict[str, torch.Tensor] = {}
        start = time.perf_counter()
        if self.method == "fixed":
            alpha = torch.full((lth.shape[0],), self.fixed_alpha, device=lth.device)
        elif self.method == "entropy":
            alpha = qstar.alpha_entropy(lth, lt)
        else:
            solve = qstar.solve_alpha(lth, lt, self.tol, self.support_eps, self.max_tail)
            alpha = solve.alpha.to(lth.device)
            extra["tail_mass"] = solve.tail_mass
            self.stats.exact_rows += solve.exact_rows
            self.stats.max_tail = max(self.stats.max_tail, float(solve.tail_mass.max()))
        self.stats.solve_seconds += time.perf_counter() - start
        self.stats.positions += lth.shape[0]
        if self.method == "kl_symmetry":
            # the exact KL gap of the compact α certifies it, else the row is re-solved exactly
            start = time.perf_counter()
            logq, d, redo = qstar.certified_mix(lth, lt, alpha, extra["tail_mass"], self.gap_rtol, self.tol)
            if redo:  # the re-solve is part of the α solve's cost
                self.stats.solve_seconds += time.perf_counter() - start
            self.stats.gap_fallback_rows += redo
            self.stats.exact_rows += redo
            self.stats.max_rel_gap = max(self.stats.max_rel_gap, float(qstar.relative_gap(d).max()))
        elif not self.with_diagnostics:
            return StepOutput(qstar.log_qstar(lth, lt, alpha, clamped=True), {"alpha": alpha})
        else:
            logq, d = qstar.mix_with_diagnostics(lth, lt, alpha)
        if not self.with_diagnostics:
            return StepOutput(logq, {"alpha": alpha})
        diags = {"alpha": alpha, "ess_theta": d.ess_theta, "ess_t": d.ess_t, "ess_ratio": d.ess_ratio,
                 "kl_theta": d.kl_theta, "kl_t": d.kl_t, **extra}
        return StepOutput(logq, diags)

    def _same_model(self, lth: torch.Tensor) -> StepOutput:
        batch = lth.shape[0]
        self.stats.positions += batch
        alpha = self.fixed_alpha if self.method == "fixed" else 0.5
        ones, zeros = torch.ones(batch, device=lth.device), torch.zeros(batch, device=lth.device)
        diags = {"alpha": torch.full((batch,), alpha, device=lth.device), "ess_theta": ones, "ess_t": ones,
                 "ess_ratio": ones, "kl_theta": zeros, "kl_t": zeros}
        return StepOutput(lth, diags)


class ThetaOnlyMixer:
    """Baseline: sample from π_θ (temperature applied), no mixing and no diagnostics."""

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature
        self.stats = MixerStats()

    def __call__(self, logits_theta: torch.Tensor, logits_t: torch.Tensor | None) -> StepOutput:
        self.stats.positions += logits_theta.shape[0]
        return StepOutput(torch.log_softmax(logits_theta.float() / self.temperature, dim=-1))
