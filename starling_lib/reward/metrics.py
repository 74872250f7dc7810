"""How well a reward model's scores agree with a given ranking (and, in the tiny world, a gold reward).

What it is for: every reward model of notebook 02 and of the training loop is judged by the same
few numbers, so "accuracy" means one piece of code everywhere. Starling reports the accuracy on
*adjacent* pairs of the GPT-4 ranking; we also give all pairs, top-1 and Kendall's τ, and, when a
gold reward exists (tiny world), accuracy against gold and the ceiling that the given ranking
itself reaches against gold. Plus small interval helpers (t-interval, paired difference,
bootstrap) for comparing models across prompts or folds.

Conventions (:func:`ranking_metrics`):

- ``scores``: ``(N, K)`` the model's reward for each answer of N prompts.
- ``ranks``: ``(N, K)`` the given ranking, **1 = best**, ``NaN`` where an answer is absent (rows
  may have different numbers of answers). Answer order inside a row is arbitrary: nothing here
  assumes best-first columns. Equal ranks are allowed (a tie in the given ranking).
- ``gold``: optional ``(N, K)`` true rewards, higher = better.

Credit rules: in a pair whose ranks (or gold) differ, the model gets 1 if the better answer scores
higher, 1/2 on an exact score tie, 0 otherwise. Pooled accuracies are total credit over total
pairs (so a prompt with more answers weighs more); the ``per_prompt`` arrays let callers
re-weight, bootstrap or pair prompts across models. A prompt counts (``n_prompts``, top-1, τ)
when it has at least one pair of present answers with different ranks.

Everything is numpy and vectorised over prompts: the largest intermediate is ``(N, K, K)``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def _as_float_2d(name: str, x) -> np.ndarray:
    """numpy float64 ``(N, K)`` from an array, a list of lists or a torch tensor."""
    if hasattr(x, "detach"):  # torch tensor: no torch import needed at this level
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {x.shape}")
    return x


def _pair_credit(better: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(N, K, K)`` credit of pair ``[n, i, j]`` (i should beat j): 1 if s_i > s_j, 1/2 on a tie."""
    s_i, s_j = scores[:, :, None], scores[:, None, :]
    credit = (s_i > s_j) + 0.5 * (s_i == s_j)
    return np.where(better, credit, 0.0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den``, NaN where ``den == 0``."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _dense_levels(ranks: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``(N, K)`` 0-based dense rank level of each present answer (ranks 1, 2, 2, 5 -> 0, 1, 1, 2)."""
    filled = np.where(present, ranks, np.inf)
    ordered = np.sort(filled, axis=1)                                            # (N, K)
    # A sorted value opens a new level if it is finite and differs from its left neighbour.
    opens = np.isfinite(ordered) & np.concatenate(
        [np.ones_like(ordered[:, :1], dtype=bool), ordered[:, 1:] != ordered[:, :-1]], axis=1)
    # Level of answer i = how many distinct present rank values lie strictly below its rank.
    return (opens[:, None, :] & (ordered[:, None, :] < filled[:, :, None])).sum(-1)


def _top_credit(scores: np.ndarray, present: np.ndarray, is_best: np.ndarray) -> np.ndarray:
    """``(N,)`` share of the top-scored answers (ties split the credit) that are among ``is_best``."""
    masked = np.where(present, scores, -np.inf)
    top = present & (masked == masked.max(axis=1, keepdims=True))               # (N, K)
    return _ratio((top & is_best).sum(1), top.sum(1))


def _kendall_tau_b(scores: np.ndarray, ranks: np.ndarray, both: np.ndarray) -> np.ndarray:
    """``(N,)`` Kendall's τ-b between scores and ``-ranks`` over present answers; NaN if either is constant.

    τ-b = Σ sgn(Δs)·sgn(-Δr) / sqrt(Σ sgn(Δs)² · Σ sgn(Δr)²) over pairs: numerator is
    concordant minus discordant pairs, the two sums are the pairs not tied in each variable
    (Kendall 1945; the definition scipy.stats.kendalltau uses by default).
    """
    sign_s = np.where(both, np.sign(scores[:, :, None] - scores[:, None, :]), 0.0)
    sign_r = np.where(both, np.sign(ranks[:, None, :] - ranks[:, :, None]), 0.0)  # -Δr: rank 1 is best
    # Sums over the full (K, K) square count each pair twice; the factor 2 cancels.
    return _ratio((sign_s * sign_r).sum((1, 2)), np.sqrt((sign_s ** 2).sum((1, 2)) * (sign_r ** 2).sum((1, 2))))


def ranking_metrics(scores, ranks, gold=None, per_prompt: bool = False) -> dict:
    """Agreement of a reward model's ``scores`` with a given ranking (and with ``gold``, if given).

    Args:
        scores: ``(N, K)`` model rewards; may be NaN where ``ranks`` is NaN.
        ranks: ``(N, K)`` given ranking, 1 = best, NaN = answer absent; any answer order.
        gold: optional ``(N, K)`` true rewards (higher = better); may be NaN where absent.
        per_prompt: also return ``"per_prompt"``: a dict of ``(N,)`` arrays (NaN where undefined).

    Returns:
        dict of floats:

        - ``pairwise_accuracy``: over all pairs of present answers with different ranks.
        - ``adjacent_accuracy``: over pairs adjacent in the given ranking (consecutive rank
          levels among the present answers: positions j, j+1 when there are no ties; with tied
          ranks every answer of one level is paired with every answer of the next). This is the
          accuracy Starling reports for its reward model.
        - ``top1_accuracy``: mean over prompts of "the top-scored answer is ranked best"
          (a score tie at the top splits the credit among the tied answers).
        - ``kendall_tau``: mean over prompts of Kendall's τ-b between scores and ``-ranks``;
          prompts where τ is undefined (all scores equal, or all ranks equal) are skipped.
        - ``n_prompts``, ``n_pairs``, ``n_adjacent_pairs`` (ints).
        - with ``gold``: ``gold_pairwise_accuracy`` (pairs with different gold), ``gold_top1_accuracy``
          (top-scored answer has the highest gold), ``rank_gold_agreement`` (the given ranks
          against gold on the same pairs, tied ranks 1/2: what a perfect imitator of the ranker
          would score against gold), ``n_gold_pairs``.
    """
    scores = _as_float_2d("scores", scores)
    ranks = _as_float_2d("ranks", ranks)
    if scores.shape != ranks.shape:
        raise ValueError(f"scores shape {scores.shape} does not match ranks shape {ranks.shape}")
    present = ~np.isnan(ranks)                                                   # (N, K)
    if np.isnan(scores[present]).any():
        raise ValueError(f"scores is NaN at {int(np.isnan(scores[present]).sum())} answers that ranks marks present")
    scores = np.where(present, scores, 0.0)      # absent values never enter a pair; keep them finite
    ranks_f = np.where(present, ranks, 0.0)
    both = present[:, :, None] & present[:, None, :]                             # (N, K, K)

    # [n, i, j] is a scored pair when answer i is ranked strictly better than answer j.
    better = both & (ranks_f[:, :, None] < ranks_f[:, None, :])                  # (N, K, K)
    credit = _pair_credit(better, scores)
    n_pairs = better.sum((1, 2))                                                 # (N,)
    counted = n_pairs > 0

    levels = _dense_levels(ranks, present)
    adjacent = better & (levels[:, None, :] - levels[:, :, None] == 1)
    n_adjacent = adjacent.sum((1, 2))

    top1 = _top_credit(scores, present, present & (ranks_f == np.where(present, ranks, np.inf).min(1, keepdims=True)))
    top1 = np.where(counted, top1, np.nan)
    tau = np.where(counted, _kendall_tau_b(scores, ranks_f, both), np.nan)

    rows = {
        "pairwise_accuracy": _ratio(credit.sum((1, 2)), n_pairs),
        "adjacent_accuracy": _ratio(np.where(adjacent, credit, 0.0).sum((1, 2)), n_adjacent),
        "top1_accuracy": top1,
        "kendall_tau": tau,
        "n_pairs": n_pairs,
    }
    out = {
        "pairwise_accuracy": float(_ratio(credit.sum(), n_pairs.sum())),
        "adjacent_accuracy": float(_ratio(np.where(adjacent, credit, 0.0).sum(), n_adjacent.sum())),
        "top1_accuracy": float(np.nanmean(top1)) if counted.any() else float("nan"),
        "kendall_tau": float(np.nanmean(tau)) if np.isfinite(tau).any() else float("nan"),
        "n_prompts": int(counted.sum()),
        "n_pairs": int(n_pairs.sum()),
        "n_adjacent_pairs": int(n_adjacent.sum()),
    }

    if gold is not None:
        gold = _as_float_2d("gold", gold)
        if gold.shape != ranks.shape:
            raise ValueError(f"gold shape {gold.shape} does not match ranks shape {ranks.shape}")
        if np.isnan(gold[present]).any():
            raise ValueError(f"gold is NaN at {int(np.isnan(gold[present]).sum())} answers that ranks marks present")
        gold = np.where(present, gold, 0.0)
        gold_better = both & (gold[:, :, None] > gold[:, None, :])               # (N, K, K)
        n_gold = gold_better.sum((1, 2))
        gold_credit = _pair_credit(gold_better, scores).sum((1, 2))
        # The given ranking as a "model": a lower rank is a higher score.
        rank_credit = _pair_credit(gold_better, -ranks_f).sum((1, 2))
        gold_max = gold == np.where(present, gold, -np.inf).max(1, keepdims=True)
        gold_top1 = np.where(n_gold > 0, _top_credit(scores, present, present & gold_max), np.nan)
        rows.update({
            "gold_pairwise_accuracy": _ratio(gold_credit, n_gold),
            "gold_top1_accuracy": gold_top1,
            "rank_gold_agreement": _ratio(rank_credit, n_gold),
            "n_gold_pairs": n_gold,
        })
        out.update({
            "gold_pairwise_accuracy": float(_ratio(gold_credit.sum(), n_gold.sum())),
            "gold_top1_accuracy": float(np.nanmean(gold_top1)) if (n_gold > 0).any() else float("nan"),
            "rank_gold_agreement": float(_ratio(rank_credit.sum(), n_gold.sum())),
            "n_gold_pairs": int(n_gold.sum()),
        })

    if per_prompt:
        out["per_prompt"] = rows
    return out


def _finite_1d(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64).ravel()
    return values[np.isfinite(values)]


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval of the mean of ``values`` (NaNs dropped).

    ``mean ± t_{(1+c)/2, n-1} · sd / sqrt(n)`` with the sample sd (ddof=1). With fewer than two
    values the bounds are NaN.
    """
    values = _finite_1d(values)
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    half = sps.t.ppf((1 + confidence) / 2, df=n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, float(mean - half), float(mean + half)


def paired_difference_ci(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of ``a - b`` paired element by element (per prompt, per fold, per seed).

    Pairs where either side is NaN are dropped. Pairing removes the between-prompt variance that
    two independent intervals would carry, which is what makes a small model difference visible.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must pair up: got {a.shape[0]} and {b.shape[0]} values")
    return mean_ci(a - b, confidence)


def bootstrap_ci(values, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: percentile bootstrap interval of the mean (NaNs dropped).

    Resamples are drawn in chunks so ``n_boot × len(values)`` indices never sit in memory at once.
    """
    values = _finite_1d(values)
    n = values.size
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)
    means = np.concatenate([values[rng.integers(0, n, size=(min(chunk, n_boot - start), n))].mean(1)
                            for start in range(0, n_boot, chunk)])
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(values.mean()), float(low), float(high)
