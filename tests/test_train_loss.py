"""PPO surrogate, dual clip, KL estimators and aggregation on hand-computed cases; micro-batching
does not change the update; the LR schedule."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from registry.spec.train import TrainSpec
from runners.train.loss import agg_loss, kl_penalty, policy_loss
from runners.train.update import UpdateBatch, build_optimizer, update_policy

LOW, HIGH = 0.2, 0.28


def _pl(ratio, adv):
    ratio = torch.tensor([ratio], dtype=torch.float64)
    adv = torch.tensor([adv], dtype=torch.float64)
    old = torch.zeros(1, dtype=torch.float64)
    return policy_loss(ratio.log(), old, adv, torch.ones(1), LOW, HIGH)


@pytest.mark.parametrize(
    "ratio, adv, loss, clipped, lower",
    [
        (1.0, 1.0, -1.0, 0.0, 0.0),  # on-policy: loss = -A
        (1.5, 1.0, -1.28, 1.0, 0.0),  # positive A, ratio above 1+ε_high: clipped at 1.28
        (0.5, 1.0, -0.5, 0.0, 0.0),  # positive A, ratio below 1-ε: unclipped (pessimistic max)
        (0.5, -1.0, 0.8, 1.0, 0.0),  # negative A, ratio below 1-ε_low: clipped at 0.8
        (5.0, -1.0, 3.0, 0.0, 1.0),  # negative A, huge ratio: dual clip bounds the loss at c·|A| = 3
        (1.1, -2.0, 2.2, 0.0, 0.0),  # inside the trust region
    ],
)
def test_policy_loss_hand_cases(ratio, adv, loss, clipped, lower):
    out = _pl(ratio, adv)
    assert float(out.pg_losses[0]) == pytest.approx(loss, rel=1e-9)
    assert float(out.pg_clipfrac) == clipped
    assert float(out.pg_clipfrac_lower) == lower
    assert float(out.ppo_kl) == pytest.approx(-math.log(ratio), rel=1e-9, abs=1e-12)


def test_policy_gradient_on_policy_is_minus_advantage():
    log_prob = torch.zeros(3, requires_grad=True)
    adv = torch.tensor([1.0, -0.5, 2.0])
    out = policy_loss(log_prob, torch.zeros(3), adv, torch.ones(3), LOW, HIGH)
    out.pg_losses.sum().backward()
    assert torch.allclose(log_prob.grad, -adv)
    # a clipped token passes no gradient
    log_prob = torch.tensor([math.log(2.0)], requires_grad=True)
    policy_loss(log_prob, torch.zeros(1), torch.ones(1), torch.ones(1), LOW, HIGH).pg_losses.sum().backward()
    assert float(log_prob.grad) == 0.0


def test_kl_estimators():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    r = math.log(0.5)  # ref - logp
    assert float(kl_penalty(logp, ref, "low_var_kl")) == pytest.approx(math.exp(r) - r - 1, rel=1e-6)
    assert float(kl_penalty(logp, ref, "kl")) == pytest.approx(math.log(2), rel=1e-6)
    assert float(kl_penalty(logp, ref, "mse")) == pytest.approx(0.5 * math.log(2) ** 2, rel=1e-6)
    assert float(kl_penalty(torch.zeros(1), torch.zeros(1), "low_var_kl")) == 0.0
    assert float(kl_penalty(torch.tensor([-30.0]), torch.tensor([0.0]), "low_var_kl")) == 10.0  # clamped
    with pytest.raises(ValueError, match="unknown kl_loss_type"):
        kl_penalty(logp, ref, "k4")


def test_aggregation_modes():
    values = torch.tensor([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert float(agg_loss(values, mask, "token-mean")) == pytest.approx(16 / 4)
    assert float(agg_loss(values, mask, "seq-mean-token-mean")) == pytest.approx((2 + 10) / 2)
    # a micro-batch with the mini-batch's denominator contributes its share
    assert float(agg_loss(values[:1], mask[:1], "token-mean", denominator=4)) == pytest.approx(6 / 4)


def _tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_micro_batching_does_not_change_the_update(mode):
    torch.manual_seed(1)
    B, P, R = 4, 5, 6
    ids = torch.randint(1, 40, (B, P + R))
    attn = torch.ones_like(ids)
    mask = torch.ones(B, R)
    mask[1, 3:] = 0
    mask[2, 1:] = 0
    attn[:, P:] = mask.long()
    batch = UpdateBatch(ids, attn, mask, torch.randn(B, 1) * mask, torch.randn(B, R) * 0.1 - 2, torch.randn(B, R) * 0.1 - 2)
    results = []
    for micro in (None, 1):
        model = _tiny_model()
        spec = TrainSpec(train_batch_size=2, ppo_mini_batch_size=2, micro_batch_size=micro, rollout={"n": 2},
                         optimizer={"lr": 1e-2}, algorithm={"loss_agg_mode": mode, "entropy_coeff": 0.01})
        opt, _ = build_optimizer(model, spec, total_steps=1)
        metrics = update_policy(model, opt, copy.deepcopy(batch), spec, device="cpu")
        results.append((model, metrics))
    (m_full, full), (m_micro, micro) = results
    for a, b in zip(m_full.parameters(), m_micro.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    for key in ("actor/pg_loss", "actor/kl_loss", "actor/grad_norm", "actor/pg_clipfrac", "actor/entropy_loss"):
        assert full[key] == pytest.approx(micro[key], rel=1e-4, abs=1e-7), key


def test_lr_schedule_warmup_then_cosine():
    model = _tiny_model()
    spec = TrainSpec(optimizer={"lr": 1.0, "warmup_steps": 2, "schedule": "cosine"})
    opt, sched = build_optimizer(model, spec, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[3] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lrs[5] < lrs[4] < lrs[3]
