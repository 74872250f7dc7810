"""Positional bias of a K-wise judge: statistics for the Starling paper's Figure 6.

Input: rankings as *input positions best first* (``[4, 6, 5, 3, 0, 2, 1]`` = the answer shown
fifth came first), one list per prompt, for one prompting strategy. Output:

- :func:`position_stats`: first-place frequency by position with Wilson or percentile-bootstrap
  intervals, mean rank by position (1 = best) with its standard error, and a chi-square test of
  the first-place counts against the uniform ``1/K`` an unbiased judge would give when answers
  are placed at random;
- :func:`strategy_effects`: each strategy against the naive one (difference in first-place
  frequency per position, total-variation distance from uniform, and a chi-square test of
  homogeneity between the two strategies' first-place counts);
- :func:`power_analysis` / :func:`prompts_needed`: how many prompts a study needs to detect a bias
  profile of a given size with the chi-square test (non-central chi-square, checked by simulation);
- :func:`analyze_rating_log`: all of the above for an authors' rating-log folder, from the recorded
  ``ranking_order`` or (``reparse=True``) by parsing GPT-4's ``rating_text`` again, per k when a log
  mixes several; :func:`bias_report` runs it over folders for ``starling bias``.

First place needs only the top of a ranking, so incomplete rankings count there; mean rank uses
complete rankings only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from .data.nectar import log_kind, rating_log_folders, read_pointwise_log, read_rating_log
from .judge.parse import LETTERS, RankingParseError, parse_ranking
from .judge.prompts import NAIVE


def wilson_interval(successes, n: int, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions ``successes / n`` (Wilson 1927)."""
    s = np.asarray(successes, dtype=float)
    if n <= 0:
        return np.full(s.shape, np.nan), np.full(s.shape, np.nan)
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = s / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return centre - half, centre + half


def first_place_counts(orders, k: int) -> np.ndarray:
    """How often each input position was ranked first."""
    tops = [order[0] for order in orders if len(order)]
    if any(not 0 <= t < k for t in tops):
        raise ValueError(f"a ranking names a position outside 0..{k - 1}")
    return np.bincount(np.asarray(tops, dtype=int), minlength=k)[:k]


