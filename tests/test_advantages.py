"""Advantage estimators: GRPO numbers from domain.md §3, EGPO invariants, the think-span mask."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from runners.common.advantages import (
    egpo,
    egpo_token,
    estimator_names,
    get_estimator,
    grpo,
    register_estimator,
    think_span_mask,
)

CFG = {"norm_adv_by_std_in_grpo": True, "egpo_lambda": 0.4, "egpo_alpha": 2.0}


def outcome_rewards(scores, lengths, T=6):
    """Token-level rewards with the score on each response's last token (verl's layout)."""
    rewards = torch.zeros(len(scores), T)
    mask = torch.zeros(len(scores), T)
    for i, (s, n) in enumerate(zip(scores, lengths)):
        mask[i, :n] = 1
        rewards[i, n - 1] = s
    return rewards, mask


def test_grpo_domain_numbers():
    rewards, mask = outcome_rewards([1, 0, 0, 1], [3, 4, 5, 6])
    adv, ret, _ = grpo(rewards, mask, ["a"] * 4, config=CFG)
    expected = torch.tensor([1, -1, -1, 1]) * 0.866025
    assert torch.allclose(adv[:, 0], expected, atol=1e-6)
    assert torch.equal(adv, ret)
    # broadcast to exactly the response tokens
    assert torch.equal(adv != 0, mask.bool())


def test_grpo_equal_rewards_give_zero():
    rewards, mask = outcome_rewards([1, 1, 1, 1], [2, 2, 2, 2])
    adv, _, stats = grpo(rewards, mask, [0, 0, 0, 0], config=CFG)
    assert torch.count_nonzero(adv) == 0
    assert stats["adv/zero_adv_frac"] == 1.0


def test_grpo_groups_are_independent_and_singletons_use_mean0_std1():
    rewards, mask = outcome_rewards([1, 0, 0.5, 3.0], [2, 2, 2, 2])
    adv, _, _ = grpo(rewards, mask, ["p", "p", "q", "r"], config=CFG)
    s = 1 / math.sqrt(0.5)  # unbiased std of [1, 0] is sqrt(0.5)
    assert adv[0, 0] == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-6), rel=1e-6)
    assert adv[1, 0] == pytest.approx(-0.5 * s, rel=1e-5)
    assert adv[2, 0] == pytest.approx(0.5 / (1 + 1e-6), rel=1e-6)  # singleton: (s - 0) / (1 + eps)
    assert adv[3, 0] == pytest.approx(3.0 / (1 + 1e-6), rel=1e-6)


def test_grpo_without_std_normalisation():
    rewards, mask = outcome_rewards([1, 0, 0, 0], [2, 2, 2, 2])
    adv, _, _ = grpo(rewards, mask, [7] * 4, config={"norm_adv_by_std_in_grpo": False})
    assert torch.allclose(adv[:, 0], torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_config_may_be_an_object_or_nested():
    from registry.spec.train import AlgorithmSpec

    spec = AlgorithmSpec(adv_estimator="egpo", egpo_lambda=0.0)
    rewards, mask = outcome_rewards([1, 0], [2, 2])
    ent = torch.ones_like(mask)
    a_obj, _, _ = egpo(rewards, mask, [0, 0], config=spec, entropy=ent)
    a_nested, _, _ = egpo(rewards, mask, [0, 0], config={"egpo": {"lambda": 0.0, "alpha": 2.0}}, entropy=ent)
    a_grpo, _, _ = grpo(rewards, mask, [0, 0], config=spec)
    assert torch.equal(a_obj, a_grpo) and torch.equal(a_nested, a_grpo)


def test_registry():
    assert {"grpo", "egpo", "egpo_token"} <= set(estimator_names())
    assert get_estimator("egpo") is egpo
    with pytest.raises(KeyError, match="unknown advantage estimator 'ppo'.*grpo"):
        get_estimator("ppo")
    with pytest.raises(ValueError, match="already registered"):
        register_estimator("grpo")(lambda *a, **k: None)


def _random_case(seed, B=8, T=7, groups=2):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g).tolist()
    scores = torch.randint(0, 2, (B,), generator=g).float().tolist()
    rewards, mask = outcome_rewards(scores, lengths, T)
    entropy = torch.rand(B, T, generator=g) * 5
    index = [i % groups for i in range(B)]
    return rewards, mask, entropy, index


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.floats(0.0, 3.0), alpha=st.floats(1.01, 10.0))
def test_egpo_invariants(seed, lam, alpha):
    rewards, mask, entropy, index = _random_case(seed)
    cfg = {"egpo_lambda": lam, "egpo_alpha": alpha}
    base, _, _ = grpo(rewards, mask, index, config=cfg)
    for fn in (egpo, egpo_token):
        adv, _, stats = fn(rewards, mask, index, config=cfg, entropy=entropy)
        bonus = adv - base
        assert torch.all(bonus >= 0)
        assert torch.all(bonus <= base.abs() / alpha + 1e-6)
        assert torch.all(torch.sign(adv) == torch.sign(base))  # sign kept, zero stays zero
        assert torch.all(adv[mask == 0] == 0)  # masked tokens stay 0
        assert 0.0 <= stats["egpo/bonus_clip_frac"] <= 1.0


def test_egpo_lambda_zero_is_grpo_exactly():
    rewards, mask, entropy, index = _random_case(3)
    base, _, _ = grpo(rewards, mask, index, config=CFG)
    for fn in (egpo, egpo_token):
        adv, _, _ = fn(rewards, mask, index, config={**CFG, "egpo_lambda": 0.0}, entropy=entropy)
        assert torch.equal(adv, base)


def test_egpo_bonus_value_and_cap():
    # group of 2: A = ±0.7071; E_0 = 0.5 -> λE = 0.2 < |A|/α = 0.354 (uncapped); E_1 = 5 -> capped
    rewards, mask = outcome_rewards([1, 0], [2, 2], T=2)
    entropy = torch.tensor([[0.5, 0.5], [5.0, 5.0]])
    adv, _, stats = egpo(rewards, mask, [0, 0], config=CFG, entropy=entropy)
    a = 1 / math.sqrt(2) / (1 + 1e-6 * math.sqrt(2))
    assert adv[0, 0] == pytest.approx(a + 0.2, rel=1e-5)
    assert adv[1, 0] == pytest.approx(-a + a / 2, rel=1e-5)
    assert stats["egpo/bonus_clip_frac"] == 0.5
    assert stats["egpo/bonus_mean"] == pytest.approx((0.2 + a / 2) / 2, rel=1e-5)


def test_egpo_no_gradient_through_bonus():
    rewards, mask, _, index = _random_case(5)
    entropy = (torch.rand(mask.shape) * 3).requires_grad_(True)
    for fn in (egpo, egpo_token):
        adv, _, _ = fn(rewards, mask, index, config=CFG, entropy=entropy)
        assert not adv.requires_grad and adv.grad_fn is None


def test_egpo_needs_entropy_and_valid_alpha():
    rewards, mask = outcome_rewards([1, 0], [2, 2])
    with pytest.raises(ValueError, match="needs the per-token entropy"):
        egpo(rewards, mask, [0, 0], config=CFG)
    with pytest.raises(ValueError, match="egpo_alpha must be > 1"):
        egpo(rewards, mask, [0, 0], config={"egpo_alpha": 1.0}, entropy=torch.ones_like(mask))


def test_think_vs_response_scope_differ():
    # tokens: <think>=1 x x </think>=2 tool tool ; think tokens have low entropy, the rest high
    OPEN, CLOSE = 1, 2
    ids = torch.tensor([[OPEN, 5, 6, CLOSE, 7, 8], [OPEN, 5, CLOSE, 7, 8, 8]])
    mask = torch.ones(2, 6)
    entropy = torch.tensor([[9.0, 0.1, 0.1, 9.0, 9.0, 9.0], [9.0, 0.1, 9.0, 9.0, 9.0, 9.0]])
    rewards, _ = outcome_rewards([1, 0], [6, 6], T=6)
    think = think_span_mask(ids, mask, OPEN, CLOSE)
    assert think.tolist() == [[0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]]
    cfg = {"egpo_lambda": 1.0, "egpo_alpha": 2.0}
    a_think, _, s_think = egpo(rewards, mask, [0, 0], config=cfg, entropy=entropy, scope_mask=think)
    a_resp, _, s_resp = egpo(rewards, mask, [0, 0], config=cfg, entropy=entropy, scope_mask=mask)
    assert s_think["egpo/scope_entropy_mean"] == pytest.approx(0.1, rel=1e-5)
    assert s_resp["egpo/scope_entropy_mean"] > 5
    assert not torch.allclose(a_think, a_resp)
    # think scope: bonus 0.1 uncapped; response scope: capped at |A|/α
    assert float(a_think[0, 0] - a_resp[0, 0]) < 0


def test_think_span_edge_cases():
    OPEN, CLOSE = 1, 2
    ids = torch.tensor(
        [
            [5, 6, CLOSE, 7, 0, 0],  # opening tag in the prompt: span from the start
            [OPEN, 5, 6, 6, 6, 6],  # truncated inside the think block
            [5, 6, 7, 8, 0, 0],  # no tags
            [OPEN, 5, CLOSE, OPEN, 6, CLOSE],  # only the first block counts
        ]
    )
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 1, 1, 0, 0], [1] * 6]).float()
    span = think_span_mask(ids, mask, OPEN, CLOSE)
    assert span.tolist() == [
        [1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
    ]
    # an empty scope gets no bonus
    rewards, _ = outcome_rewards([1, 0, 0, 1], [4, 6, 4, 6], T=6)
    adv, _, stats = egpo(rewards, mask, [0] * 4, config=CFG, entropy=torch.ones(4, 6), scope_mask=span)
    base, _, _ = grpo(rewards, mask, [0] * 4, config=CFG)
    assert torch.equal(adv[2], base[2])
    assert stats["egpo/empty_scope_frac"] == 0.25


def test_egpo_token_bonus_only_in_scope():
    rewards, mask = outcome_rewards([1, 0], [4, 4], T=4)
    scope = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]]).float()
    entropy = torch.full((2, 4), 0.1)
    adv, _, _ = egpo_token(rewards, mask, [0, 0], config=CFG, entropy=entropy, scope_mask=scope)
    base, _, _ = grpo(rewards, mask, [0, 0], config=CFG)
    assert torch.allclose(adv[:, :2] - base[:, :2], torch.full((2, 2), 0.04))
    assert torch.equal(adv[:, 2:], base[:, 2:])


def test_think_token_ids_come_from_the_tokenizer():
    from runners.common.advantages import think_token_ids

    class Tok:
        def __init__(self, table):
            self.table = table

        def encode(self, text, add_special_tokens=False):
            return self.table[text]

    assert think_token_ids(Tok({"<think>": [17], "</think>": [18]})) == (17, 18)
    with pytest.raises(ValueError, match="splits '<think>' into 3 tokens.*entropy_scope: response"):
        think_token_ids(Tok({"<think>": [1, 2, 3], "</think>": [18]}))


VERL_PYTHON = __import__("pathlib").Path(__file__).resolve().parents[1] / ".venv-verl" / "bin" / "python"

_VERL_CHECK = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from runners.common.advantages import grpo
g = torch.Generator().manual_seed(0)
out = []
for norm in (True, False):
    for trial in range(20):
        B, T = 12, 9
        mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (B, 1), generator=g)).float()
        rewards = torch.zeros(B, T)
        last = mask.sum(-1).long() - 1
        rewards[torch.arange(B), last] = torch.randint(0, 3, (B,), generator=g).float() * 0.5
        index = [f"p{int(i)}" for i in torch.randint(0, 5, (B,), generator=g)]  # includes singletons
        ours, _, _ = grpo(rewards, mask, index, config={"norm_adv_by_std_in_grpo": norm})
        theirs, _ = compute_grpo_outcome_advantage(rewards, mask, __import__("numpy").array(index, dtype=object),
                                                   norm_adv_by_std_in_grpo=norm)
        out.append(bool(torch.equal(ours, theirs)))
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not VERL_PYTHON.exists(), reason=".venv-verl is absent (scripts/setup-verl-venv.sh creates it)")
def test_grpo_is_bit_identical_to_verl():
    import json
    import subprocess

    root = str(VERL_PYTHON.parents[2])
    proc = subprocess.run([str(VERL_PYTHON), "-c", _VERL_CHECK, root], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 40 and all(results)
