"""The q* math (domain.md §5): geometric mixture, α solvers for a whole batch, ESS and KLs.

Per position, with log-probabilities lθ = log π_θ and lt = log π_t (already temperature-scaled):

    log q*(v) = (1−α)·lθ(v) + α·lt(v) − log Z(α)          α weights π_t
    ℓ = lt − lθ,   F(α) = E_q[ℓ] = KL(q‖π_θ) − KL(q‖π_t),   F′(α) = Var_q(ℓ) ≥ 0

F(0) = −KL(π_θ‖π_t) ≤ 0 ≤ KL(π_t‖π_θ) = F(1), so the ``kl_symmetry`` α (the Chernoff point) is the
unique root in [0, 1]. Two solvers share one safeguarded Newton iteration (Newton step when it
stays inside the bracket that F's sign maintains, bisection otherwise):

* :func:`solve_alpha_full` — exact, over the whole vocabulary, in torch (the GPU path: a pass over
  V is microseconds there; also the reference the fast path is checked against).
* :func:`solve_alpha_compact` — the CPU path. Every pass over V costs ~0.5 ms for 64 × 32k here, so
  the solve must touch V as few times as possible: two comparisons pick the *support*
  S = {v : π_θ(v) > ε or π_t(v) > ε}, and everything outside S is lumped into one extra "tail" outcome
  with masses 1 − π_θ(S) and 1 − π_t(S). Lumping (not dropping) keeps both distributions normalised,
  so the bracket F(0) ≤ 0 ≤ F(1) still holds and α stays in [0, 1]; the result is exact when ℓ is
  constant on the tail, and the tail masses are returned as a diagnostic. Newton then runs on
  (B × |S|+1) float64 arrays — one to two orders of magnitude smaller than V.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

LOGP_FLOOR = -1.0e4
"""Log-probabilities are clamped here: a token one model forbids (−inf) would give 0·(−inf) = NaN
at α ∈ {0, 1}; at −1e4 its probability is still exactly 0 in float32/float64."""


GAP_RTOL = 5e-3
"""Certificate of the compact solve: a row whose exact |KL(q‖π_θ) − KL(q‖π_t)| exceeds
GAP_RTOL·max(KL(q‖π_θ), KL(q‖π_t)) + GAP_ATOL is re-solved on the full vocabulary."""
GAP_ATOL = 1e-6
"""Absolute slack of the certificate: float32 rounding of the full-vocabulary KLs (V ~ 1e5)."""

TAIL_FLOOR = 1e-6
"""Smallest tail mass the compact solver represents (float32 log-softmax sums to 1 within ~1e-7·V)."""


# -- mixture, entropy α, diagnostics -------------------------------------------------------------
def log_qstar(
    logp_theta: torch.Tensor, logp_t: torch.Tensor, alpha: torch.Tensor, *, clamped: bool = False,
) -> torch.Tensor:
    """Normalised log q* per row. ``logp_*``: (B, V) log-probs; ``alpha``: (B,) weights on π_t.
    ``clamped=True`` skips the −inf guard when the caller already applied :func:`clamp_logp`."""
    lth = logp_theta if clamped else clamp_logp(logp_theta)
    lt = logp_t if clamped else clamp_logp(logp_t)
    mixed = torch.lerp(lth, lt, alpha.to(lth.dtype).unsqueeze(-1))  # (1−α)·lθ + α·lt in one pass
    return mixed - torch.logsumexp(mixed, dim=-1, keepdim=True)


def clamp_logp(logp: torch.Tensor) -> torch.Tensor:
    """Log-probs with −inf (and anything below LOGP_FLOOR) raised to LOGP_FLOOR, as float32+."""
    lp = logp if logp.dtype in (torch.float32, torch.float64) else logp.float()
    return lp.clamp_min(LOGP_FLOOR)


def entropy_of(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) per row of normalised log-probs."""
    lp = clamp_logp(logp)
    return -torch.linalg.vecdot(lp.exp(), lp)


