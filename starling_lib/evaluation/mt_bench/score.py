"""MT-Bench scores, as FastChat's ``show_result.py``: mean ratings per turn, win rates of pairs.

Also what a judging run does with a judgments file: :func:`merge_judgments` keeps the rows of
other models (or pairs) already in it, and :func:`score_judgments` scores any judgments file,
ours or FastChat's, single or pairwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from starling_lib.evaluation.mt_bench.files import read_judgments
from starling_lib.evaluation.mt_bench.judge import combine_games


def pairwise_win_rate(rows: Iterable[dict], model: str) -> dict:
    """Wins, losses, ties of ``model`` over valid pairs; ``win_rate`` counts a tie as half a win
    (FastChat's ``win_rate_adjusted``); failed pairs are excluded and counted in ``n_failed``."""
    wins = losses = ties = failed = 0
    for row in rows:
        if model not in (row["model_1"], row["model_2"]):
            continue
        winner = row.get("winner")
        if winner is None:
            failed += 1
        elif winner == "tie":
            ties += 1
        elif winner == model:
            wins += 1
        else:
            losses += 1
    n = wins + losses + ties
    return {"wins": wins, "losses": losses, "ties": ties, "n": n, "n_failed": failed,
            "win_rate": (wins + 0.5 * ties) / n if n else None}


def pairwise_rates(rows: list[dict]) -> dict[str, dict]:
    """:func:`pairwise_win_rate` of every model in ``rows``, by model name."""
    models = sorted({r["model_1"] for r in rows} | {r["model_2"] for r in rows})
    return {m: pairwise_win_rate(rows, m) for m in models}


def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def score_single(judgments) -> dict[str, dict]:
    """Per model (FastChat show_result, single mode): mean score per turn (``turn_1``, ``turn_2``),
    ``overall`` (mean over all valid judgments), ``by_category``, ``n_judgments`` and ``n_failed``.
    A judgment is valid when its score is a number other than FastChat's failure mark -1."""
    df = judgments.copy() if isinstance(judgments, pd.DataFrame) else pd.DataFrame(list(judgments))
    if df.empty:
        return {}
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    valid = df["score"].notna() & (df["score"] != -1)
    scores = {}
    for model, group in df.groupby("model", sort=True):
        ok = group[valid[group.index]]
        entry = {f"turn_{int(t)}": _mean(ok.loc[ok["turn"] == t, "score"]) for t in sorted(group["turn"].unique())}
        entry["overall"] = _mean(ok["score"])
        entry["n_judgments"] = int(len(ok))
        entry["n_failed"] = int(len(group) - len(ok))
        if "category" in ok:
            entry["by_category"] = {str(c): float(s) for c, s in ok.groupby("category")["score"].mean().items()}
        scores[str(model)] = entry
    return scores



def merge_judgments(path: str | Path, rows: list[dict], mode: str, model_ids: list[str]) -> tuple[list[dict], int]:
    """``(rows to write, how many were kept)``: the rows already in ``path`` for other models (single)
    or other pairs (pairwise), then this run's ``rows``, which replace earlier ones of ``model_ids``."""
    path = Path(path)
    if not path.exists():
        return rows, 0
    if mode == "single":
        kept = [r for r in read_judgments(path) if r.get("model") not in model_ids]
    else:
        pair = set(model_ids)
        kept = [r for r in read_judgments(path) if {r.get("model_1"), r.get("model_2")} != pair]
    return kept + rows, len(kept)


def score_judgments(path: str | Path) -> dict:
    """``{judgments, mode, n_rows, scores}`` of a judgments file: ``single`` (:func:`score_single`) or ``pairwise``
    (:func:`pairwise_rates`; FastChat's files have no combined ``winner``, so it is rebuilt from
    ``g1_winner`` / ``g2_winner``). A file that is empty, mixes modes or lacks a field is an error."""
    rows = read_judgments(path)
    if not rows:
        raise ValueError(f"{path}: no judgments")
    pairwise = ["g1_winner" in r and "model_1" in r for r in rows]
    if all(pairwise):
        for r in rows:
            if "winner" not in r:
                combined = combine_games(r["g1_winner"], r["g2_winner"])
                r["winner"] = {"model_1": r["model_1"], "model_2": r["model_2"]}.get(combined, combined)
        mode, scores = "pairwise", pairwise_rates(rows)
    elif any(pairwise):
        raise ValueError(f"{path}: mixes single and pairwise judgments")
    else:
        bad = next((i for i, r in enumerate(rows, 1) if not {"model", "score", "turn"} <= set(r)), None)
        if bad is not None:
            raise ValueError(f"{path}: judgment {bad} lacks model / score / turn")
        mode, scores = "single", score_single(rows)
    return {"judgments": str(path), "mode": mode, "n_rows": len(rows), "scores": scores}
