"""The Starling authors' other judge experiments: K-wise rankings against pairwise calls, and pointwise scores.

Besides Figure 6's prompting strategies the authors tried two other ways of using GPT-4 as a judge
(logs in ``nectar/ratings/results/`` of their repository; ``starling_experiments/`` here). The blog:
"we have also explored having GPT-4 score or judge each prompt individually before summarizing in a
7-wise ranking, but this method did not effectively diminish the bias". Two analyses:

- :func:`pairwise_agreement`: in the agreement logs each prompt is ranked K-wise for k = 7..2 over
  a shrinking answer set, and for each adjacent pair ``(ranking_order[i], ranking_order[i+1])`` of
  the K-wise order a separate 2-answer GPT-4 call picks a winner, ``pairwise[i]`` (an input
  position). A row's error is the fraction of ``i`` with ``ranking_order[i] != pairwise[i]`` (the
  authors' definition); rows with an empty ``pairwise`` are left out and counted. Mean error per k
  with a Student-t interval over rows. ``log_args.txt`` says whether the K-wise prompt asked for
  explanations (``explain``) and whether each pair was shown in random order (``shuffle``).
- :func:`compare_with_ranking`: GPT-4's 1-10 score of each answer on its own
  (``pointwise_rating_better_prompt``) against the adjacent answers of a 7-wise ranking of the same
  prompts (``pointwise_pairwise_baseline``): does the better-ranked answer score higher (agree),
  lower (disagree) or the same (tie)? Answers are matched by ``(prompt, answer text)``, the mean
  taken where one text was scored more than once. (The authors' notebook matches by model name;
  46 of the 98 rankings hold two answers from the same model, so that turns different answers into
  ties: ``match="model"`` reproduces it for comparison.)

Layer: beside ``bias.py``, above ``data`` (it reads logs through ``data.nectar``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats as sps

from .data.nectar import log_kind, rating_log_folders, read_pointwise_log, read_rating_log
from .data.schema import NectarFormatError

OUTCOMES = ("tie", "agree", "disagree")
MATCHES = ("text", "model")
_FLAG = re.compile(r"\b(explain|shuffle|do_pairwise)=(True|False)\b")


# ----------------------------------------------------------------------- K-wise vs pairwise calls

@dataclass
class AgreementAtK:
    """How often a K-wise ranking's adjacent order disagrees with separate pairwise calls, at one k."""

    k: int
    n_rows: int
    """Rows with a pairwise call (those used)."""
    n_left_out: int
    """Rows of this k with an empty ``pairwise``."""
    n_pairs: int
    n_disagree: int
    mean_error: float
    """Mean over rows of the fraction of adjacent pairs the pairwise call decided the other way."""
    ci_low: float
    ci_high: float


