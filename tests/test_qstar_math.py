"""q* math: KL-symmetry α against an independent float64 brentq, α bounds, identical models, the
corrected entropy formula, ESS on hand cases, and the compact CPU solve against the exact one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import logsumexp

from runners.generate import qstar
from runners.generate.decode import sample
from runners.generate.mixer import QStarMixer


def _brent_alpha(lth: np.ndarray, lt: np.ndarray) -> float:
    """Independent reference: F(α) = E_q[lt − lθ] in float64 with scipy, root by brentq."""
    lth, lt = np.maximum(lth.astype(np.float64), -1e4), np.maximum(lt.astype(np.float64), -1e4)
    ell = lt - lth

    def f(a):
        m = lth + a * ell
        return float(np.sum(np.exp(m - logsumexp(m)) * ell))

    if f(0.0) >= 0:
        return 0.0
    if f(1.0) <= 0:
        return 1.0
    return brentq(f, 0.0, 1.0, xtol=1e-13)


def _kls(lth: np.ndarray, lt: np.ndarray, alpha: float) -> tuple[float, float]:
    lth, lt = lth.astype(np.float64), lt.astype(np.float64)
    m = (1 - alpha) * lth + alpha * lt
    lq = m - logsumexp(m)
    q = np.exp(lq)
    return float(np.sum(q * (lq - lth))), float(np.sum(q * (lq - lt)))


def _pair(batch: int, vocab: int, seed: int, spread: float = 3.0, shift: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, vocab, generator=g) * spread
    zt = z + shift * torch.randn(batch, vocab, generator=g)
    return torch.log_softmax(z, -1), torch.log_softmax(zt, -1)


def _peaked_pair(batch: int, vocab: int, seed: int):
    """LLM-like rows: a bulk of junk logits plus a few dozen plausible tokens far above it."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, vocab, generator=g)
    idx = torch.randint(0, vocab, (batch, 30), generator=g)
    z.scatter_(1, idx, 8 + 8 * torch.rand(batch, 30, generator=g))
    zt = z + 0.7 * torch.randn(batch, vocab, generator=g)
    return torch.log_softmax(z, -1), torch.log_softmax(zt, -1)


def test_full_solve_matches_brentq_and_equalises_kls():
    lth, lt = _pair(16, 500, seed=0)
    alpha, iters = qstar.solve_alpha_full(lth, lt, tol=1e-9)
    assert iters < 20  # Newton, not 30 bisection steps
    for row in range(16):
        ref = _brent_alpha(lth[row].numpy(), lt[row].numpy())
        assert abs(float(alpha[row]) - ref) < 1e-7
        kl_theta, kl_t = _kls(lth[row].numpy(), lt[row].numpy(), float(alpha[row]))
        assert kl_theta > 1e-3 and abs(kl_theta - kl_t) < 1e-6 * max(kl_theta, 1.0)


def test_compact_solve_is_exact_when_nothing_is_lumped():
    lth, lt = _pair(8, 300, seed=1, spread=1.0)  # flat rows: every token is above ε
    res = qstar.solve_alpha_compact(lth, lt, tol=1e-9, support_eps=1e-9)
    exact, _ = qstar.solve_alpha_full(lth, lt, tol=1e-9)
    assert (res.support_size == 300).all()
    np.testing.assert_allclose(res.alpha, exact.numpy(), atol=1e-6)


def test_compact_solve_on_peaked_rows_is_close_and_reports_its_tail():
    lth, lt = _peaked_pair(32, 20_000, seed=2)
    res = qstar.solve_alpha_compact(lth, lt, tol=1e-8, support_eps=1e-5)
    refs = np.array([_brent_alpha(lth[i].numpy(), lt[i].numpy()) for i in range(32)])
    assert res.support_size.mean() < 20_000 / 10  # the point: one to two orders smaller than V
    assert res.tail_theta.max() < 0.02 and res.tail_t.max() < 0.02
    assert np.abs(res.alpha - refs).max() < 5e-3
    for i in range(32):  # what matters: the KLs stay equal to within a small fraction
        kl_theta, kl_t = _kls(lth[i].numpy(), lt[i].numpy(), float(res.alpha[i]))
        assert abs(kl_theta - kl_t) <= 0.02 * kl_theta + 1e-6