def alpha_entropy(logp_theta: torch.Tensor, logp_t: torch.Tensor) -> torch.Tensor:
    """The fast approximation, corrected convention (α weights π_t): α ≈ H(π_t)/(H(π_θ)+H(π_t)).

    The seed's H(π_θ) in the numerator belongs to the opposite convention. Two deterministic
    distributions (both entropies 0) get 0.5.
    """
    h_theta, h_t = entropy_of(logp_theta), entropy_of(logp_t)
    total = h_theta + h_t
    return torch.where(total > 0, h_t / total.clamp_min(1e-30), torch.full_like(total, 0.5)).clamp(0.0, 1.0)


@dataclass
class TokenDiagnostics:
    """Per-position diagnostics (each a (B,) tensor)."""

    kl_theta: torch.Tensor
    """KL(q‖π_θ)."""
    kl_t: torch.Tensor
    """KL(q‖π_t)."""
    ess_theta: torch.Tensor
    """Exact ESS of q as a proposal for π_θ: 1/Σ_v π_θ(v)²/q(v) (1 = perfect, → 0 = degenerate)."""
    ess_t: torch.Tensor
    """Same for π_t."""

    @property
    def ess_ratio(self) -> torch.Tensor:
        """ESS_θ/ESS_t (the seed's balance diagnostic; ≈ 1 is balanced). Equal KL ≠ equal ESS."""
        return self.ess_theta / self.ess_t.clamp_min(1e-30)


def diagnostics(
    logp_theta: torch.Tensor, logp_t: torch.Tensor, logq: torch.Tensor, *, clamped: bool = False,
) -> TokenDiagnostics:
    """Exact full-vocabulary KLs and ESS of q against both models (log-space ESS)."""
    lth = logp_theta if clamped else clamp_logp(logp_theta)
    lt = logp_t if clamped else clamp_logp(logp_t)
    lq = logq.to(lth.dtype)
    q = lq.exp()
    d_theta, d_t = lq - lth, lq - lt
    kl_theta = torch.linalg.vecdot(q, d_theta).clamp_min(0.0)
    kl_t = torch.linalg.vecdot(q, d_t).clamp_min(0.0)
    # Σ π²/q = exp(logsumexp(2 log π − log q)) = exp(logsumexp(log π − d)): finite where π²/q overflows
    ess_theta = torch.exp(-torch.logsumexp(lth - d_theta, dim=-1))
    ess_t = torch.exp(-torch.logsumexp(lt - d_t, dim=-1))
    return TokenDiagnostics(kl_theta, kl_t, ess_theta, ess_t)


def mix_with_diagnostics(
    lth: torch.Tensor, lt: torch.Tensor, alpha: torch.Tensor,
) -> tuple[torch.Tensor, TokenDiagnostics]:
    """log q* and its exact diagnostics in few passes over V (the decoding loop's hot path).

    With ℓ = lt − lθ, m = lθ + αℓ and L = logsumexp(m): log q = m − L, so
    KL(q‖π_θ) = α·E_q[ℓ] − L, KL(q‖π_t) = −(1−α)·E_q[ℓ] − L, and
    Σ π_θ²/q = exp(L + logsumexp(lθ − αℓ)), Σ π_t²/q = exp(L + logsumexp(lt + (1−α)ℓ)).
    Inputs must be clamped log-probs (:func:`clamp_logp`). Same values as :func:`diagnostics`.
    """
    a = alpha.to(lth.dtype).unsqueeze(-1)
    ell = lt - lth
    mixed = torch.addcmul(lth, a, ell)
    lse = torch.logsumexp(mixed, dim=-1, keepdim=True)
    logq = mixed - lse
    mean_ell = torch.linalg.vecdot(logq.exp(), ell)
    a, lse = a.squeeze(-1), lse.squeeze(-1)
    kl_theta = (a * mean_ell - lse).clamp_min(0.0)
    kl_t = (-(1 - a) * mean_ell - lse).clamp_min(0.0)
    ess_theta = torch.exp(-lse - torch.logsumexp(torch.addcmul(lth, -a.unsqueeze(-1), ell), dim=-1))
    ess_t = torch.exp(-lse - torch.logsumexp(torch.addcmul(lt, (1 - a).unsqueeze(-1), ell), dim=-1))
    return logq, TokenDiagnostics(kl_theta, kl_t, ess_theta, ess_t)


