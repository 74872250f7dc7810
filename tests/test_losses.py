"""Hand-checked values of the preference losses (starling_lib.losses)."""

import itertools
import math

import pytest
import torch

from starling_lib.losses import pairwise_loss, plackett_luce_loss, ranking_loss


def _bt(x: float) -> float:
    """-log σ(x), by hand."""
    return math.log1p(math.exp(-x))


def test_two_scalars_equal_minus_log_sigmoid():
    # r_chosen = 2.0, r_rejected = 0.5: -log σ(1.5) = log(1 + e^-1.5) = 0.201413...
    rewards = torch.tensor([[2.0, 0.5]])
    expected = 0.2014132779827524
    assert _bt(1.5) == pytest.approx(expected, abs=1e-12)
    assert plackett_luce_loss(rewards).item() == pytest.approx(expected, abs=1e-6)
    assert pairwise_loss(rewards).item() == pytest.approx(expected, abs=1e-6)
    assert pairwise_loss(rewards, pairs="adjacent").item() == pytest.approx(expected, abs=1e-6)


def test_k2_plackett_luce_equals_bradley_terry_on_a_batch():
    rewards = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.allclose(plackett_luce_loss(rewards, reduction="none"), pairwise_loss(rewards, reduction="none"))
    assert torch.allclose(plackett_luce_loss(rewards), pairwise_loss(rewards))


def test_three_answers_by_hand():
    # r = (1, 0, -1), best first. PL: -[1 - log(e + 1 + e^-1)] - [0 - log(1 + e^-1)].
    rewards = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    pl = -(1 - math.log(math.e + 1 + math.exp(-1))) - (0 - math.log(1 + math.exp(-1)))
    assert plackett_luce_loss(rewards).item() == pytest.approx(pl, abs=1e-12)
    # All pairs: (1,0), (1,-1), (0,-1) -> differences 1, 2, 1; mean over 3 pairs.
    assert pairwise_loss(rewards).item() == pytest.approx((_bt(1) + _bt(2) + _bt(1)) / 3, abs=1e-12)
    # Adjacent: (1,0), (0,-1).
    assert pairwise_loss(rewards, pairs="adjacent").item() == pytest.approx(_bt(1), abs=1e-12)
    # Margin 0.5 shifts every difference.
    assert pairwise_loss(rewards, margin=0.5).item() == pytest.approx(
        (_bt(0.5) + _bt(1.5) + _bt(0.5)) / 3, abs=1e-12)
    # Top-1 truncation keeps only the first choice.
    assert plackett_luce_loss(rewards, top_k=1).item() == pytest.approx(
        -(1 - math.log(math.e + 1 + math.exp(-1))), abs=1e-12)


def _brute_force_pl_probability(scores: list[float]) -> float:
    """P(order 0 > 1 > ... > K-1) as the product of successive softmax choices, in plain Python."""
    prob, remaining = 1.0, list(range(len(scores)))
    for i in range(len(scores)):
        weights = [math.exp(scores[j]) for j in remaining]
        prob *= math.exp(scores[i]) / sum(weights)
        remaining.remove(i)
    return prob


def test_plackett_luce_equals_brute_force_and_is_a_distribution():
    scores = [0.3, -1.2, 2.0, 0.0, 0.7]
    rewards = torch.tensor([scores], dtype=torch.float64)
    assert plackett_luce_loss(rewards).item() == pytest.approx(-math.log(_brute_force_pl_probability(scores)), abs=1e-12)
    # Summed over all 5! orders, the PL probabilities add to 1.
    total = 0.0
    for order in itertools.permutations(range(5)):
        ordered = torch.tensor([[scores[i] for i in order]], dtype=torch.float64)
        total += math.exp(-plackett_luce_loss(ordered).item())
    assert total == pytest.approx(1.0, abs=1e-12)


