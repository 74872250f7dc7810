"""Hand-checked values of the policy-tuning losses (starling_lib.losses, "Policy tuning" section)."""

import math

import pytest
import torch
from torch.testing import assert_close

from starling_lib.losses import (
    POLICY_ALGOS,
    apa_loss,
    awr_loss,
    gae_advantages,
    kl_penalized_rewards,
    masked_mean,
    masked_whiten,
    p3o_loss,
    ppo_loss,
    sequence_logprobs,
    value_loss,
)

F64 = torch.float64


def _t(rows, dtype=F64, **kw):
    return torch.tensor(rows, dtype=dtype, **kw)


# --------------------------------------------------------------------------------------------------
# masked_mean / masked_whiten

VALUES = [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]
MASK = [[1, 1, 1], [1, 0, 0]]


def test_masked_mean_by_hand():
    values, mask = _t(VALUES), torch.tensor(MASK, dtype=torch.bool)
    # (1 + 2 + 3 + 4) / 4 = 2.5; the zeros under the mask do not count.
    assert masked_mean(values, mask).item() == 2.5
    assert_close(masked_mean(values, mask, dim=1), _t([2.0, 4.0]))
    assert_close(masked_mean(values, mask, dim=0), _t([2.5, 2.0, 3.0]))
    # An empty row averages to 0 rather than nan.
    empty = torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool)
    assert_close(masked_mean(values, empty, dim=1), _t([2.0, 0.0]))
    # Padding holds garbage: it must not leak in.
    garbage = _t([[1.0, 2.0, 3.0], [4.0, 1e6, -1e6]])
    assert masked_mean(garbage, mask).item() == 2.5


def test_masked_whiten_by_hand():
    values, mask = _t(VALUES), torch.tensor(MASK)
    # mean 2.5; unbiased var = (1.5² + 0.5² + 0.5² + 1.5²) / 3 = 5/3.
    std = math.sqrt(5 / 3)
    expected = _t([[-1.5 / std, -0.5 / std, 0.5 / std], [1.5 / std, 0.0, 0.0]])
    out = masked_whiten(values, mask, eps=0.0)
    assert_close(out, expected)
    assert out[1, 1].item() == 0.0 and out[1, 2].item() == 0.0
    kept = out[mask.bool()]
    assert_close(kept.mean(), _t(0.0), atol=1e-12, rtol=0)
    assert_close(kept.std(unbiased=True), _t(1.0))
    # Default eps changes the result only at 1e-8 relative.
    assert_close(masked_whiten(values, mask), expected, rtol=1e-7, atol=1e-7)
    # Garbage under the padding changes nothing.
    garbage = _t([[1.0, 2.0, 3.0], [4.0, 1e6, -1e6]])
    assert_close(masked_whiten(garbage, mask, eps=0.0), expected)


def test_masked_whiten_without_mean_shift_keeps_the_mean():
    values, mask = _t(VALUES), torch.tensor(MASK)
    std = math.sqrt(5 / 3)
    out = masked_whiten(values, mask, shift_mean=False, eps=0.0)
    expected = _t([[2.5 - 1.5 / std, 2.5 - 0.5 / std, 2.5 + 0.5 / std], [2.5 + 1.5 / std, 0.0, 0.0]])
    assert_close(out, expected)
    kept = out[mask.bool()]
    assert_close(kept.mean(), _t(2.5))
    assert_close(kept.std(unbiased=True), _t(1.0))


