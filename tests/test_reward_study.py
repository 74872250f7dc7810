"""Notebook 02's bookkeeping in starling_lib.reward.study: the level-2 headline numbers and the level-3
study on embedded rankings, on hand-built tables whose answers are known."""

import warnings

import numpy as np
import pandas as pd
import pytest

from starling_lib.reward import study


def test_curve_headlines_by_hand():
    # (n, loss, seed) -> gold accuracy; the given ranks agree with gold on 0.9 and 0.8 of pairs.
    gold = {(10, "kwise"): (0.70, 0.74), (10, "pairwise"): (0.69, 0.71), (40, "kwise"): (0.80, 0.82),
            (40, "pairwise"): (0.81, 0.85)}
    curve = pd.DataFrame([{"n_prompts": n, "loss": loss, "seed": s, "gold_pairwise_accuracy": acc,
                           "rank_gold_agreement": 0.9 if s == 0 else 0.8}
                          for (n, loss), accs in gold.items() for s, acc in enumerate(accs)])
    head = study.curve_headlines(curve)
    assert head["gold_means"].loc[10, "kwise"] == pytest.approx(0.72)
    assert head["gold_means"].loc[40, "pairwise"] == pytest.approx(0.83)
    assert head["gap"].to_dict() == pytest.approx({10: 0.02, 40: -0.02})  # K-wise minus pairwise
    assert head["mean_gap"] == pytest.approx(0.0)
    assert head["mean_spread"] == pytest.approx((0.04 + 0.02 + 0.02 + 0.04) / 4)  # max - min over seeds
    assert head["rank_gold_agreement"] == pytest.approx(0.85)


def _examples():
    """Six prompts, each ranked twice the same way; three answers whose rank is their length order
    (longest best), and Nectar's published ranking the reverse."""
    examples = []
    for p in range(6):
        answers = ["a" * (3 + p), "b" * (2 + p), "c" * (1 + p)]
        for strategy in ("s1", "s2"):
            examples.append({"prompt_text": f"prompt {p}", "answers": answers, "ranks": [1, 2, 3],
                             "nectar_ranks": [3, 2, 1], "strategy": strategy})
    return examples


def test_real_rankings_study_on_rankings_a_feature_explains():
    examples = _examples()
    rng = np.random.default_rng(0)
    # Feature 0 is minus the rank (a linear head can recover the order); feature 1 is noise.
    features = [np.column_stack([-np.array(e["ranks"], float), rng.normal(size=3)]) for e in examples]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rankings are separable: the ridge keeps the fit finite
        real = study.real_rankings_study(examples, features, losses=("kwise", "pairwise"), n_folds=3, repeats=2,
                                         l2=1.0, seed=0)
    acc = real.summary
    assert sorted(acc.index) == ["kwise", "length", "pairwise"]
    # Every model orders every held-out pair as GPT-4 did, and as Nectar's reversed ranking did not.
    assert (acc[["vs GPT-4 ranking", "low", "high"]] == 1.0).all().all()
    assert (acc[["vs Nectar ranking", "low ", "high "]] == 0.0).all().all()
    assert real.diff == (0.0, 0.0, 0.0)
    assert (real.n_rankings, real.n_prompts) == (12, 6)
    assert real.agreement["pairwise_agreement"] == 1.0 and real.agreement["n_prompts"] == 6
    results = real.to_results()
    assert list(results) == ["n_rankings", "n_prompts", "agreement", "diff", "summary"]
    assert results["summary"][0] == {"model": "kwise", "vs GPT-4 ranking": 1.0, "low": 1.0, "high": 1.0,
                                      "vs Nectar ranking": 0.0, "low ": 0.0, "high ": 0.0}
    assert "12 rankings of 6 prompts" in real.describe() and "+0.0000 [+0.0000, +0.0000]" in real.describe()


def test_real_rankings_study_bootstraps_over_prompts():
    # Length decides only half the pairs of prompt 0's rankings: its per-prompt accuracy is the mean over its
    # two rankings, and the interval is a bootstrap over the six prompt means (not the twelve rankings).
    examples = _examples()
    examples[0]["ranks"] = [3, 2, 1]  # prompt 0, strategy s1: GPT-4 prefers the shortest
    features = [np.column_stack([np.array([len(a) for a in e["answers"]], float), np.zeros(3)]) for e in examples]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = study.real_rankings_study(examples, features, losses=("kwise", "pairwise"), n_folds=3, repeats=1,
                                         l2=1.0, seed=0)
    length = real.summary.loc["length"]
    assert length["vs GPT-4 ranking"] == pytest.approx((0.5 + 5) / 6)  # prompt 0: (0 + 1) / 2
    assert length["low"] < length["vs GPT-4 ranking"] <= length["high"] == 1.0
    assert real.agreement["pairwise_agreement"] == pytest.approx(5 / 6)  # prompt 0's two rankings disagree on all