# -- the safeguarded Newton iteration, shared by both solvers -------------------------------------
def _newton_update(alpha, lo, hi, f, var, tol):
    """One safeguarded step for arrays (numpy or torch, same API used). Returns alpha, lo, hi, done."""
    lib = torch if isinstance(alpha, torch.Tensor) else np
    lo = lib.where(f < 0, alpha, lo)
    hi = lib.where(f > 0, alpha, hi)
    safe_var = lib.where(var > 1e-300, var, lib.ones_like(var))
    newton = alpha - f / safe_var
    use_newton = (var > 1e-300) & (newton > lo) & (newton < hi)
    new_alpha = lib.where(use_newton, newton, 0.5 * (lo + hi))
    # F == 0: already the root (identical models give F ≡ 0 and α is irrelevant)
    new_alpha = lib.where(f == 0, alpha, new_alpha)
    done = (abs(new_alpha - alpha) < tol) | ((hi - lo) < tol) | (f == 0)
    return new_alpha, lo, hi, done


def solve_alpha_full(
    logp_theta: torch.Tensor, logp_t: torch.Tensor, tol: float = 1e-6, max_iter: int = 60,
    alpha0: torch.Tensor | None = None, dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, int]:
    """Exact KL-symmetry α for every row at once, over the full vocabulary (torch, any device).

    Returns (α (B,), iterations used). ``dtype`` defaults to float64 on CPU, float32 elsewhere.
    """
    dtype = dtype or (torch.float64 if logp_theta.device.type == "cpu" else torch.float32)
    lth = logp_theta.to(dtype).clamp_min(LOGP_FLOOR)
    ell = logp_t.to(dtype).clamp_min(LOGP_FLOOR) - lth
    batch = lth.shape[0]
    alpha = alpha0.to(dtype).clone() if alpha0 is not None else torch.full((batch,), 0.5, dtype=dtype, device=lth.device)
    lo, hi = torch.zeros_like(alpha), torch.ones_like(alpha)
    active = torch.arange(batch, device=lth.device)
    sub_lth, sub_ell = lth, ell  # shrunk only when some rows converge (indexing copies B × V)
    for it in range(1, max_iter + 1):
        a = alpha[active]
        q = torch.softmax(torch.addcmul(sub_lth, a.unsqueeze(-1), sub_ell), dim=-1)
        f = (q * sub_ell).sum(-1)
        var = (q * (sub_ell - f.unsqueeze(-1)).square()).sum(-1)
        new, lo[active], hi[active], done = _newton_update(a, lo[active], hi[active], f, var, tol)
        alpha[active] = new
        if bool(done.all()):
            return alpha.clamp(0.0, 1.0), it
        if bool(done.any()):
            keep = ~done
            active, sub_lth, sub_ell = active[keep], sub_lth[keep], sub_ell[keep]
    return alpha.clamp(0.0, 1.0), max_iter


@dataclass
class CompactSolve:
    alpha: np.ndarray
    """(B,) the KL-symmetry α on the support-plus-tail distributions."""
    tail_theta: np.ndarray
    """(B,) π_θ mass outside the support (lumped into one outcome)."""
    tail_t: np.ndarray
    """(B,) π_t mass outside the support."""
    support_size: np.ndarray
    """(B,) tokens kept per row."""
    iterations: int