def test_masked_whiten_uses_supplied_stats():
    values, mask = _t(VALUES), torch.tensor(MASK)
    # mean 1, var 4 -> (v - 1) / 2.
    out = masked_whiten(values, mask, eps=0.0, stats=(_t(1.0), _t(4.0)))
    assert_close(out, _t([[0.0, 0.5, 1.0], [1.5, 0.0, 0.0]]))
    out = masked_whiten(values, mask, shift_mean=False, eps=0.0, stats=(_t(1.0), _t(4.0)))
    assert_close(out, _t([[1.0, 1.5, 2.0], [2.5, 0.0, 0.0]]))
    # With supplied stats a single entry is fine (the moments came from elsewhere).
    one = torch.tensor([[1, 0, 0], [0, 0, 0]])
    assert_close(masked_whiten(values, one, eps=0.0, stats=(_t(1.0), _t(4.0))),
                 _t([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


@pytest.mark.parametrize("mask", [[[1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]])
def test_masked_whiten_needs_two_entries(mask):
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(_t(VALUES), torch.tensor(mask))


# --------------------------------------------------------------------------------------------------
# kl_penalized_rewards

def test_kl_penalized_rewards_by_hand():
    beta = 0.1
    logprobs = _t([[-1.0, -2.0, -0.5, -1.5],   # full length
                   [-0.3, 9.0, 9.0, 9.0],      # length 1 (garbage in the padding)
                   [-1.0, -1.0, 5.0, 5.0]])    # length 2
    ref = _t([[-1.5, -1.0, -0.5, -2.5],
              [-0.8, 1.0, 1.0, 1.0],
              [-1.0, -3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]])
    scores = _t([2.0, -1.0, 0.5])
    # Row 0: logp - ref = (0.5, -1, 0, 1) -> -β·(...) = (-0.05, 0.1, 0, -0.1); +2 at t = 3.
    # Row 1: logp - ref = 0.5 -> -0.05, then -1 at t = 0 (its only token).
    # Row 2: logp - ref = (0, 2) -> (0, -0.2); +0.5 at t = 1.
    expected = _t([[-0.05, 0.1, 0.0, 1.9],
                   [-1.05, 0.0, 0.0, 0.0],
                   [0.0, 0.3, 0.0, 0.0]])
    out = kl_penalized_rewards(scores, logprobs, ref, mask, kl_coef=beta)
    assert out.shape == (3, 4)
    assert_close(out, expected)
    assert (out[mask == 0] == 0).all()
    # kl_coef = 0: only the scores, each on its row's last real token.
    assert_close(kl_penalized_rewards(scores, logprobs, ref, mask, kl_coef=0.0),
                 _t([[0, 0, 0, 2.0], [-1.0, 0, 0, 0], [0, 0.5, 0, 0]]))


def test_kl_penalized_rewards_rejects_bad_masks():
    x = torch.zeros(2, 4, dtype=F64)
    scores = torch.zeros(2, dtype=F64)
    with pytest.raises(ValueError, match="right-padded"):
        kl_penalized_rewards(scores, x, x, torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0]]), kl_coef=0.1)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        kl_penalized_rewards(scores, torch.zeros(2, 3, dtype=F64), x, torch.ones(2, 4), kl_coef=0.1)


# --------------------------------------------------------------------------------------------------
# gae_advantages

def _naive_gae(rewards, values, lengths, gamma, lam):
    """cleanrl-style reverse loop, one row at a time, in Python floats."""
    B, T = rewards.shape
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        L = lengths[b]
        last = 0.0
        for t in reversed(range(L)):
            next_value = values[b][t + 1].item() if t + 1 < L else 0.0
            delta = rewards[b][t].item() + gamma * next_value - values[b][t].item()
            last = delta + gamma * lam * last
            adv[b][t] = last
    return torch.tensor(adv, dtype=F64)


def _random_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = [7, 1, 4, 0, 3]
    rewards = torch.randn(5, 7, dtype=F64, generator=gen)
    values = torch.randn(5, 7, dtype=F64, generator=gen)
    mask = torch.tensor([[1] * L + [0] * (7 - L) for L in lengths])
    return rewards, values, mask, lengths


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.95), (0.9, 0.5), (1.0, 1.0), (0.8, 0.0)])
def test_gae_equals_naive_loop(gamma, lam):
    rewards, values, mask, lengths = _random_batch()
    adv, ret = gae_advantages(rewards, values, mask, gamma=gamma, lam=lam)
    expected = _naive_gae(rewards, values, lengths, gamma, lam)
    # The library computes in float32.
    assert_close(adv.double(), expected, atol=1e-5, rtol=1e-5)
    assert_close(ret.double(), (expected + values) * mask, atol=1e-5, rtol=1e-5)


