"""The compact α solve's certificate: on adversarial rows (tail mass ≤ 0.6 %, so no tail fallback,
with flat disjoint tails that lumping cannot see) the compact α misses the KL balance; the exact KL
gap the mixer computes anyway sends those rows to the exact full-vocabulary solve, and every row
returned satisfies |KL(q‖π_θ) − KL(q‖π_t)| ≤ rtol·max(KLs) + 1e-6 (checked in float64 with scipy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_qstar_math import _brent_alpha, _kls, _peaked_pair

from runners.generate import qstar
from runners.generate.mixer import QStarMixer


def _adversarial(batch: int = 16, vocab: int = 4000, tail: float = 0.005, seed: int = 0, split: float = 0.999):
    """20 head tokens with 1 − tail of the mass; the tail's mass sits on one half of the tail
    tokens for π_θ and on the other half for π_t, each tail token below ε = 1e-5."""
    g = torch.Generator().manual_seed(seed)
    head, half = 20, (vocab - 20) // 2
    lth, lt = torch.empty(batch, vocab, dtype=torch.float64), torch.empty(batch, vocab, dtype=torch.float64)
    for i in range(batch):
        zt = torch.randn(head, generator=g, dtype=torch.float64) * 1.5
        zth = zt + torch.randn(head, generator=g, dtype=torch.float64)
        pth, pt = torch.empty(vocab, dtype=torch.float64), torch.empty(vocab, dtype=torch.float64)
        pth[:head], pt[:head] = torch.softmax(zth, 0) * (1 - tail), torch.softmax(zt, 0) * (1 - tail)
        pth[head:head + half], pth[head + half:] = tail * split / half, tail * (1 - split) / (vocab - head - half)
        pt[head:head + half], pt[head + half:] = tail * (1 - split) / half, tail * split / (vocab - head - half)
        lth[i], lt[i] = pth.log(), pt.log()
    return lth.float(), lt.float()


def _rel_gap_f64(lth, lt, alpha) -> np.ndarray:
    out = []
    for i in range(lth.shape[0]):
        a, b = _kls(lth[i].numpy(), lt[i].numpy(), float(alpha[i]))
        out.append(abs(a - b) / max(a, b, qstar.GAP_ATOL))
    return np.array(out)


@pytest.mark.parametrize("tail, seed", [(0.006, 0), (0.005, 1), (0.003, 2)])
def test_adversarial_rows_are_caught_and_resolved_exactly(tail, seed):
    lth, lt = _adversarial(tail=tail, seed=seed)
    solve = qstar.solve_alpha(lth, lt)
    assert solve.exact_rows == 0 and float(solve.tail_mass.max()) <= 0.0061  # below alpha_max_tail: no fallback
    # without the certificate the compact α is off (this is what the issue measured)
    assert _rel_gap_f64(lth, lt, solve.alpha).max() > qstar.GAP_RTOL
    alpha, tail_mass = solve.alpha.clone(), solve.tail_mass.clone()
    logq, d, redo = qstar.certified_mix(lth, lt, alpha, tail_mass)
    assert redo > 0
    gaps = _rel_gap_f64(lth, lt, alpha)
    kls = np.array([max(_kls(lth[i].numpy(), lt[i].numpy(), float(alpha[i]))) for i in range(len(alpha))])
    assert np.all(gaps * np.maximum(kls, qstar.GAP_ATOL) <= qstar.GAP_RTOL * kls + 2 * qstar.GAP_ATOL)
    reference = np.array([_brent_alpha(lth[i].numpy(), lt[i].numpy()) for i in range(len(alpha))])
    redone = (tail_mass == 0).numpy()
    assert redone.sum() == redo
    assert np.abs(alpha.numpy()[redone] - reference[redone]).max() < 1e-5  # re-solved rows are exact
    # the returned diagnostics are those of the returned α
    again_logq, again = qstar.mix_with_diagnostics(lth, lt, alpha)
    assert torch.allclose(logq, again_logq, atol=1e-5) and torch.allclose(d.kl_theta, again.kl_theta, atol=1e-6)


def test_the_mixer_certifies_and_counts_fallbacks():
    lth, lt = _adversarial(tail=0.005, seed=3)
    mixer = QStarMixer("kl_symmetry")
    out = mixer(lth, lt)  # logits = log-probs (log_softmax is idempotent)
    assert mixer.stats.gap_fallback_rows > 0 and mixer.stats.max_rel_gap <= qstar.GAP_RTOL + 1e-3
    assert (qstar.relative_gap(qstar.mix_with_diagnostics(lth, lt, out.diagnostics["alpha"])[1]) <=
            qstar.GAP_RTOL + 1e-3).all()
    assert int((out.diagnostics["tail_mass"] == 0).sum()) >= mixer.stats.gap_fallback_rows


def test_llm_like_rows_pass_the_certificate_without_fallback():
    lth, lt = _peaked_pair(64, 32_000, seed=0)
    mixer = QStarMixer("kl_symmetry")
    mixer(lth, lt)
    assert mixer.stats.gap_fallback_rows == 0  # the fast path stays fast where lumping is harmless
    assert mixer.stats.max_rel_gap <= qstar.GAP_RTOL


def test_a_tighter_tolerance_sends_more_rows_to_the_exact_solve():
    lth, lt = _adversarial(tail=0.005, seed=4)
    loose, tight = QStarMixer("kl_symmetry", gap_rtol=0.5), QStarMixer("kl_symmetry", gap_rtol=1e-4)
    loose(lth, lt)
    tight(lth, lt)
    assert loose.stats.gap_fallback_rows < tight.stats.gap_fallback_rows
    assert tight.stats.max_rel_gap <= 1e-3
