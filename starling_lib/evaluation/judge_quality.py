"""How far to trust a pairwise judge: order flips, agreement between the two orders, position and length bias.

What FastChat and alpaca_eval users ask of a judge, measured on judgments the project has:

- **MT-Bench pairwise** (FastChat's ``*_pair.jsonl``: every pair judged twice, ``g1`` with ``model_1``
  shown first, ``g2`` swapped, both winners mapped back to ``model_1`` / ``model_2`` / ``tie``):
  the **flip rate** (``g1_winner != g2_winner``; also the decisive flips, one model to the other),
  **Cohen's κ** between the two orders over the three labels, **P(prefers the first shown)** over
  the decisive verdicts of both games, and, given the answers, **P(prefers the longer)**.
- **AlpacaEval annotations** (one order per pair): **P(prefers the first shown)**, the shown order
  read from ``is_swapped`` (this project's judge) or recovered from the weighted annotator's
  ``raw_completion`` (the ``m``/``M`` log-probabilities refer to the shown order; the order whose
  ``P(second)`` reproduces ``preference`` is the one shown), and **P(prefers the longer)** by
  alpaca_eval's own definition (``analyze.Analyzer.get_length_biases``: the best output is
  ``output_1`` when ``preference`` is in [1, 1.5), else ``output_2``; only pairs whose lengths
  differ by more than 30 characters count). Flips and κ need both orders: not available there.

Proportions carry Wilson 95 % intervals; κ a percentile bootstrap over pairs (seeded).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from starling_lib.evaluation.alpaca_eval import load_annotations, p_second_from_logprobs
from starling_lib.evaluation.mt_bench import load_model_answers, read_judgments

PAIR_LABELS = ("model_1", "model_2", "tie")
SIGNIFICANT_DELTA_LENGTH = 30  # alpaca_eval analyze.get_length_biases' default
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of ``k`` successes in ``n`` (None when ``n`` is 0)."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half, centre + half)


def proportion(k: int, n: int) -> dict:
    """``{rate, k, n, ci95}``; ``rate`` None when ``n`` is 0."""
    return {"rate": k / n if n else None, "k": int(k), "n": int(n), "ci95": wilson_interval(k, n)}


def cohen_kappa(a: Sequence, b: Sequence, labels: Sequence | None = None) -> float | None:
    """Cohen's κ of two raters' labels: ``(p_o - p_e) / (1 - p_e)``, ``p_e`` from each rater's marginals.
    None without items; 1.0 when both raters use one and the same label throughout (``p_e = 1``)."""
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels against {len(b)}")
    if not a:
        return None
    labels = list(labels or sorted(set(a) | set(b), key=str))
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum((a.count(c) / n) * (b.count(c) / n) for c in labels)
    return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)


def _bootstrap_kappa(a: list, b: list, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    if len(a) < 2:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(a), len(a))
        values.append(cohen_kappa([a[i] for i in idx], [b[i] for i in idx], PAIR_LABELS))
    return tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))


def _prefer_longer(best_len: list[int], worse_len: list[int]) -> dict:
    """alpaca_eval's probability_prefer_longer over pairs whose lengths differ by more than 30 characters."""
    longer = [(b > w) for b, w in zip(best_len, worse_len) if abs(b - w) > SIGNIFICANT_DELTA_LENGTH]
    return proportion(sum(longer), len(longer))


def mt_bench_pair_report(rows: Sequence[dict], answers: dict | None = None, *, seed: int = 0) -> dict:
    """Order flips, κ between orders, first-shown and (with ``answers``: ``{model: {question_id: [turn
    answers]}}``) longer-answer preference of MT-Bench pairwise judgments (module docstring). Rows with a
    winner outside :data:`PAIR_LABELS` (a failed game) are counted under ``n_unparsed`` and left out."""
    usable = [r for r in rows if r.get("g1_winner") in PAIR_LABELS and r.get("g2_winner") in PAIR_LABELS]
    g1 = [r["g1_winner"] for r in usable]
    g2 = [r["g2_winner"] for r in usable]
    flips = sum(x != y for x, y in zip(g1, g2))
    decisive_flips = sum({x, y} == {"model_1", "model_2"} for x, y in zip(g1, g2))
    # g1 showed model_1 first, g2 showed model_2 first
    first = [w == "model_1" for w in g1 if w != "tie"] + [w == "model_2" for w in g2 if w != "tie"]
    n_games = 2 * len(usable)
    out = {
        "kind": "mt_bench_pairwise",
        "n_pairs": len(usable), "n_unparsed": len(rows) - len(usable),
        "flip_rate": proportion(flips, len(usable)),
        "decisive_flip_rate": proportion(decisive_flips, len(usable)),
        "kappa_between_orders": cohen_kappa(g1, g2, PAIR_LABELS),
        "kappa_ci95": _bootstrap_kappa(g1, g2, seed=seed),
        "tie_rate": proportion(g1.count("tie") + g2.count("tie"), n_games),
        "prefers_first_shown": proportion(sum(first), len(first)),
        "prefers_longer": None,
        "prefers_longer_note": "needs the answers (answers=, --answers)",
    }
    if answers is not None:
        best, worse, missing = [], [], 0
        for r in usable:
            try:
                lens = {m: len(answers[r[m]][r["question_id"]][int(r.get("turn", 1)) - 1]) for m in ("model_1", "model_2")}
            except (KeyError, IndexError):
                missing += 1
                continue
            for winner in (r["g1_winner"], r["g2_winner"]):
                if winner != "tie":
                    loser = "model_2" if winner == "model_1" else "model_1"
                    best.append(lens[winner])
                    worse.append(lens[loser])
        out["prefers_longer"] = _prefer_longer(best, worse)
        out["prefers_longer_note"] = (f"decisive games of pairs whose answers differ by more than "
                                      f"{SIGNIFICANT_DELTA_LENGTH} characters; {missing} pairs without answers")
    return out