def bootstrap_interval(orders, k: int, *, n_bootstrap: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the first-place frequencies (prompts resampled)."""
    tops = np.array([order[0] for order in orders if len(order)], dtype=int)
    if len(tops) == 0:
        return np.full(k, np.nan), np.full(k, np.nan)
    rng = np.random.default_rng(seed)
    samples = tops[rng.integers(0, len(tops), size=(n_bootstrap, len(tops)))]  # (B, N)
    freqs = (samples[..., None] == np.arange(k)).mean(axis=1)  # (B, K)
    alpha = (1 - confidence) / 2
    return np.quantile(freqs, alpha, axis=0), np.quantile(freqs, 1 - alpha, axis=0)


def mean_rank_by_position(orders, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean rank (1 = best) of the answer at each input position, its standard error, and the
    number of complete rankings used."""
    full = [list(o) for o in orders if sorted(o) == list(range(k))]
    if not full:
        return np.full(k, np.nan), np.full(k, np.nan), 0
    ranks = np.argsort(np.asarray(full), axis=1) + 1  # (N, K): rank of position j
    n = len(full)
    se = ranks.std(axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(k, np.nan)
    return ranks.mean(axis=0), se, n


def chi_square_uniform(counts) -> tuple[float, int, float]:
    """Pearson chi-square of counts against a uniform distribution: ``(statistic, dof, p)``."""
    counts = np.asarray(counts, dtype=float)
    if counts.sum() == 0:
        return float("nan"), len(counts) - 1, float("nan")
    res = sps.chisquare(counts)
    return float(res.statistic), len(counts) - 1, float(res.pvalue)


def total_variation_from_uniform(freq) -> float:
    """``½ Σ |p_i − 1/K|``: the share of first places that would have to move to make them uniform."""
    freq = np.asarray(freq, dtype=float)
    return float(0.5 * np.abs(freq - 1 / len(freq)).sum())


@dataclass
class PositionStats:
    """First-place and mean-rank statistics by input position for one strategy."""

    strategy: str
    k: int
    n: int
    """Rankings with a first place."""
    first_counts: np.ndarray
    first_freq: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    ci_method: str
    confidence: float
    mean_rank: np.ndarray
    mean_rank_se: np.ndarray
    n_complete: int
    """Complete rankings (used for mean rank)."""
    chi2: float
    dof: int
    p_value: float
    extra: dict = field(default_factory=dict)
    """Context added by the caller (file, reparse counts, ...)."""

    @property
    def tv_from_uniform(self) -> float:
        return total_variation_from_uniform(self.first_freq)

    def to_dict(self, digits: int | None = None) -> dict:
        def arr(a):
            a = np.asarray(a, dtype=float)
            return [round(float(x), digits) if digits is not None else float(x) for x in a]

        return {
            "strategy": self.strategy, "k": self.k, "n": self.n,
            "first_counts": [int(c) for c in self.first_counts],
            "first_freq": arr(self.first_freq), "ci_low": arr(self.ci_low), "ci_high": arr(self.ci_high),
            "ci_method": self.ci_method, "confidence": self.confidence,
            "mean_rank": arr(self.mean_rank), "mean_rank_se": arr(self.mean_rank_se), "n_complete": self.n_complete,
            "chi2": self.chi2, "dof": self.dof, "p_value": self.p_value,
            "tv_from_uniform": self.tv_from_uniform, **self.extra,
        }


def position_stats(orders, k: int, *, strategy: str = "", ci: str = "wilson", confidence: float = 0.95,
                   n_bootstrap: int = 2000, seed: int = 0) -> PositionStats:
    """All position statistics of one set of rankings (input positions best first)."""
    orders = [list(o) for o in orders]
    counts = first_place_counts(orders, k)
    n = int(counts.sum())
    freq = counts / n if n else np.full(k, np.nan)
    if ci == "wilson":
        low, high = wilson_interval(counts, n, confidence)
    elif ci == "bootstrap":
        low, high = bootstrap_interval(orders, k, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    else:
        raise ValueError(f"ci must be 'wilson' or 'bootstrap', got {ci!r}")
    mean_rank, se, n_complete = mean_rank_by_position(orders, k)
    chi2, dof, p = chi_square_uniform(counts)
    return PositionStats(strategy, k, n, counts, freq, low, high, ci, confidence, mean_rank, se, n_complete,
                         chi2, dof, p)


def strategy_effects(results: dict[str, PositionStats], baseline: str = NAIVE) -> list[dict]:
    """Each strategy against ``baseline`` (the naive ranking by default).

    ``delta_first_freq``: first-place frequency minus the baseline's, per position;
    ``tv_from_uniform`` and its change from the baseline (negative = less biased);
    ``homogeneity_p``: chi-square test that both strategies share one first-place distribution.
    """
    if baseline not in results:
        raise KeyError(f"baseline strategy {baseline!r} not among {list(results)}")
    base = results[baseline]
    rows = []
    for name, st in results.items():
        table = np.vstack([st.first_counts, base.first_counts])
        table = table[:, table.sum(axis=0) > 0]  # columns of zeros carry no information
        if name == baseline or table.shape[1] < 2:
            p_hom = float("nan")
        else:
            p_hom = float(sps.chi2_contingency(table, correction=False).pvalue)
        rows.append({
            "strategy": name, "n": st.n,
            "first_freq_A": float(st.first_freq[0]),
            "delta_first_freq": [float(x) for x in st.first_freq - base.first_freq],
            "tv_from_uniform": st.tv_from_uniform,
            "delta_tv": st.tv_from_uniform - base.tv_from_uniform,
            "chi2_uniform_p": st.p_value,
            "homogeneity_p": p_hom,
        })
    return rows


def power_analytic(frequencies, n: int, alpha: float = 0.05) -> float:
    """Power of the chi-square uniformity test with ``n`` prompts when the true first-place
    distribution is ``frequencies`` (non-central chi-square, ``λ = n·K·Σ(p_i − 1/K)²``)."""
    p = np.asarray(frequencies, dtype=float)
    p = p / p.sum()
    k = len(p)
    ncp = n * k * float(((p - 1 / k) ** 2).sum())
    crit = sps.chi2.ppf(1 - alpha, k - 1)
    return float(sps.ncx2.sf(crit, k - 1, ncp)) if ncp > 0 else float(alpha)


def power_simulated(frequencies, n: int, alpha: float = 0.05, n_sim: int = 400, seed: int = 0) -> float:
    """Share of ``n_sim`` simulated studies (multinomial first places) whose chi-square test rejects."""
    p = np.asarray(frequencies, dtype=float)
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, p, size=n_sim)  # (S, K)
    expected = n / len(p)
    stat = ((counts - expected) ** 2 / expected).sum(axis=1)
    return float((stat > sps.chi2.ppf(1 - alpha, len(p) - 1)).mean())


def power_analysis(frequencies, n_grid, *, alpha: float = 0.05, n_sim: int = 400, seed: int = 0) -> list[dict]:
    """Power at each study size in ``n_grid``, analytic and simulated."""
    return [{"n": int(n), "power_analytic": power_analytic(frequencies, n, alpha),
             "power_simulated": power_simulated(frequencies, n, alpha, n_sim, seed + i)}
            for i, n in enumerate(n_grid)]


def prompts_needed(frequencies, *, power: float = 0.8, alpha: float = 0.05, n_max: int = 10**7) -> int | None:
    """Smallest number of prompts whose chi-square test reaches ``power`` (``None`` if unbiased)."""
    p = np.asarray(frequencies, dtype=float)
    if total_variation_from_uniform(p / p.sum()) < 1e-12:
        return None
    lo, hi = 1, 1
    while power_analytic(p, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > n_max:
            return None
    while lo < hi:  # power is increasing in n
        mid = (lo + hi) // 2
        if power_analytic(p, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


def scaled_profile(frequencies, scale: float) -> np.ndarray:
    """A bias profile ``scale`` times as far from uniform (0 = uniform, 1 = as given)."""
    p = np.asarray(frequencies, dtype=float)
    p = p / p.sum()
    q = 1 / len(p) + scale * (p - 1 / len(p))
    if (q < 0).any():
        raise ValueError(f"scale {scale} makes a frequency negative")
    return q


@dataclass
class RatingLogBias:
    """Bias statistics of one rating-log folder, with reparse diagnostics when asked.

    ``stats`` is the K-wise ranking at the log's largest k (Figure 6's logs hold k = 7 only); a log
    with several k (the agreement logs: k = 2..7 per prompt) has every k in ``by_k``, each against 1/k.
    """

    strategy: str
    path: str
    stats: PositionStats
    reparse: dict | None = None
    by_k: dict[int, PositionStats] = field(default_factory=dict)

    def to_dict(self, digits: int | None = None) -> dict:
        out = {"strategy": self.strategy, "path": self.path, **self.stats.to_dict(digits)}
        if self.reparse is not None:
            out["reparse"] = self.reparse
        if len(self.by_k) > 1:
            out["by_k"] = {k: st.to_dict(digits) for k, st in sorted(self.by_k.items())}
        return out


def analyze_rating_log(path, *, reparse: bool = False, ci: str = "wilson", confidence: float = 0.95,
                       n_bootstrap: int = 2000, seed: int = 0) -> RatingLogBias:
    """First-place statistics of an authors' rating log (``rankings.jsonl`` or its folder), per k.

    ``reparse=False`` trusts the recorded ``ranking_order``. ``reparse=True`` parses GPT-4's
    ``rating_text`` with :func:`parse_ranking` instead and reports how often that agrees with the
    recorded order (over rows whose recorded order is a full permutation), and how many rows are
    incomplete or unparseable (those are counted, not dropped silently).
    """
    path = Path(path)
    rows, _report = read_rating_log(path, strict=True)
    strategy = (path.parent if path.is_file() else path).name
    if not rows:
        raise ValueError(f"{path}: no rows")
    rows_by_k: dict[int, list[dict]] = {}
    for r in rows:
        rows_by_k.setdefault(int(r["k"]), []).append(r)
    info = None
    if not reparse:
        orders = {k: [r["ranking_order"] for r in group] for k, group in rows_by_k.items()}
    else:
        orders, n_agree, n_full_recorded, n_incomplete, problems = {k: [] for k in rows_by_k}, 0, 0, 0, {}
        for r in rows:
            k = int(r["k"])
            recorded_full = bool(r["ranking_complete"])
            n_full_recorded += recorded_full
            try:
                parsed = parse_ranking(r["rating_text"], k)
            except RankingParseError as err:
                problems[err.reason] = problems.get(err.reason, 0) + 1
                continue
            n_incomplete += not parsed.complete
            orders[k].append(list(parsed))
            n_agree += recorded_full and list(parsed) == list(r["ranking_order"])
        info = {"n_rows": len(rows), "n_parsed": sum(map(len, orders.values())), "n_incomplete": n_incomplete,
                "n_unparseable": sum(problems.values()), "unparseable_by_reason": problems,
                "n_recorded_full": n_full_recorded, "n_agree": n_agree,
                "agreement": n_agree / n_full_recorded if n_full_recorded else float("nan")}
    by_k = {k: position_stats(orders[k], k, strategy=strategy, ci=ci, confidence=confidence,
                              n_bootstrap=n_bootstrap, seed=seed) for k in sorted(rows_by_k)}
    return RatingLogBias(strategy, str(path), by_k[max(by_k)], info, by_k)


@dataclass
class BiasReport:
    """What ``starling bias`` prints: each log's first places (per k), effects against the naive
    strategy among the K-wise logs that share its k, and pointwise logs, which have no positions."""

    logs: list[RatingLogBias]
    reparse: bool
    pointwise: list[dict] = field(default_factory=list)
    effects_vs_naive: list[dict] | None = None

    def to_dict(self) -> dict:
        out = {"reparse": self.reparse, "logs": [r.to_dict() for r in self.logs]}
        if self.pointwise:
            out["pointwise_logs"] = self.pointwise
        if self.effects_vs_naive is not None:
            out["effects_vs_naive"] = self.effects_vs_naive
        return out

    def format_text(self) -> str:
        source = "reparsed rating_text" if self.reparse else "recorded ranking_order"
        lines = [f"first-place frequency by input position ({source}; 1/k if unbiased)"]
        k_max = max((r.stats.k for r in self.logs), default=0)
        if self.logs:
            lines.append(f"{'strategy':38s} {'k':>2s} {'n':>4s}  " + " ".join(f"{c:>5s}" for c in LETTERS[:k_max])
                         + "   1/k    chi2 p")
        for r in self.logs:
            for k, st in sorted(r.by_k.items(), reverse=True):  # largest k first, under the log's name
                cells = " ".join(f"{x:5.3f}" for x in st.first_freq) + "      " * (k_max - k)
                name = r.strategy if k == r.stats.k else ""
                lines.append(f"{name:38s} {k:2d} {st.n:4d}  {cells}   {1 / k:.3f}  {st.p_value:.2g}")
        if self.reparse:
            for r in self.logs:
                rp = r.reparse
                lines.append(f"{r.strategy}: parsed {rp['n_parsed']}/{rp['n_rows']}, agreement with ranking_order "
                             f"{rp['n_agree']}/{rp['n_recorded_full']} ({rp['agreement']:.1%}), "
                             f"incomplete {rp['n_incomplete']}, unparseable {rp['n_unparseable']}")
        for p in self.pointwise:
            lines.append(f"{p['strategy']}: pointwise log, {p['n_rows']} answers of {p['n_prompts']} prompts scored "
                         "one at a time: no input positions (see `starling experiments pointwise`)")
        return "\n".join(lines)


def bias_report(paths, *, reparse: bool = False, ci: str = "wilson", confidence: float = 0.95) -> BiasReport:
    """:func:`analyze_rating_log` on every rating-log folder in ``paths`` (folders, or folders of them)."""
    folders = [folder for path in paths for folder in rating_log_folders(path)]
    logs, pointwise = [], []
    for folder in folders:
        if log_kind(folder) == "pointwise-log":
            rows, report = read_pointwise_log(folder)
            pointwise.append({"strategy": folder.name, "path": report.path, "kind": report.format,
                              "n_rows": len(rows), "n_prompts": report.n_prompts})
        else:
            logs.append(analyze_rating_log(folder, reparse=reparse, ci=ci, confidence=confidence))
    report = BiasReport(logs, reparse, pointwise)
    naive = next((r for r in logs if r.strategy == NAIVE), None)
    names = [r.strategy for r in logs]
    if naive is not None and len(set(names)) == len(names):
        same_k = {r.strategy: r.by_k[naive.stats.k] for r in logs if naive.stats.k in r.by_k}
        report.effects_vs_naive = strategy_effects(same_k)
    return report