def solve_alpha_compact(
    logp_theta: np.ndarray | torch.Tensor, logp_t: np.ndarray | torch.Tensor, tol: float = 1e-6,
    support_eps: float = 1e-5, max_iter: int = 60,
) -> CompactSolve:
    """KL-symmetry α for every row at once on the support {π_θ > ε or π_t > ε} + a lumped tail.

    Inputs are (B, V) normalised log-probs (CPU torch tensors are viewed as numpy, no copy).
    Two comparison passes over V plus one over the boolean mask; everything else is (B, K+1).
    Measured (benchmarks/bench_qstar.py): ~2 ms for 64 × 32k on one core, of which ~1.8 ms is
    the selection — there is nothing left to shave in the iteration.
    """
    lth = _as_numpy(logp_theta)
    lt = _as_numpy(logp_t)
    batch, vocab = lth.shape
    cut = np.float32(math.log(support_eps))
    mask = lth > cut
    mask |= lt > cut
    flat = np.flatnonzero(mask)
    rows = flat // vocab
    counts = np.bincount(rows, minlength=batch)  # (np.count_nonzero(axis=1) is another ~1 ms pass)
    width = int(counts.max()) + 1  # + the lumped tail column
    starts = np.cumsum(counts) - counts
    pos = np.arange(flat.size) - np.repeat(starts, counts)
    lth_s = np.full((batch, width), LOGP_FLOOR, dtype=np.float64)
    lt_s = np.full((batch, width), LOGP_FLOOR, dtype=np.float64)
    lth_s[rows, pos] = np.maximum(lth.reshape(-1)[flat], LOGP_FLOOR)
    lt_s[rows, pos] = np.maximum(lt.reshape(-1)[flat], LOGP_FLOOR)
    tail_theta = np.clip(1.0 - np.exp(lth_s[:, :-1]).sum(1), 0.0, 1.0)
    tail_t = np.clip(1.0 - np.exp(lt_s[:, :-1]).sum(1), 0.0, 1.0)
    # Below ~1e-6 a mass deficit is float32 rounding of the log-softmax, not tail: flooring both
    # keeps rounding noise from posing as a huge ℓ on the tail outcome.
    lth_s[:, -1] = np.log(np.maximum(tail_theta, TAIL_FLOOR))
    lt_s[:, -1] = np.log(np.maximum(tail_t, TAIL_FLOOR))
    alpha, iters = _newton_compact(lth_s, lt_s - lth_s, tol, max_iter)
    return CompactSolve(alpha, tail_theta, tail_t, counts, iters)


def _newton_compact(lth: np.ndarray, ell: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, int]:
    ell_sq = ell * ell
    batch = lth.shape[0]
    alpha = np.full(batch, 0.5)
    lo, hi = np.zeros(batch), np.ones(batch)
    active = np.arange(batch)
    sub_lth, sub_ell, sub_sq = lth, ell, ell_sq
    for it in range(1, max_iter + 1):
        a = alpha[active]
        logw = sub_lth + a[:, None] * sub_ell
        # the row max matters only when the two models nearly disjoint (all weights would underflow)
        w = np.exp(logw - logw.max(1, keepdims=True))
        z = w.sum(1)
        f = np.einsum("ij,ij->i", w, sub_ell) / z
        var = np.maximum(np.einsum("ij,ij->i", w, sub_sq) / z - f * f, 0.0)
        new, lo[active], hi[active], done = _newton_update(a, lo[active], hi[active], f, var, tol)
        alpha[active] = new
        if done.all():
            return np.clip(alpha, 0.0, 1.0), it
        if done.any():
            keep = ~done
            active, sub_lth, sub_ell, sub_sq = active[keep], sub_lth[keep], sub_ell[keep], sub_sq[keep]
    return np.clip(alpha, 0.0, 1.0), max_iter


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


@dataclass
class AlphaSolve:
    alpha: torch.Tensor
    """(B,) KL-symmetry α (on the input's device)."""
    tail_mass: torch.Tensor
    """(B,) max(π_θ, π_t) mass lumped outside the support (0 where solved exactly)."""
    exact_rows: int
    """Rows solved on the full vocabulary (not on CPU, or tail above ``max_tail``)."""
    iterations: int