def test_solve_alpha_falls_back_to_exact_for_heavy_tails():
    lth, lt = _pair(6, 4000, seed=3, spread=0.5)  # nearly flat: mass below ε is large
    res = qstar.solve_alpha(lth, lt, tol=1e-8, support_eps=1e-3, max_tail=0.02)
    assert res.exact_rows == 6 and float(res.tail_mass.max()) == 0.0
    exact, _ = qstar.solve_alpha_full(lth, lt, tol=1e-8)
    torch.testing.assert_close(res.alpha, exact.float(), atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000), spread=st.floats(0.1, 12.0), shift=st.floats(0.0, 8.0),
    vocab=st.integers(2, 64), forbid=st.booleans(),
)
def test_alpha_in_unit_interval_and_kls_equal(seed, spread, shift, vocab, forbid):
    lth, lt = _pair(4, vocab, seed, spread, shift)
    if forbid:  # a token one model forbids outright (masked logits)
        lth = torch.log_softmax(lth.masked_fill(torch.arange(vocab) == 0, float("-inf")), -1)
        lt = torch.log_softmax(lt.masked_fill(torch.arange(vocab) == vocab - 1, float("-inf")), -1)
    exact = qstar.solve_alpha_full(lth, lt, tol=1e-9)[0]
    kept_all = torch.from_numpy(qstar.solve_alpha_compact(lth, lt, 1e-9, support_eps=1e-30).alpha)
    lumped = torch.from_numpy(qstar.solve_alpha_compact(lth, lt, 1e-9).alpha)
    for alpha in (exact, kept_all, lumped):
        assert torch.isfinite(alpha).all() and (alpha >= 0).all() and (alpha <= 1).all()
    for row in range(4):
        a, b = np.maximum(lth[row].numpy(), -1e4), np.maximum(lt[row].numpy(), -1e4)
        kl_ref = _kls(a, b, _brent_alpha(a, b))[0]
        for alpha in (exact, kept_all):  # the lumped solve's accuracy is tested on realistic rows above
            kl_theta, kl_t = _kls(a, b, float(alpha[row]))
            assert abs(kl_theta - kl_t) <= 1e-5 * max(1.0, kl_ref)


def test_identical_models_give_qstar_equal_to_pi_for_any_alpha():
    lth, _ = _pair(4, 100, seed=4)
    for a in (0.0, 0.3, 1.0):
        logq = qstar.log_qstar(lth, lth.clone(), torch.full((4,), a))
        torch.testing.assert_close(logq, lth, atol=1e-5, rtol=0)
    alpha, iters = qstar.solve_alpha_full(lth, lth.clone())
    assert iters == 1 and ((alpha >= 0) & (alpha <= 1)).all()
    d = qstar.diagnostics(lth, lth, qstar.log_qstar(lth, lth, alpha))
    assert float(d.kl_theta.abs().max()) < 1e-5 and float(d.kl_t.abs().max()) < 1e-5
    torch.testing.assert_close(d.ess_theta, torch.ones(4), atol=1e-4, rtol=0)
    # one model only (model_t absent): the mixer samples from π_θ itself, α reported but irrelevant
    logits = torch.randn(3, 50)
    out = QStarMixer("kl_symmetry")(logits, None)
    torch.testing.assert_close(out.logp, torch.log_softmax(logits, -1))
    assert out.diagnostics["kl_t"].abs().max() == 0


def test_log_qstar_endpoints_and_alpha_weights_target():
    lth, lt = _pair(3, 40, seed=5)
    torch.testing.assert_close(qstar.log_qstar(lth, lt, torch.zeros(3)), lth, atol=1e-5, rtol=0)
    torch.testing.assert_close(qstar.log_qstar(lth, lt, torch.ones(3)), lt, atol=1e-5, rtol=0)


