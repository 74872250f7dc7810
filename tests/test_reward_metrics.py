"""Hand-checked values of the reward-model ranking metrics (starling_lib.reward.metrics)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from starling_lib.reward.metrics import bootstrap_ci, mean_ci, paired_difference_ci, ranking_metrics

nan = float("nan")

# Three prompts, K = 4, answers in arbitrary column order (never best-first).
#
# A: answer 1 absent. Present, best first: a2 (s .2), a0 (s .5), a3 (s .1).
#    pairs (better, worse): (a2,a0) .2<.5 -> 0; (a2,a3) -> 1; (a0,a3) -> 1       pairwise 2/3
#    adjacent (a2,a0) 0, (a0,a3) 1                                               adjacent 1/2
#    top-scored a0 has rank 2                                                    top-1 0
#    τ-b: 2 concordant, 1 discordant, no ties -> (2-1)/3                         τ 1/3
# B: score tie. Best first: a1 (s 2), a3 (s 2), a0 (s 1), a2 (s 0).
#    pairs: (a1,a3) tie 1/2, the other five correct                              pairwise 5.5/6
#    adjacent (a1,a3) 1/2, (a3,a0) 1, (a0,a2) 1                                  adjacent 2.5/3
#    top-scored a1, a3 tie; only a1 is rank 1                                    top-1 1/2
#    τ-b: C - D = 5, pairs untied in scores 5, in ranks 6 -> 5/sqrt(30)
# C: scores exactly reversed                                                     0/6, 0/3, 0, τ -1
RANKS = [[2, nan, 1, 3], [3, 1, 4, 2], [1, 2, 3, 4]]
SCORES = [[0.5, nan, 0.2, 0.1], [1.0, 2.0, 0.0, 2.0], [0.0, 1.0, 2.0, 3.0]]
# Gold (higher = better).
# A: present gold a0 1, a3 .5, a2 0. Gold pairs (a0,a3) s .5>.1 1; (a0,a2) .5>.2 1; (a3,a2) .1<.2 0 -> 2/3;
#    top-scored a0 is gold-best -> 1; the ranks on those pairs: (a0,a3) 2<3 1, (a0,a2) 0, (a3,a2) 0 -> 1/3.
# B: gold a1 = a3 = 1 > a0 = a2 = 0: 4 gold pairs, all scored right -> 4/4; top a1, a3 both gold-best -> 1;
#    ranks agree on all four -> 4/4.
# C: gold agrees with ranks: scores 0/6, top-1 0, ranks 6/6.
GOLD = [[1.0, nan, 0.0, 0.5], [0.0, 1.0, 0.0, 1.0], [3.0, 2.0, 1.0, 0.0]]


def test_three_prompts_by_hand():
    m = ranking_metrics(SCORES, RANKS)
    assert m["pairwise_accuracy"] == pytest.approx((2 + 5.5 + 0) / (3 + 6 + 6))   # 0.5
    assert m["adjacent_accuracy"] == pytest.approx((1 + 2.5 + 0) / (2 + 3 + 3))   # 0.4375
    assert m["top1_accuracy"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert m["kendall_tau"] == pytest.approx((1 / 3 + 5 / math.sqrt(30) - 1) / 3)
    assert (m["n_prompts"], m["n_pairs"], m["n_adjacent_pairs"]) == (3, 15, 8)
    assert "gold_pairwise_accuracy" not in m and "per_prompt" not in m


def test_gold_metrics_by_hand():
    m = ranking_metrics(SCORES, RANKS, gold=GOLD)
    assert m["gold_pairwise_accuracy"] == pytest.approx((2 + 4 + 0) / (3 + 4 + 6))
    assert m["gold_top1_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["rank_gold_agreement"] == pytest.approx((1 + 4 + 6) / 13)
    assert m["n_gold_pairs"] == 13


def test_per_prompt_arrays():
    pp = ranking_metrics(SCORES, RANKS, gold=GOLD, per_prompt=True)["per_prompt"]
    np.testing.assert_allclose(pp["pairwise_accuracy"], [2 / 3, 5.5 / 6, 0])
    np.testing.assert_allclose(pp["adjacent_accuracy"], [1 / 2, 2.5 / 3, 0])
    np.testing.assert_allclose(pp["top1_accuracy"], [0, 0.5, 0])
    np.testing.assert_allclose(pp["kendall_tau"], [1 / 3, 5 / math.sqrt(30), -1])
    np.testing.assert_array_equal(pp["n_pairs"], [3, 6, 6])
    np.testing.assert_allclose(pp["gold_pairwise_accuracy"], [2 / 3, 1, 0])
    np.testing.assert_allclose(pp["rank_gold_agreement"], [1 / 3, 1, 1])


def test_tied_ranks_pair_levels_and_tied_best():
    # Ranks 1, 2, 2, 3 (a1 and a2 tied): no pair between a1 and a2; adjacent levels pair
    # a0 with a1 and a2, and a1, a2 with a3. Scores 1.5, 2, 1, 0:
    # pairs (a0,a1) 0, (a0,a2) 1, (a0,a3) 1, (a1,a3) 1, (a2,a3) 1 -> 4/5; adjacent 3/4 (all but a0,a3).
    m = ranking_metrics([[1.5, 2.0, 1.0, 0.0]], [[1, 2, 2, 3]])
    assert (m["pairwise_accuracy"], m["n_pairs"]) == (pytest.approx(4 / 5), 5)
    assert (m["adjacent_accuracy"], m["n_adjacent_pairs"]) == (pytest.approx(3 / 4), 4)
    assert m["top1_accuracy"] == 0.0
    # Two answers share rank 1: the top-scored one is either of them -> full credit.
    assert ranking_metrics([[0.0, 5.0, 1.0]], [[1, 1, 2]])["top1_accuracy"] == 1.0


def test_rows_without_pairs_do_not_count():
    # Row 2 has one present answer, row 3 ranks all answers equal: neither has a pair.
    m = ranking_metrics([[1.0, 0.0], [3.0, nan], [1.0, 2.0]], [[1, 2], [1, nan], [1, 1]], per_prompt=True)
    assert (m["n_prompts"], m["n_pairs"], m["pairwise_accuracy"], m["top1_accuracy"]) == (1, 1, 1.0, 1.0)
    assert np.isnan(m["per_prompt"]["pairwise_accuracy"][1:]).all()
    assert np.isnan(m["per_prompt"]["top1_accuracy"][1:]).all()


def test_kendall_tau_matches_scipy_and_constant_rows_are_skipped():
    rng = np.random.default_rng(0)
    ranks = np.stack([rng.permutation(7) + 1 for _ in range(20)]).astype(float)
    scores = np.round(rng.normal(size=(20, 7)), 1)   # rounding makes some score ties
    tau = ranking_metrics(scores, ranks, per_prompt=True)["per_prompt"]["kendall_tau"]
    expected = [sps.kendalltau(s, -r).statistic for s, r in zip(scores, ranks)]
    np.testing.assert_allclose(tau, expected, atol=1e-12)
    # A constant score row has no τ (scipy gives NaN too): the mean skips it.
    scores[0] = 1.0
    m = ranking_metrics(scores, ranks, per_prompt=True)
    assert np.isnan(m["per_prompt"]["kendall_tau"][0])
    assert m["kendall_tau"] == pytest.approx(np.mean(expected[1:]))


def test_permuting_answers_within_rows_changes_nothing():
    rng = np.random.default_rng(1)
    scores, ranks, gold = (np.array(x, dtype=float) for x in (SCORES, RANKS, GOLD))
    order = np.stack([rng.permutation(4) for _ in range(3)])
    shuffled = [np.take_along_axis(x, order, axis=1) for x in (scores, ranks, gold)]
    a, b = ranking_metrics(scores, ranks, gold), ranking_metrics(*shuffled)
    assert a == pytest.approx(b, nan_ok=True)


def test_torch_and_list_inputs():
    as_torch = ranking_metrics(torch.tensor(SCORES), torch.tensor(RANKS), torch.tensor(GOLD))
    assert as_torch == pytest.approx(ranking_metrics(SCORES, RANKS, GOLD))


def test_shape_and_nan_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"scores shape \(2, 3\) does not match ranks shape \(2, 4\)"):
        ranking_metrics(np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"ranks must be \(N, K\), got shape \(4,\)"):
        ranking_metrics(np.zeros((1, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"gold shape \(1, 3\) does not match ranks shape \(1, 4\)"):
        ranking_metrics(np.zeros((1, 4)), [[1, 2, 3, 4]], gold=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="scores is NaN at 1 answers"):
        ranking_metrics([[nan, 1.0]], [[1, 2]])


def test_mean_ci_by_hand():
    # 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.290994, se 0.645497, t_{0.975, 3} = 3.182446
    # -> half-width 2.054260, interval (0.445740, 4.554260).
    mean, low, high = mean_ci([1, 2, 3, 4])
    assert (mean, low, high) == pytest.approx((2.5, 0.445740, 4.554260), abs=1e-6)
    # NaNs are dropped; one value has no interval.
    assert mean_ci([1, 2, 3, 4, nan]) == pytest.approx((mean, low, high))
    assert mean_ci([7.0])[0] == 7.0 and np.isnan(mean_ci([7.0])[1])


def test_paired_difference_ci_is_the_ci_of_differences():
    # a - b = 1, 2, 3, 4: the same interval as above.
    assert paired_difference_ci([2, 3, 5, 6], [1, 1, 2, 2]) == pytest.approx((2.5, 0.445740, 4.554260), abs=1e-6)
    with pytest.raises(ValueError, match="pair up"):
        paired_difference_ci([1, 2], [1, 2, 3])


def test_bootstrap_ci_close_to_t_interval():
    values = np.random.default_rng(2).normal(loc=1.0, size=400)
    mean, low, high = bootstrap_ci(values, n_boot=2000, seed=0)
    t_mean, t_low, t_high = mean_ci(values)
    assert mean == pytest.approx(t_mean) and low < mean < high
    assert high - low == pytest.approx(t_high - t_low, rel=0.15)
    assert bootstrap_ci(values, n_boot=2000, seed=0) == (mean, low, high)   # deterministic in the seed
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