def solve_alpha(
    logp_theta: torch.Tensor, logp_t: torch.Tensor, tol: float = 1e-6, support_eps: float = 1e-5,
    max_tail: float = 0.02,
) -> AlphaSolve:
    """The KL-symmetry α for a batch: the compact solve on CPU, the exact one elsewhere (GPU).

    Rows whose lumped tail exceeds ``max_tail`` (flat distributions, where lumping could move α)
    are re-solved exactly, so the approximation is only used where the tail is small.
    """
    batch = logp_theta.shape[0]
    use_compact = logp_theta.device.type == "cpu" and support_eps > 0
    if not use_compact:
        alpha, iters = solve_alpha_full(logp_theta, logp_t, tol)
        return AlphaSolve(alpha.to(logp_theta.dtype), torch.zeros(batch), batch, iters)
    res = solve_alpha_compact(logp_theta, logp_t, tol, support_eps)
    alpha = torch.from_numpy(res.alpha)
    tail = torch.from_numpy(np.maximum(res.tail_theta, res.tail_t))
    redo = torch.nonzero(tail > max_tail).flatten()
    if redo.numel():
        alpha[redo], _ = solve_alpha_full(logp_theta[redo], logp_t[redo], tol)
        tail[redo] = 0.0
    return AlphaSolve(alpha.to(logp_theta.dtype), tail, int(redo.numel()), res.iterations)


# -- the certificate of the compact solve ----------------------------------------------------------
def relative_gap(d: TokenDiagnostics) -> torch.Tensor:
    """(|KL(q‖π_θ) − KL(q‖π_t)| − GAP_ATOL)⁺ / max(both KLs) per row: the relative imbalance beyond the
    certificate's absolute slack, so ≤ ``gap_rtol`` on every certified row (0 at the Chernoff point)."""
    excess = ((d.kl_theta - d.kl_t).abs() - GAP_ATOL).clamp_min(0.0)
    return excess / torch.maximum(torch.maximum(d.kl_theta, d.kl_t), torch.full_like(d.kl_t, 1e-30))


def certified_mix(
    lth: torch.Tensor, lt: torch.Tensor, alpha: torch.Tensor, tail_mass: torch.Tensor, gap_rtol: float = GAP_RTOL,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, TokenDiagnostics, int]:
    """log q*, its exact diagnostics, and how many rows were re-solved (``alpha``/``tail_mass`` are
    updated in place for them).

    The diagnostics give the exact KL gap F(α) = KL(q‖π_θ) − KL(q‖π_t) on the full vocabulary at no
    extra cost. A compact-solved row (tail_mass > 0) whose gap exceeds
    ``gap_rtol``·max(KLs) + GAP_ATOL is re-solved with :func:`solve_alpha_full` and mixed again, so
    every returned row satisfies the bound (exact rows: α within ``tol`` of the root)."""
    logq, d = mix_with_diagnostics(lth, lt, alpha)
    gap = (d.kl_theta - d.kl_t).abs()
    bound = gap_rtol * torch.maximum(d.kl_theta, d.kl_t) + GAP_ATOL
    redo = torch.nonzero((gap > bound) & (tail_mass.to(gap.device) > 0)).flatten()
    if redo.numel() == 0:
        return logq, d, 0
    new_alpha, _ = solve_alpha_full(lth[redo], lt[redo], tol)
    alpha[redo] = new_alpha.to(alpha.dtype).to(alpha.device)
    tail_mass[redo.to(tail_mass.device)] = 0.0
    sub_logq, sub = mix_with_diagnostics(lth[redo], lt[redo], alpha[redo])
    logq[redo] = sub_logq
    for name in ("kl_theta", "kl_t", "ess_theta", "ess_t"):
        getattr(d, name)[redo] = getattr(sub, name)
    return logq, d, int(redo.numel())