def test_gae_closed_forms_for_lambda_one_and_zero():
    rewards, values, mask, lengths = _random_batch(1)
    m = mask.to(F64)
    # γ = λ = 1: Â_t = Σ_{s≥t} r_s − V_t (the V terms telescope), over the real tokens only.
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    reward_to_go = torch.flip(torch.cumsum(torch.flip(rewards * m, [1]), 1), [1])
    assert_close(adv.double(), (reward_to_go - values) * m, atol=1e-5, rtol=1e-5)
    assert_close(ret.double(), reward_to_go * m, atol=1e-5, rtol=1e-5)
    # λ = 0: Â_t = δ_t = r_t + γ V_{t+1} − V_t, with V = 0 after the last real token.
    gamma = 0.9
    adv, _ = gae_advantages(rewards, values, mask, gamma=gamma, lam=0.0)
    next_values = torch.cat([(values * m)[:, 1:], torch.zeros(5, 1, dtype=F64)], 1)
    assert_close(adv.double(), (rewards + gamma * next_values - values) * m, atol=1e-5, rtol=1e-5)


def test_gae_by_hand_1x3():
    rewards = _t([[1.0, 0.0, 2.0]])
    values = _t([[0.5, 1.0, -1.0]])
    mask = torch.ones(1, 3)
    # γ = 0.9, λ = 0.5, γλ = 0.45.
    # δ_2 = 2 + 0.9·0 − (−1) = 3;  δ_1 = 0 + 0.9·(−1) − 1 = −1.9;  δ_0 = 1 + 0.9·1 − 0.5 = 1.4
    # Â_2 = 3;  Â_1 = −1.9 + 0.45·3 = −0.55;  Â_0 = 1.4 + 0.45·(−0.55) = 1.1525
    # R = Â + V = (1.6525, 0.45, 2.0)
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    assert_close(adv.double(), _t([[1.1525, -0.55, 3.0]]), atol=1e-6, rtol=1e-6)
    assert_close(ret.double(), _t([[1.6525, 0.45, 2.0]]), atol=1e-6, rtol=1e-6)


def test_gae_returns_are_advantages_plus_values_on_the_mask():
    rewards, values, mask, _ = _random_batch(2)
    # Garbage in the padding must not leak into real positions nor show up in the padding.
    rewards = rewards.masked_fill(mask == 0, 1e3)
    values = values.masked_fill(mask == 0, -1e3)
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.99, lam=0.95)
    m = mask.to(F64)
    assert_close(ret.double(), (adv.double() + values) * m, atol=1e-5, rtol=1e-5)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()
    clean, _ = gae_advantages(rewards * m, values * m, mask, gamma=0.99, lam=0.95)
    assert_close(adv, clean)


def test_gae_carries_no_gradient():
    rewards, values, mask, _ = _random_batch(3)
    rewards.requires_grad_()
    values.requires_grad_()
    adv, ret = gae_advantages(rewards, values, mask)
    assert not adv.requires_grad and not ret.requires_grad


def test_gae_rejects_bad_shapes_and_masks():
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        gae_advantages(torch.zeros(2, 3), x, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        gae_advantages(x, torch.zeros(4, 2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="right-padded"):
        gae_advantages(x, x, torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]]))


# --------------------------------------------------------------------------------------------------
# apa_loss