def test_permutation_invariance_when_ranks_move_with_answers():
    # The losses read "best first" from column order; the trainer builds that order from ranks.
    # Shuffling answers together with their ranks, then re-sorting by rank, gives the same loss.
    gen = torch.Generator().manual_seed(1)
    rewards = torch.randn(8, 7, dtype=torch.float64, generator=gen)
    ranks = torch.stack([torch.randperm(7, generator=gen) for _ in range(8)]).double() + 1

    def loss_from(rewards, ranks, fn):
        order = torch.argsort(ranks, dim=-1)
        return fn(torch.gather(rewards, 1, order))

    perm = torch.randperm(7, generator=gen)
    for fn in (plackett_luce_loss, pairwise_loss, lambda r: pairwise_loss(r, pairs="adjacent")):
        assert torch.allclose(loss_from(rewards, ranks, fn), loss_from(rewards[:, perm], ranks[:, perm], fn))
    # ...and a row's position in the batch does not matter either.
    rows = torch.randperm(8, generator=gen)
    assert torch.allclose(plackett_luce_loss(rewards, reduction="none")[rows],
                          plackett_luce_loss(rewards[rows], reduction="none"))
    # Adding a constant to a row changes nothing (both models see only differences).
    shifted = rewards + torch.randn(8, 1, dtype=torch.float64, generator=gen) * 100
    assert torch.allclose(plackett_luce_loss(rewards), plackett_luce_loss(shifted))
    assert torch.allclose(pairwise_loss(rewards), pairwise_loss(shifted))


def test_mask_equals_dropping_the_absent_answers():
    gen = torch.Generator().manual_seed(2)
    rewards = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    mask = torch.tensor([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], dtype=torch.bool)
    for b in range(3):
        kept = rewards[b][mask[b]][None]
        for fn in (plackett_luce_loss, lambda r, m=None, **kw: pairwise_loss(r, m, pairs="adjacent", **kw)):
            assert fn(rewards, mask, reduction="none")[b].item() == pytest.approx(fn(kept, reduction="sum").item(), abs=1e-12)
        # Pairwise sum over the present pairs of row b.
        assert pairwise_loss(rewards, mask, reduction="none")[b].item() == pytest.approx(
            pairwise_loss(kept, reduction="sum").item(), abs=1e-12)
    # "mean" of the pairwise loss weights every pair equally (6 + 10 + 1 pairs).
    per_pair_total = pairwise_loss(rewards, mask, reduction="sum")
    assert pairwise_loss(rewards, mask).item() == pytest.approx(per_pair_total.item() / 17, abs=1e-12)
    # A row with a single answer contributes nothing and is not counted in the PL mean.
    one = torch.tensor([[1, 0, 0, 0, 0]], dtype=torch.bool).expand(3, 5).clone()
    one[1] = True
    assert plackett_luce_loss(rewards, one).item() == pytest.approx(plackett_luce_loss(rewards[1:2]).item(), abs=1e-12)


def test_gradients_finite_with_large_rewards_and_masks():
    rewards = torch.tensor([[1e4, -1e4, 3e4, 0.0], [5e3, 5e3, -5e3, 1e4]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)
    loss = plackett_luce_loss(rewards, mask) + pairwise_loss(rewards, mask) + pairwise_loss(rewards, mask, pairs="adjacent")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(rewards.grad).all()
    assert rewards.grad[0, 3] == 0 and rewards.grad[1, 1] == 0  # absent answers get no gradient
    # bf16 too (the trainer runs under autocast).
    half = rewards.detach().bfloat16().requires_grad_()
    plackett_luce_loss(half, mask).backward()
    assert torch.isfinite(half.grad).all()


def test_gradient_of_pl_matches_autograd_formula():
    # d/dr_i of -log P = -1[i chosen] + Σ_{j chosen, j <= i} softmax_j..K(r)_i
    rewards = torch.tensor([[0.5, -0.3, 1.2]], dtype=torch.float64, requires_grad=True)
    plackett_luce_loss(rewards).backward()
    r = rewards.detach()[0]
    p0 = torch.softmax(r, 0)
    p1 = torch.softmax(r[1:], 0)
    expected = torch.stack([-1 + p0[0], -1 + p0[1] + p1[0], p0[2] + p1[1]])
    assert torch.allclose(rewards.grad[0], expected)


def test_ranking_loss_switch_and_errors():
    rewards = torch.tensor([[1.0, 0.0, -1.0]])
    assert ranking_loss(rewards, "kwise") == plackett_luce_loss(rewards)
    assert ranking_loss(rewards, "pairwise") == pairwise_loss(rewards)
    assert ranking_loss(rewards, "adjacent") == pairwise_loss(rewards, pairs="adjacent")
    with pytest.raises(ValueError, match="loss_type"):
        ranking_loss(rewards, "listnet")
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        plackett_luce_loss(torch.zeros(3))
    with pytest.raises(ValueError, match="mask shape"):
        pairwise_loss(rewards, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="top_k"):
        plackett_luce_loss(rewards, top_k=0)