def shown_first(annotation: dict) -> str | None:
    """``"output_1"`` / ``"output_2"``: which output the judge saw first, or None when unknown.

    From ``is_swapped`` (this project's judge: swapped = the model, ``output_2``, shown first), else from
    a weighted annotator's ``raw_completion``: ``P(second)`` from its logprobs gives ``1 + P(second)``
    in the shown order and ``2 - P(second)`` swapped; the one nearer ``preference`` was shown (None
    when both are equally near, i.e. ``P(second) = 1/2``, or nothing is recorded)."""
    if isinstance(annotation.get("is_swapped"), bool):
        return "output_2" if annotation["is_swapped"] else "output_1"
    raw = annotation.get("raw_completion")
    try:
        preference = float(annotation.get("preference"))
        p_second = p_second_from_logprobs(raw if isinstance(raw, dict) else None)
    except (TypeError, ValueError):
        return None
    in_order, swapped = abs(preference - 1 - p_second), abs(preference - 2 + p_second)
    if math.isclose(in_order, swapped, abs_tol=1e-9):
        return None
    return "output_1" if in_order < swapped else "output_2"


def annotations_report(annotations: Sequence[dict]) -> dict:
    """First-shown and longer-output preference of AlpacaEval annotations (module docstring)."""
    seen, rows = set(), []
    for a in annotations:  # alpaca_eval drops duplicate pairs before its length bias
        key = (a["instruction"], a["output_1"], a["output_2"])
        if key not in seen:
            seen.add(key)
            rows.append(a)
    prefs = []
    for a in rows:
        try:
            prefs.append(float(a.get("preference")))
        except (TypeError, ValueError):
            prefs.append(float("nan"))
    prefs = [1.5 if p == 0 else p for p in prefs]
    best_len = [len(a["output_1"]) if 1 <= p < 1.5 else len(a["output_2"]) for a, p in zip(rows, prefs)]
    worse_len = [len(a["output_1"]) if 1.5 < p <= 2 else len(a["output_2"]) for a, p in zip(rows, prefs)]
    first_wins, n_first, unknown = 0, 0, 0
    for a, p in zip(rows, prefs):
        shown = shown_first(a)
        if shown is None or not 1 <= p <= 2:
            unknown += shown is None
            continue
        if p != 1.5:  # decisive: the first-shown output won or lost
            n_first += 1
            first_wins += (p < 1.5) == (shown == "output_1")
    return {
        "kind": "alpaca_eval_annotations",
        "n_pairs": len(rows), "n_duplicates": len(annotations) - len(rows),
        "flip_rate": None, "kappa_between_orders": None,
        "order_note": "one order per pair: flips and κ need each pair judged in both orders",
        "prefers_first_shown": proportion(first_wins, n_first),
        "n_shown_order_unknown": unknown,
        "prefers_longer": _prefer_longer(best_len, worse_len),
        "prefers_longer_note": "alpaca_eval's get_length_biases (lengths differing by more than "
                               f"{SIGNIFICANT_DELTA_LENGTH} characters)",
        "model_win_rate": proportion(sum(p > 1.5 for p in prefs if 1 <= p <= 2),
                                     sum(1 <= p <= 2 and p != 1.5 for p in prefs)),
    }


def judge_report(path: str | Path, answers: str | Path | dict | None = None) -> dict:
    """:func:`mt_bench_pair_report` of a FastChat pairwise judgments file (``.jsonl`` rows with
    ``g1_winner``; ``answers`` a ``model_answer`` folder or its loaded dict) or :func:`annotations_report`
    of an AlpacaEval annotations file (a JSON list)."""
    path = Path(path)
    if answers is not None and not isinstance(answers, dict):
        answers = load_model_answers(answers)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        rows = read_judgments(path)
        if not rows or any("g1_winner" not in r for r in rows):
            bad = next((i for i, r in enumerate(rows) if "g1_winner" not in r), 0)
            raise ValueError(f"{path}: row {bad}: no field 'g1_winner' (a judge report needs pairwise judgments, "
                             "judged in both orders)")
        return {"file": str(path), **mt_bench_pair_report(rows, answers)}
    annotations = load_annotations(path)
    if not annotations:
        raise ValueError(f"{path}: no annotations")
    return {"file": str(path), **annotations_report(annotations)}