def test_apa_by_hand_1x3():
    logprobs = _t([[-1.0, -0.5, -2.0]])
    anchor = _t([[-1.2, -0.5, -1.0]])
    adv = _t([[0.4, -1.0, 3.0]])
    mask = torch.tensor([[1, 1, 0]])
    # c = 0.25: logratio − c·Â = (0.2 − 0.1, 0 + 0.25, ·) = (0.1, 0.25); mean of squares over 2 tokens
    # = (0.01 + 0.0625) / 2 = 0.03625. The third token (−1 − 0.75)² is masked out.
    assert apa_loss(logprobs, anchor, adv, mask, adv_coeff=0.25).item() == pytest.approx(0.03625, abs=1e-15)
    # All tokens: (0.01 + 0.0625 + 3.0625) / 3.
    assert apa_loss(logprobs, anchor, adv, torch.ones(1, 3), adv_coeff=0.25).item() == pytest.approx(
        3.135 / 3, abs=1e-15)


def test_apa_minimiser_is_anchor_times_exp_advantage_over_lambda():
    gen = torch.Generator().manual_seed(4)
    lam = 0.5
    anchor = torch.log_softmax(torch.randn(4, dtype=F64, generator=gen), 0)[None]  # (1, 4): one state, 4 actions
    adv = torch.randn(1, 4, dtype=F64, generator=gen)
    mask = torch.ones(1, 4)
    # Literally: log π_θ(a) = log π_anchor(a) + Â(a)/λ on the sampled tokens gives 0 loss, 0 gradient.
    logprobs = (anchor + adv / lam).requires_grad_()
    loss = apa_loss(logprobs, anchor, adv, mask, adv_coeff=1 / lam)
    loss.backward()
    assert_close(loss.detach(), _t(0.0), atol=1e-28, rtol=0)
    assert_close(logprobs.grad, torch.zeros(1, 4, dtype=F64), atol=1e-14, rtol=0)

    # A normalised categorical policy: pick Â = λ(log q − log π_anchor) for a distribution q, so
    # π_anchor·exp(Â/λ) = q is normalised; softmax logits ψ = log q + const are then a stationary
    # point with zero loss, and any other policy has a positive loss.
    q = torch.softmax(torch.randn(4, dtype=F64, generator=gen), 0)[None]
    adv = lam * (q.log() - anchor)
    psi = (q.log() + 3.0).requires_grad_()
    loss = apa_loss(torch.log_softmax(psi, -1), anchor, adv, mask, adv_coeff=1 / lam)
    loss.backward()
    assert_close(loss.detach(), _t(0.0), atol=1e-28, rtol=0)
    assert_close(psi.grad, torch.zeros(1, 4, dtype=F64), atol=1e-14, rtol=0)
    other = torch.log_softmax(q.log() + _t([[0.1, 0.0, 0.0, 0.0]]), -1)
    assert apa_loss(other, anchor, adv, mask, adv_coeff=1 / lam).item() > 1e-5
    # Gradient descent from the anchor finds q.
    psi = anchor.clone().requires_grad_()
    opt = torch.optim.SGD([psi], lr=2.0)
    for _ in range(300):
        opt.zero_grad()
        apa_loss(torch.log_softmax(psi, -1), anchor, adv, mask, adv_coeff=1 / lam).backward()
        opt.step()
    assert_close(torch.softmax(psi.detach(), -1), q, atol=1e-6, rtol=0)


def test_apa_gradient_matches_formula_and_detaches_targets():
    gen = torch.Generator().manual_seed(5)
    logprobs = torch.randn(2, 5, dtype=F64, generator=gen).requires_grad_()
    anchor = torch.randn(2, 5, dtype=F64, generator=gen).requires_grad_()
    adv = torch.randn(2, 5, dtype=F64, generator=gen).requires_grad_()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    c = 0.7
    apa_loss(logprobs, anchor, adv, mask, adv_coeff=c).backward()
    n = mask.sum()
    expected = 2 * (logprobs.detach() - anchor.detach() - c * adv.detach()) / n * mask
    assert_close(logprobs.grad, expected)
    assert (logprobs.grad[mask == 0] == 0).all()
    assert anchor.grad is None and adv.grad is None


# --------------------------------------------------------------------------------------------------
# ppo_loss