def pairwise_agreement(rows: list[dict], *, confidence: float = 0.95, path: str | None = None) -> list[AgreementAtK]:
    """Per k, the authors' error rate of the K-wise order against the pairwise calls (module docstring).

    ``rows`` are ranking-log rows (:func:`read_rating_log`) carrying ``pairwise``: a list of input
    positions, one per adjacent pair of ``ranking_order``, or empty when no call was made.
    """
    errors: dict[int, list[float]] = {}
    pairs: Counter[int] = Counter()
    disagree: Counter[int] = Counter()
    left_out: Counter[int] = Counter()
    for i, row in enumerate(rows):
        k, order, calls = int(row["k"]), row["ranking_order"], row.get("pairwise")
        if not (isinstance(calls, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in calls)):
            raise NectarFormatError("wrong_type", f"pairwise must be a list of input positions, got {calls!r:.60}",
                                    path=path, row=i, field="pairwise")
        if not calls:
            left_out[k] += 1
            continue
        if len(calls) > len(order) - 1:
            raise NectarFormatError("wrong_num_answers", f"{len(calls)} pairwise winners for a ranking of "
                                    f"{len(order)} (one per adjacent pair)", path=path, row=i, field="pairwise")
        wrong = sum(order[j] != calls[j] for j in range(len(calls)))
        errors.setdefault(k, []).append(wrong / len(calls))
        pairs[k] += len(calls)
        disagree[k] += wrong
    result = []
    for k in sorted(set(errors) | set(left_out)):
        e = np.asarray(errors.get(k, []), dtype=float)
        low, high = t_interval(e, confidence)
        result.append(AgreementAtK(k, len(e), left_out[k], pairs[k], disagree[k],
                                   float(e.mean()) if len(e) else math.nan, low, high))
    return result


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (NaN with fewer than 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = sps.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def read_log_args(folder) -> dict[str, bool]:
    """The boolean run settings (``explain``, ``shuffle``, ``do_pairwise``) from a log folder's
    ``log_args.txt`` (a printed ``argparse.Namespace``); empty when the file is absent."""
    path = Path(folder) / "log_args.txt"
    if not path.is_file():
        return {}
    return {name: value == "True" for name, value in _FLAG.findall(path.read_text(encoding="utf-8"))}


@dataclass
class AgreementLog:
    """:func:`pairwise_agreement` of one agreement-log folder, with its run settings."""

    experiment: str
    path: str
    explain: bool | None
    shuffle: bool | None
    by_k: list[AgreementAtK]

    def to_dict(self) -> dict:
        return {**asdict(self), "by_k": [asdict(a) for a in self.by_k]}


def analyze_agreement_log(path, *, confidence: float = 0.95) -> AgreementLog:
    """:func:`pairwise_agreement` for one folder (or its ``rankings.jsonl``)."""
    path = Path(path)
    rows, report = read_rating_log(path)
    if not _has_pairwise(rows):
        raise ValueError(f"{report.path}: no 'pairwise' field: not an agreement log")
    return _agreement_log(path.parent if path.is_file() else path, rows, report.path, confidence)


def _has_pairwise(rows: list[dict]) -> bool:
    return any("pairwise" in row for row in rows)


def _agreement_log(folder: Path, rows: list[dict], label: str, confidence: float) -> AgreementLog:
    flags = read_log_args(folder)
    return AgreementLog(folder.name, label, flags.get("explain"), flags.get("shuffle"),
                        pairwise_agreement(rows, confidence=confidence, path=label))


@dataclass
class AgreementReport:
    """What ``starling experiments agreement`` prints."""

    logs: list[AgreementLog]
    skipped: list[str] = field(default_factory=list)
    """Folders that are not agreement logs (no ``pairwise``), named rather than refused."""

    def to_dict(self) -> dict:
        return {"logs": [log.to_dict() for log in self.logs], "skipped": self.skipped}

    def format_text(self) -> str:
        ks = sorted({a.k for log in self.logs for a in log.by_k})
        lines = ["K-wise order vs separate pairwise calls: mean error per k (95 % t interval)",
                 f"{'experiment':38s} {'explain':>7s} {'shuffle':>7s}  " + " ".join(f"{'k=' + str(k):>6s}" for k in ks)]
        for log in self.logs:
            at = {a.k: a for a in log.by_k}
            cells = " ".join(f"{at[k].mean_error:6.3f}" if k in at else " " * 6 for k in ks)
            lines.append(f"{log.experiment:38s} {str(log.explain):>7s} {str(log.shuffle):>7s}  {cells}")
        lines += [f"skipped (not an agreement log): {name}" for name in self.skipped]
        return "\n".join(lines)


def agreement_report(paths, *, confidence: float = 0.95) -> AgreementReport:
    """:func:`analyze_agreement_log` on every log folder in ``paths`` that holds pairwise calls."""
    report = AgreementReport([])
    for folder in (f for path in paths for f in rating_log_folders(path)):
        rows, log = read_rating_log(folder) if log_kind(folder) == "rating-log" else ([], None)
        if _has_pairwise(rows):
            report.logs.append(_agreement_log(folder, rows, log.path, confidence))
        else:
            report.skipped.append(str(folder))
    if not report.logs:
        raise ValueError(f"no agreement log (a ranking log with 'pairwise') in {', '.join(map(str, paths))}")
    return report


# ------------------------------------------------------------------------------ pointwise scores

def score_counts(rows: list[dict]) -> dict[float, int]:
    """How many rated answers got each score, by score."""
    return dict(sorted(Counter(row["score"] for row in rows).items()))


def pointwise_scores(rows: list[dict], match: str = "text") -> dict[tuple[str, str], float]:
    """Mean score per ``(prompt, answer text)`` (or ``(prompt, model)`` with ``match="model"``)."""
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    scores: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        scores.setdefault((row["prompt"], row["answer" if match == "text" else "model"]), []).append(row["score"])
    return {key: float(np.mean(values)) for key, values in scores.items()}


@dataclass
class PointwiseComparison:
    """Adjacent answers of K-wise rankings under pointwise scores."""

    match: str
    n_rankings: int
    n_scored: int
    """Rankings whose every answer has a score (the ones compared)."""
    n_pairs: int
    counts: dict[str, int]
    """``tie`` / ``agree`` (better-ranked answer scores higher) / ``disagree``."""

    @property
    def fractions(self) -> dict[str, float]:
        return {o: self.counts[o] / self.n_pairs if self.n_pairs else math.nan for o in OUTCOMES}

    def to_dict(self) -> dict:
        return {**asdict(self), "fractions": self.fractions}


def compare_with_ranking(ranking_rows: list[dict], scores: dict[tuple[str, str], float],
                         match: str = "text") -> PointwiseComparison:
    """For each ranking whose answers all have a score, each adjacent pair of its ``ranking_order``:
    tie, agree or disagree (module docstring). ``scores`` from :func:`pointwise_scores` with the same ``match``."""
    counts = dict.fromkeys(OUTCOMES, 0)
    n_scored = 0
    for row in ranking_rows:
        keys = [(row["prompt"], a["answer" if match == "text" else "model"]) for a in row["answers"]]
        if any(key not in scores for key in keys):
            continue
        n_scored += 1
        ranked = [scores[keys[i]] for i in row["ranking_order"]]  # best first
        for better, worse in zip(ranked, ranked[1:]):
            counts["tie" if better == worse else "agree" if better > worse else "disagree"] += 1
    return PointwiseComparison(match, len(ranking_rows), n_scored, sum(counts.values()), counts)


@dataclass
class PointwiseReport:
    """What ``starling experiments pointwise`` prints: the score distribution, and the comparison
    with a K-wise ranking log when one is given."""

    path: str
    n_answers: int
    n_prompts: int
    score_counts: dict[float, int]
    comparison: PointwiseComparison | None = None

    def to_dict(self) -> dict:
        out = {key: value for key, value in asdict(self).items() if key != "comparison"}
        out["comparison"] = self.comparison.to_dict() if self.comparison else None
        return out

    def format_text(self) -> str:
        top = max(self.score_counts)
        lines = [f"{self.path}: {self.n_answers} answers of {self.n_prompts} prompts scored alone; "
                 f"{self.score_counts[top]} got the top score {top:g}",
                 "scores: " + ", ".join(f"{s:g}: {n}" for s, n in self.score_counts.items())]
        c = self.comparison
        if c is not None:
            f = c.fractions
            lines.append(f"adjacent answers of {c.n_scored} of {c.n_rankings} rankings (all answers scored; matched "
                         f"by {c.match}), {c.n_pairs} pairs: tie {f['tie']:.3f}, agree {f['agree']:.3f}, "
                         f"disagree {f['disagree']:.3f}")
        return "\n".join(lines)


def pointwise_report(scores_path, rankings_path=None, *, match: str = "text") -> PointwiseReport:
    """Read a pointwise log (and a ranking log of the same prompts) and summarise them."""
    rows, report = read_pointwise_log(scores_path)
    out = PointwiseReport(report.path, len(rows), report.n_prompts, score_counts(rows))
    if rankings_path is not None:
        ranking_rows, _ = read_rating_log(rankings_path)
        out.comparison = compare_with_ranking(ranking_rows, pointwise_scores(rows, match), match)
    return out
