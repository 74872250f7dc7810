"""AlpacaEval's metrics, exactly as published: win rate, standard error, discrete win rate,
average length; and the length-controlled GLM refitted offline, under its own name (see the package docstring)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from starling_lib.evaluation.alpaca_eval.files import load_annotations, read_instruction_difficulty

LC_VARIANT_FULL = "with_instruction_difficulty"
LC_VARIANT_OFFLINE = "no_instruction_difficulty"
# The refit's measured error against the leaderboard's published LC on the models whose annotations are in
# ../shared/data/alpaca_eval/ae2_leaderboard_preferences.csv.gz (lc_from_weights(...)["refit_no_difficulty"];
# tests/test_alpaca_lc.py recomputes both from the files and fails when they drift).
REFIT_NO_DIFFICULTY_MAE = 6.527
REFIT_NO_DIFFICULTY_MAX = 27.951
LC_FIELDS = {LC_VARIANT_OFFLINE: "lc_winrate_refit_no_difficulty",
             LC_VARIANT_FULL: "lc_winrate_refit_with_difficulty"}
LC_NOTE = ("Not the published length_controlled_winrate: AlpacaEval 2's GLM refitted offline without "
           "instruction_difficulty and without upstream's regularisation toward 'gamed' baselines (both are "
           "only on the Hugging Face hub). Measured against the leaderboard on the models of "
           "ae2_leaderboard_preferences.csv.gz, it is off by {mae:.1f} points on average (up to {max_abs:.1f}); "
           "`starling alpaca-eval lc` estimates the difficulties and predicts LC from the published weights "
           "(held-out error in its report).").format(mae=REFIT_NO_DIFFICULTY_MAE, max_abs=REFIT_NO_DIFFICULTY_MAX)
LC_NOTE_WITH_DIFFICULTY = ("Not the published length_controlled_winrate: refitted with the given instruction "
                           "difficulties but without upstream's regularisation toward 'gamed' baselines "
                           "(hub-only data); close to, not identical with, the published value.")


def _as_preferences(preferences) -> pd.Series:
    # None and non-numbers become NaN (then dropped and counted), where upstream would crash.
    return pd.to_numeric(pd.Series(list(preferences), dtype=object), errors="coerce").astype(float)


def score_preferences(preferences: Sequence[float | None]) -> dict:
    """Head-to-head metrics of preferences (1 = reference wins, 2 = model wins, 1.5 or 0 = draw).

    ``AbsoluteScoringRule.describe_head2head``: map 0 to 1.5, drop values outside [1, 2] (NaN
    included), ``win_rate = mean(p - 1) * 100``, ``standard_error = sem(p - 1) * 100`` (ddof=1),
    ``n_wins``/``n_wins_base`` count ``p - 1`` above/below 0.5, ``n_draws`` counts 1.5 and 0 before
    dropping. ``discrete_win_rate`` is the zero-one rule: 1.5 becomes 0, every value is rounded
    half-to-even (so 2.4 still counts as a model win there), draws count half.
    """
    p = _as_preferences(preferences)
    n_draws = int(((p == 1.5) | (p == 0)).sum())
    p = p.replace({0.0: 1.5})
    valid = (p >= 1) & (p <= 2)
    x = p[valid] - 1
    discrete = p.replace({1.5: 0.0}).round().replace({0.0: 1.5})  # ZeroOneScoringRule's preprocessing
    d = discrete[(discrete >= 1) & (discrete <= 2)] - 1
    return {
        "win_rate": float(x.mean() * 100),
        "standard_error": float(x.sem() * 100),
        "n_wins": int((x > 0.5).sum()),
        "n_wins_base": int((x < 0.5).sum()),
        "n_draws": n_draws,
        "n_total": int(len(x)),
        "discrete_win_rate": float(d.mean() * 100),
        "n_dropped": int((~valid).sum()),
        "dropped_indices": [int(i) for i in np.flatnonzero(~valid.to_numpy())],
    }


def avg_length(outputs: Sequence[str]) -> int:
    """Mean character length, truncated to an int as in alpaca_eval's leaderboard."""
    return int(pd.Series([len(o) for o in outputs], dtype=float).mean()) if len(outputs) else 0


def score_annotations(annotations: Sequence[dict],
                      instruction_difficulty: Mapping[str, float] | None = None) -> dict:
    """:func:`score_preferences` plus ``avg_length`` of ``output_2`` and the offline LC refit, under its own
    name (:data:`LC_FIELDS`: ``lc_winrate_refit_no_difficulty`` or ``lc_winrate_refit_with_difficulty``),
    never under the leaderboard's ``length_controlled_winrate``."""
    out = score_preferences([a.get("preference") for a in annotations])
    out["avg_length"] = avg_length([a["output_2"] for a in annotations])
    lc = refit_lc_from_annotations(annotations, instruction_difficulty)
    field = LC_FIELDS[lc["variant"]]
    out[field] = lc[field]
    out["lc_variant"] = lc["variant"]
    out["lc_note"] = lc["note"]
    return out


# ---------------------------------------------------------------------- length-controlled win rate

def sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=float)))