def test_ppo_ratio_one_is_minus_mean_advantage():
    gen = torch.Generator().manual_seed(6)
    logprobs = torch.randn(2, 4, dtype=F64, generator=gen)
    adv = torch.randn(2, 4, dtype=F64, generator=gen)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    expected = -(adv * mask).sum() / 6
    assert_close(ppo_loss(logprobs, logprobs.clone(), adv, mask), expected)
    # At ratio 1 the gradient is −Â/n per real token (d r / d logp = r = 1).
    lp = logprobs.clone().requires_grad_()
    ppo_loss(lp, logprobs, adv, mask).backward()
    assert_close(lp.grad, -adv / 6 * mask)


@pytest.mark.parametrize("adv,ratio,loss,grad", [
    (2.0, 1.5, -2.4, 0.0),    # Â > 0, r above 1 + ε: clipped to −1.2·Â, no gradient
    (-2.0, 0.5, 1.6, 0.0),    # Â < 0, r below 1 − ε: max(1.0, 1.6) = −0.8·Â, no gradient
    (-2.0, 1.5, 3.0, 3.0),    # Â < 0, r above 1 + ε: NOT clipped, max(3.0, 2.4) = −1.5·Â; d/dlogp = −Â·r
    (2.0, 0.5, -1.0, -1.0),   # Â > 0, r below 1 − ε: NOT clipped, max(−1.0, −1.6) = −0.5·Â
    (2.0, 1.1, -2.2, -2.2),   # inside the clip range: plain −Â·r
])
def test_ppo_clipping_by_hand(adv, ratio, loss, grad):
    logprobs = _t([[math.log(ratio), 7.0]], requires_grad=True)  # second token is padding
    old = _t([[0.0, -3.0]], requires_grad=True)
    advantages = _t([[adv, 5.0]], requires_grad=True)
    mask = torch.tensor([[1, 0]])
    out = ppo_loss(logprobs, old, advantages, mask, cliprange=0.2)
    assert out.item() == pytest.approx(loss, abs=1e-12)
    out.backward()
    assert_close(logprobs.grad, _t([[grad, 0.0]]), atol=1e-12, rtol=0)
    assert old.grad is None and advantages.grad is None