def test_entropy_alpha_follows_corrected_convention():
    # π_θ uniform over 2 tokens (H = log 2), π_t uniform over 4 (H = log 4): α = H_t/(H_θ+H_t) = 2/3
    lth = torch.log(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    lt = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25]]))
    assert float(qstar.alpha_entropy(lth, lt)[0]) == pytest.approx(2 / 3, abs=1e-6)
    # the more uncertain model gets the larger weight: a near-deterministic target → α near 0
    sharp = torch.log(torch.tensor([[0.999, 0.001 / 3, 0.001 / 3, 0.001 / 3]]))
    assert float(qstar.alpha_entropy(lt, sharp)[0]) < 0.05
    both_deterministic = torch.log(torch.tensor([[1.0, 0.0]]))
    assert float(qstar.alpha_entropy(both_deterministic, both_deterministic)[0]) == 0.5


def test_ess_matches_definition_on_hand_cases():
    # π = [1, 0], q = [0.5, 0.5]: Σ π²/q = 2 → ESS = 0.5 ; π = q → ESS = 1
    pi = torch.log(torch.tensor([[1.0, 0.0]]))
    q = torch.log(torch.tensor([[0.5, 0.5]]))
    d = qstar.diagnostics(pi, q, q)
    assert float(d.ess_theta[0]) == pytest.approx(0.5, abs=1e-6)
    assert float(d.ess_t[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(d.ess_ratio[0]) == pytest.approx(0.5, abs=1e-6)
    assert float(d.kl_theta[0]) == pytest.approx(0.5 * math.log(0.5) + 0.5 * 1e4, rel=1e-3) or d.kl_theta[0] > 100
    # three tokens: π = [0.2, 0.3, 0.5], q = [0.5, 0.25, 0.25]: Σ π²/q = 0.08 + 0.36 + 1.0 = 1.44
    pi3 = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    q3 = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    d3 = qstar.diagnostics(pi3, q3, q3)
    assert float(d3.ess_theta[0]) == pytest.approx(1 / 1.44, rel=1e-5)
    kl = 0.5 * math.log(0.5 / 0.2) + 0.25 * math.log(0.25 / 0.3) + 0.25 * math.log(0.25 / 0.5)
    assert float(d3.kl_theta[0]) == pytest.approx(kl, rel=1e-5)


def test_equal_kl_is_not_equal_ess():
    lth, lt = _peaked_pair(16, 2000, seed=6)
    alpha, _ = qstar.solve_alpha_full(lth, lt, tol=1e-9)
    d = qstar.diagnostics(lth, lt, qstar.log_qstar(lth, lt, alpha.float()))
    torch.testing.assert_close(d.kl_theta, d.kl_t, atol=1e-4, rtol=1e-3)
    assert float((d.ess_ratio - 1).abs().max()) > 1e-3  # balanced KL, yet not balanced ESS


def test_sampling_respects_top_k_and_top_p():
    logp = torch.log_softmax(torch.tensor([[3.0, 2.0, 1.0, 0.0]] * 200), -1)
    g = torch.Generator().manual_seed(0)
    assert set(sample(logp, top_k=1, generator=g).tolist()) == {0}
    assert set(sample(logp, top_k=2, generator=g).tolist()) == {0, 1}
    # probs ≈ [0.64, 0.24, 0.09, 0.03]: top_p 0.8 keeps the two tokens needed to reach 0.8
    assert set(sample(logp, top_p=0.8, generator=g).tolist()) == {0, 1}
    assert set(sample(logp, top_p=0.5, generator=g).tolist()) == {0}
    assert len(set(sample(logp, generator=g).tolist())) >= 3


def test_fused_mix_matches_the_reference_diagnostics():
    lth, lt = _peaked_pair(5, 3000, seed=7)
    lth[0, :10] = float("-inf")  # a forbidden token survives the clamp
    lth, lt = qstar.clamp_logp(torch.log_softmax(lth, -1)), qstar.clamp_logp(lt)
    alpha = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0])
    logq, fused = qstar.mix_with_diagnostics(lth, lt, alpha)
    ref = qstar.diagnostics(lth, lt, qstar.log_qstar(lth, lt, alpha))
    torch.testing.assert_close(logq, qstar.log_qstar(lth, lt, alpha), atol=1e-4, rtol=0)
    for name in ("kl_theta", "kl_t", "ess_theta", "ess_t"):
        torch.testing.assert_close(getattr(fused, name), getattr(ref, name), atol=1e-4, rtol=1e-4)