def fit_soft_logistic(X: np.ndarray, y: np.ndarray, *, l2: float = 1e-6, max_iter: int = 100,
                      tol: float = 1e-12) -> np.ndarray:
    """Weights ``w`` (no intercept) minimising ``mean(-y log σ(Xw) - (1-y) log(1-σ(Xw))) + l2/2 |w|²``.

    ``X: (n, d)``, ``y: (n,)`` soft labels in [0, 1]. Newton's method: the loss is convex, and the
    tiny ``l2`` keeps ``w`` finite when a label column is all 0 or all 1 and the Hessian regular when a
    feature is constant zero (e.g. no length difference anywhere).
    """
    n, d = X.shape
    w = np.zeros(d)
    for _ in range(max_iter):
        prob = sigmoid(X @ w)
        grad = X.T @ (prob - y) / n + l2 * w
        hess = (X * (prob * (1 - prob))[:, None]).T @ X / n + l2 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < tol:
            break
    return w


def refit_lc_winrate(len_1, len_2, preference, difficulty=None, *, same_model: bool = False,
                     l2: float = 1e-6) -> dict:
    """AlpacaEval 2's LC GLM refitted on one model's rows (lengths in characters, reference first).

    Features per row: ``tanh(delta_len / std(delta_len))`` with ``delta_len = len_1 - len_2`` and
    ``std`` with ddof=1 over all rows (as upstream); ``difficulty`` when given; and a column of ones
    (upstream's ``not_gamed_baseline``, the model's own intercept). Target ``preference - 1`` (0 read
    as a draw), rows without a valid preference left out of the fit. ``lc_winrate_refit`` is ``100 *
    mean(σ(w_0 + w_d * difficulty))``, the predicted win rate with the length difference set to zero,
    averaged over all rows; ``same_model`` (the reference against itself) gives 50, as upstream.
    """
    len_1, len_2 = np.asarray(len_1, dtype=float), np.asarray(len_2, dtype=float)
    preference = _as_preferences(preference)
    delta = pd.Series(len_1 - len_2)
    std = delta.std()
    std_delta_len = delta / std if std > 0 else delta * 0.0  # no spread: the length term is moot
    names = ["np.tanh(std_delta_len)"]
    columns = [np.tanh(std_delta_len.to_numpy())]
    d = np.zeros(len(delta)) if difficulty is None else np.asarray(difficulty, dtype=float)
    if difficulty is not None:
        names.append("instruction_difficulty")
        columns.append(d)
    names.append("not_gamed_baseline")
    columns.append(np.ones(len(delta)))
    X = np.column_stack(columns) if len(delta) else np.zeros((0, len(names)))
    y = preference.replace({0.0: 1.5}) - 1
    fit = ((y >= 0) & (y <= 1)).to_numpy()
    if same_model:
        w = np.zeros(len(names))
    elif fit.sum() == 0:
        w = np.full(len(names), np.nan)
    else:
        w = fit_soft_logistic(X[fit], y.to_numpy()[fit], l2=l2)
    w_difficulty = w[1] if difficulty is not None else 0.0
    lc = 50.0 if same_model else float(np.mean(sigmoid(w[-1] + w_difficulty * d)) * 100)
    return {"lc_winrate_refit": lc, "variant": LC_VARIANT_OFFLINE if difficulty is None else LC_VARIANT_FULL,
            "coefficients": dict(zip(names, (float(v) for v in w))), "n_fit": int(fit.sum()),
            "delta_len_std": float(std), "l2": l2}


def refit_lc_from_annotations(annotations: Sequence[dict],
                              instruction_difficulty: Mapping[str, float] | None = None, *,
                              l2: float = 1e-6) -> dict:
    """:func:`refit_lc_winrate` on annotations (lengths of ``output_1`` / ``output_2``, difficulties looked
    up by instruction), with the value also under its field name (:data:`LC_FIELDS`) and a ``note``
    saying which approximation it is."""
    difficulty = None
    if instruction_difficulty is not None:
        missing = [a["instruction"] for a in annotations if a["instruction"] not in instruction_difficulty]
        if missing:
            raise ValueError(f"instruction_difficulty has no value for {len(missing)} instruction(s), "
                             f"e.g. {missing[0][:80]!r}")
        difficulty = [float(instruction_difficulty[a["instruction"]]) for a in annotations]
    generators_1 = {a.get("generator_1") for a in annotations}
    same_model = len(generators_1) == 1 and None not in generators_1 and \
        generators_1 == {a.get("generator_2") for a in annotations}
    out = refit_lc_winrate([len(a["output_1"]) for a in annotations], [len(a["output_2"]) for a in annotations],
                           [a.get("preference") for a in annotations], difficulty, same_model=same_model, l2=l2)
    out[LC_FIELDS[out["variant"]]] = out["lc_winrate_refit"]
    out["note"] = LC_NOTE if difficulty is None else LC_NOTE_WITH_DIFFICULTY
    return out


def score_annotation_file(path: str | Path, instruction_difficulty: str | Path | None = None) -> dict:
    """:func:`score_annotations` of an annotations file (an error when it is empty), with the
    difficulties of an ``instruction_difficulty`` CSV when given."""
    annotations = load_annotations(path)
    if not annotations:
        raise ValueError(f"{path}: no annotations")
    difficulty = read_instruction_difficulty(instruction_difficulty) if instruction_difficulty else None
    scores = score_annotations(annotations, difficulty)
    return {"annotations": str(path), **scores}