def test_ppo_mixed_batch_by_hand():
    # The four clipping cases above as tokens of one row, plus a padding token: mean over 4.
    ratios = [1.5, 0.5, 1.5, 0.5, 1.0]
    logprobs = _t([[math.log(r) for r in ratios]], requires_grad=True)
    old = torch.zeros(1, 5, dtype=F64)
    adv = _t([[2.0, -2.0, -2.0, 2.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    out = ppo_loss(logprobs, old, adv, mask, cliprange=0.2)
    assert out.item() == pytest.approx((-2.4 + 1.6 + 3.0 - 1.0) / 4, abs=1e-12)
    out.backward()
    assert_close(logprobs.grad, _t([[0.0, 0.0, 0.75, -0.25, 0.0]]), atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------------
# awr_loss

def test_awr_by_hand():
    logprobs = _t([[-1.0, -2.0, -0.5, -9.0]])
    adv = _t([[0.0, math.log(2.0), math.log(3.0), 4.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # weights exp(Â) = (1, 2, 3): losses (1, 4, 1.5), mean 6.5 / 3.
    assert awr_loss(logprobs, adv, mask, beta=1.0).item() == pytest.approx(6.5 / 3, abs=1e-12)
    # β = 2: weights (1, √2, √3).
    expected = (1.0 + 2 * math.sqrt(2) + 0.5 * math.sqrt(3)) / 3
    assert awr_loss(logprobs, adv, mask, beta=2.0).item() == pytest.approx(expected, abs=1e-12)


def test_awr_weights_are_capped():
    logprobs = _t([[-1.0, -2.0, -0.5, -0.25]], requires_grad=True)
    # exp(3) = 20.09 is just over the cap; exp(1e4) overflows to inf and is still capped.
    adv = _t([[0.0, 10.0, 1e4, 3.0]], requires_grad=True)
    mask = torch.ones(1, 4)
    out = awr_loss(logprobs, adv, mask, beta=1.0, max_weight=20.0)
    assert torch.isfinite(out)
    assert out.item() == pytest.approx((1.0 + 20 * 2.0 + 20 * 0.5 + 20 * 0.25) / 4, abs=1e-12)
    out.backward()
    # d/dlogp = −w / n (n = 4, so exact), which reads the weights back: exactly max_weight.
    assert_close(logprobs.grad * 4, _t([[-1.0, -20.0, -20.0, -20.0]]), atol=0, rtol=0)
    assert adv.grad is None


# --------------------------------------------------------------------------------------------------
# value_loss

def test_value_loss_unclipped_is_half_mean_squared_error():
    gen = torch.Generator().manual_seed(7)
    values = torch.randn(2, 4, dtype=F64, generator=gen)
    returns = torch.randn(2, 4, dtype=F64, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    expected = 0.5 * (((values - returns) ** 2) * mask).sum() / 4
    # Without clipping old_values is irrelevant.
    assert_close(value_loss(values, values * 0 + 100.0, returns, mask, cliprange_value=None), expected)
    # With old_values = values the clip is a no-op.
    assert_close(value_loss(values, values.clone(), returns, mask, cliprange_value=0.2), expected)


def test_value_loss_clipped_by_hand():
    values = _t([[1.0, 2.0, 7.0]], requires_grad=True)
    old = _t([[0.0, 2.0, 0.0]], requires_grad=True)
    returns = _t([[2.0, 2.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0]])
    # t = 0: unclipped (1 − 2)² = 1; V clipped to 0 + 0.2 = 0.2, (0.2 − 2)² = 3.24: the clipped error wins.
    # t = 1: V within old ± 0.2: (2 − 2.5)² = 0.25 either way. t = 2 is padding.
    out = value_loss(values, old, returns, mask, cliprange_value=0.2)
    assert out.item() == pytest.approx(0.5 * (3.24 + 0.25) / 2, abs=1e-12)
    out.backward()
    # The winning clipped error is flat in V at t = 0; t = 1 gives (V − R)/n = −0.5/2.
    assert_close(values.grad, _t([[0.0, -0.25, 0.0]]), atol=1e-12, rtol=0)
    assert old.grad is None and returns.grad is None
    # cliprange_value=None: plain ½·mean((V − R)²) = ½·(1 + 0.25)/2.
    unclipped = value_loss(values.detach(), old, returns, mask, cliprange_value=None)
    assert unclipped.item() == pytest.approx(0.5 * 1.25 / 2, abs=1e-12)


def test_value_loss_unclipped_error_wins_when_larger():
    # V = 3, old 0, R = −1: the unclipped error (3 + 1)² = 16 beats the clipped (0.2 + 1)² = 1.44,
    # so the loss is ½·16 = 8 and V keeps its gradient (V − R)/n = 4.
    values = _t([[3.0]], requires_grad=True)
    out = value_loss(values, _t([[0.0]]), _t([[-1.0]]), torch.ones(1, 1), cliprange_value=0.2)
    assert out.item() == pytest.approx(8.0, abs=1e-12)
    out.backward()
    assert_close(values.grad, _t([[4.0]]))


# --------------------------------------------------------------------------------------------------
# p3o_loss (Wu et al. 2023): one row per prompt, its two responses as columns

def test_sequence_logprobs_sum_the_real_tokens():
    logprobs = _t([[-1.0, -2.0, -9.0], [-0.5, 4.0, 4.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert_close(sequence_logprobs(logprobs, mask), _t([-3.0, -0.5]))


@pytest.mark.parametrize("clipping", ["joint", "separate"])
def test_p3o_at_ratio_one_is_half_the_reward_difference_times_the_logprob_difference(clipping):
    old = _t([[-3.0, -4.0], [-2.0, -1.0]])
    rewards = _t([[1.0, 0.2], [-0.5, 0.5]])  # Δ = 0.8 and −1.0
    logprobs = old.clone().requires_grad_()
    out = p3o_loss(logprobs, old, rewards, clipping=clipping)
    # joint: ½·mean(−Δ·(log π(y1) − log π(y2))) = ½·mean(−0.8·1, −(−1.0)·(−1)) = −0.45; separate: ½·(−Δ·1 + Δ·1) = 0.
    assert out.item() == pytest.approx(-0.45 if clipping == "joint" else 0.0, abs=1e-12)
    out.backward()
    # −½Δ on y1, +½Δ on y2, over B = 2 pairs.
    assert_close(logprobs.grad, _t([[-0.2, 0.2], [0.25, -0.25]]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("clipping", ["joint", "separate"])
def test_p3o_gradient_through_a_softmax_policy_is_the_pairwise_policy_gradient(clipping):
    # π = softmax(θ) over 3 one-token answers, y1 = 0, y2 = 2: ∇ log π(y) = e_y − π, so
    # ∇(log π(y1) − log π(y2)) = e_0 − e_2 and the loss's gradient is −½·Δ·(e_0 − e_2) (Theorem 1 at θ_old).
    theta = _t([0.3, -1.2, 0.5], requires_grad=True)
    logprobs = torch.log_softmax(theta, -1)[[0, 2]][None, :]  # (1, 2)
    rewards = _t([[0.7, -0.1]])                                # Δ = 0.8
    p3o_loss(logprobs, logprobs.detach(), rewards, clipping=clipping).backward()
    assert_close(theta.grad, _t([-0.4, 0.0, 0.4]), atol=1e-12, rtol=0)


E3, E1 = math.exp(0.3), math.exp(0.1)


@pytest.mark.parametrize("clipping,lp,delta,loss,grad", [
    # joint: d_old = 0, d clipped to ±0.2, weight sg(ρ1·ρ2) = exp(lp1 + lp2).
    ("joint", [0.3, 0.0], 1.0, -0.1 * E3, [0.0, 0.0]),                # moved towards the better y1 past ε: no pull
    ("joint", [0.3, 0.0], -1.0, 0.15 * E3, [0.5 * E3, -0.5 * E3]),    # moved towards the worse y1: pulled back
    ("joint", [0.0, 0.3], -1.0, -0.1 * E3, [0.0, 0.0]),               # towards the better y2 past ε: no pull
    ("joint", [0.0, 0.3], 1.0, 0.15 * E3, [-0.5 * E3, 0.5 * E3]),     # towards the worse y2: pulled back
    ("joint", [0.1, 0.0], 1.0, -0.05 * E1, [-0.5 * E1, 0.5 * E1]),    # inside the region: −½·Δ·sg(ρ1ρ2)·∇d
    ("joint", [0.3, 0.3], 1.0, 0.0, [-0.5 * E3 * E3, 0.5 * E3 * E3]),  # d unchanged: the joint region does not bind
    # separate: ρ1 = e^0.3 > 1.2 with Δ > 0: y1's term is clipped (no pull); y2's, weighted by sg(ρ1),
    # still pushes y2 down.
    ("separate", [0.3, 0.0], 1.0, 0.5 * (-1.2 + E3), [0.0, 0.5 * E3]),
    # Δ < 0: y1 moved the wrong way, unclipped, pulled back; y2 (advantage +1, ρ2 = 1) pulled up.
    ("separate", [0.3, 0.0], -1.0, 0.0, [0.5 * E3, -0.5 * E3]),
    # ρ2 = e^-0.3 < 0.8 with y2's advantage −Δ < 0: clipped at 0.8 (no pull); y1 weighted by sg(ρ2).
    ("separate", [0.0, -0.3], 1.0, 0.5 * (0.8 - math.exp(-0.3)), [-0.5 * math.exp(-0.3), 0.0]),
])
def test_p3o_clipping_by_hand(clipping, lp, delta, loss, grad):
    # π_old gives both responses log-probability 0 and ε = 0.2; rewards (Δ, 0).
    logprobs = _t([lp], requires_grad=True)
    out = p3o_loss(logprobs, torch.zeros(1, 2, dtype=F64), _t([[delta, 0.0]]), cliprange=0.2, clipping=clipping)
    assert out.item() == pytest.approx(loss, abs=1e-12)
    out.backward()
    assert_close(logprobs.grad, _t([grad]), atol=1e-12, rtol=0)


def test_p3o_weight_clip_bounds_the_importance_weights():
    zeros, rewards = torch.zeros(1, 2, dtype=F64), _t([[1.0, 0.0]])
    # Joint, d = d_old: the gradient on y1 is −½·Δ·w with w = exp(1.5 + 1.5) ≈ 20.1, clamped to 10.
    for lp, w in ((1.5, 10.0), (-1.5, 0.1), (0.2, math.exp(0.4))):  # e^-3 ≈ 0.05 is raised to 1/10
        logprobs = _t([[lp, lp]], requires_grad=True)
        p3o_loss(logprobs, zeros, rewards, clipping="joint", weight_clip=10.0).backward()
        assert_close(logprobs.grad, _t([[-0.5 * w, 0.5 * w]]), atol=1e-12, rtol=0)
    unclamped = _t([[1.5, 1.5]], requires_grad=True)
    p3o_loss(unclamped, zeros, rewards, clipping="joint").backward()
    assert_close(unclamped.grad, _t([[-0.5 * math.exp(3.0), 0.5 * math.exp(3.0)]]))
    # Separate, Δ = −1, ρ1 = ρ2 = e^2.5 ≈ 12.2: y1's unclipped term has weight sg(ρ2) clamped to 10;
    # y2's term (advantage +1, ratio above 1 + ε) is clipped.
    logprobs = _t([[2.5, 2.5]], requires_grad=True)
    p3o_loss(logprobs, zeros, -rewards, clipping="separate", weight_clip=10.0).backward()
    assert_close(logprobs.grad, _t([[0.5 * 10.0 * math.exp(2.5), 0.0]]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("clipping", ["joint", "separate"])
def test_p3o_is_invariant_to_a_per_prompt_reward_shift_and_to_the_order_of_the_pair(clipping):
    gen = torch.Generator().manual_seed(8)
    old = torch.randn(5, 2, dtype=F64, generator=gen) - 3
    new = old + 0.3 * torch.randn(5, 2, dtype=F64, generator=gen)  # some pairs outside the region
    rewards = torch.randn(5, 2, dtype=F64, generator=gen)

    def loss_and_grad(lp, old_lp, r):
        lp = lp.clone().requires_grad_()
        out = p3o_loss(lp, old_lp, r, cliprange=0.2, clipping=clipping)
        out.backward()
        return out, lp.grad

    base, grad = loss_and_grad(new, old, rewards)
    shift = 100.0 * torch.randn(5, 1, dtype=F64, generator=gen)  # δ(x): equivalent rewards (Definition 1)
    shifted, shifted_grad = loss_and_grad(new, old, rewards + shift)
    assert_close(shifted, base)
    assert_close(shifted_grad, grad)
    swapped, swapped_grad = loss_and_grad(new.flip(1), old.flip(1), rewards.flip(1))
    assert_close(swapped, base)
    assert_close(swapped_grad, grad.flip(1))


def test_p3o_rejects_bad_input():
    pair = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"logprobs must be \(B, 2\)"):
        p3o_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="rewards must be"):
        p3o_loss(pair, pair, torch.zeros(3))
    with pytest.raises(ValueError, match="clipping must be one of"):
        p3o_loss(pair, pair, pair, clipping="both")
    with pytest.raises(ValueError, match="weight_clip"):
        p3o_loss(pair, pair, pair, weight_clip=0.5)


# --------------------------------------------------------------------------------------------------

def test_policy_algos():
    assert POLICY_ALGOS == ("apa", "ppo", "awr", "p3o")
