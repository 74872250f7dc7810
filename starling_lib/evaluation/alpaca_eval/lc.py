"""AlpacaEval 2's length-controlled win rate offline, from the leaderboard's published GLM weights.

Upstream (``alpaca_eval/metrics/glm_winrate.py``, ``length_controlled_v1``) fits, per model, a
logistic GLM ``preference - 1 ~ tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline``
and publishes its three coefficients per model (``lc_glm_weights_baseline_gpt4_1106_preview.csv``).
A model's LC win rate is then ``predict_winrate``: ``100 * mean_i σ(b + a * difficulty_i)`` over
the 805 instructions (``b`` the intercept, ``a`` the difficulty coefficient; the baseline's weights
are zero). Only the 805 difficulties are missing offline (they are on the Hugging Face hub).

:func:`estimate_instruction_difficulty` estimates them from real annotations of many models
(``ae2_leaderboard_preferences.csv.gz``): for each instruction ``i``, the ``d_i`` maximising the
soft-label log-likelihood ``Σ_m y_mi log σ(z) + (1 - y_mi) log(1 - σ(z))`` with ``z = c_m
tanh(std_delta_len_mi) + a_m d_i + b_m``, every model's published coefficients ``(c_m, a_m, b_m)``
held fixed, plus a Gaussian prior ``ridge/2 d_i²`` (without it an instruction that every model wins
or loses has no finite estimate). :func:`lc_from_weights` chooses ``ridge`` on a grid by the error
against the published LC of the models **in** the fit, then reports the error of
:func:`predict_lc_winrate` against every published LC: on the models in the fit and on the models
held out of it (weights published, annotations not in the file). It also measures the plain refit
without difficulties (:func:`~starling_lib.evaluation.alpaca_eval.score.refit_lc_winrate`) on the
same models, so both approximations carry their measured error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from starling_lib.evaluation.alpaca_eval.files import load_leaderboard
from starling_lib.evaluation.alpaca_eval.score import refit_lc_winrate, sigmoid

WEIGHT_COLUMNS = ("np.tanh(std_delta_len)", "instruction_difficulty", "not_gamed_baseline.astype(float)")
PREFERENCE_COLUMNS = ("model", "instruction_index", "preference", "len_output_1", "len_output_2")
RIDGE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 31))  # 0.05 … 1.5


def load_lc_weights(path: str | Path) -> pd.DataFrame:
    """The published GLM weights, indexed by model, columns ``length, difficulty, intercept``
    (upstream's :data:`WEIGHT_COLUMNS`, in that order); a missing column or a non-number names the
    file, the row (model) and the field."""
    try:
        df = pd.read_csv(path, index_col=0)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    missing = [c for c in WEIGHT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (have {list(df.columns)})")
    out = df[list(WEIGHT_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    bad = out.isna()
    if bad.any().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(f"{path}: row {row} ({df.index[row]}): field {WEIGHT_COLUMNS[col]!r} is not a number "
                         f"({df.iloc[row][WEIGHT_COLUMNS[col]]!r:.40})")
    out.columns = ["length", "difficulty", "intercept"]
    out.index = out.index.astype(str)
    return out


def load_leaderboard_preferences(path: str | Path) -> pd.DataFrame:
    """``ae2_leaderboard_preferences.csv.gz``: one row per (model, instruction) with the preference
    (1 = reference better … 2 = model better, 0 read as a draw, empty = none) and both lengths.
    Bad rows raise naming the file, the row and the field; other columns are kept."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    missing = [c for c in PREFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (have {list(df.columns)})")
    for name in PREFERENCE_COLUMNS[1:]:
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna() & (df[name].notna() if name == "preference" else True)
        if name != "preference":
            bad |= values.lt(0) | (values % 1 != 0)
        else:
            values = values.replace({0.0: 1.5})
            bad |= values.notna() & ~values.between(1, 2)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}: row {row}: field {name!r} is not valid ({df[name].iloc[row]!r:.40})")
        df[name] = values if name == "preference" else values.astype(int)
    df["model"] = df["model"].astype(str)
    return df


def _fit_rows(preferences: pd.DataFrame, weights: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Rows usable for the difficulty fit, with ``tanh(std_delta_len)`` per row, and what was left out."""
    dup = preferences.duplicated(["model", "instruction_index"])
    df = preferences[~dup].copy()
    without_weights = sorted(set(df["model"]) - set(weights.index))
    df = df[df["model"].isin(weights.index)]
    delta = (df["len_output_1"] - df["len_output_2"]).astype(float)  # reference minus model, as upstream
    std = delta.groupby(df["model"]).transform("std")  # ddof=1 over the model's rows, as upstream
    df["tanh_std_delta_len"] = np.tanh(np.where(std > 0, delta / std.where(std > 0, 1.0), 0.0))
    no_pref = df["preference"].isna()
    left_out = {"duplicate_rows": int(dup.sum()),
                "duplicate_models": sorted(set(preferences.loc[dup, "model"])),
                "models_without_weights": without_weights,
                "rows_without_preference": int(no_pref.sum())}
    return df, left_out


def estimate_instruction_difficulty(preferences: pd.DataFrame, weights: pd.DataFrame, *, ridge: float,
                                    n_instructions: int | None = None, max_iter: int = 200,
                                    tol: float = 1e-10) -> np.ndarray:
    """``(n_instructions,)`` difficulties: per instruction, the MAP ``d`` of the soft-label logistic
    likelihood with each model's published coefficients fixed and a ``N(0, 1/ridge)`` prior (module
    docstring). Newton's method on all instructions at once (each problem is one-dimensional and
    convex), steps clipped to ±1 for safety far from the optimum. ``preferences`` as from
    :func:`load_leaderboard_preferences` (rows of models without weights are ignored)."""
    df, _ = _fit_rows(preferences, weights)
    df = df[df["preference"].notna()]
    n = int(n_instructions or preferences["instruction_index"].max() + 1)
    w = weights.loc[df["model"]]
    a = w["difficulty"].to_numpy()
    offset = (w["length"].to_numpy() * df["tanh_std_delta_len"].to_numpy() + w["intercept"].to_numpy())
    y = df["preference"].to_numpy() - 1
    idx = df["instruction_index"].to_numpy()
    d = np.zeros(n)
    for _ in range(max_iter):
        q = sigmoid(offset + a * d[idx])
        grad = np.bincount(idx, a * (q - y), n) + ridge * d
        hess = np.bincount(idx, a * a * q * (1 - q), n) + ridge
        step = np.clip(grad / np.where(hess > 0, hess, 1.0), -1.0, 1.0)
        d -= step
        if np.max(np.abs(step)) < tol:
            break
    return d


def predict_lc_winrate(weights: pd.DataFrame, difficulty: np.ndarray, baseline: str | None = None) -> pd.Series:
    """Upstream's ``predict_winrate`` ×100 for every model in ``weights``: ``100 * mean_i σ(Δb + Δa d_i)``
    with ``Δ`` the model's weights minus the baseline's (zero for the leaderboard's own baseline)."""
    base = weights.loc[baseline] if baseline is not None else weights.iloc[0] * 0
    delta = weights - base
    z = delta["intercept"].to_numpy()[:, None] + delta["difficulty"].to_numpy()[:, None] * np.asarray(difficulty)[None, :]
    return pd.Series(100 * sigmoid(z).mean(axis=1), index=weights.index, name="lc_winrate_estimated")


def _error_stats(err: pd.Series) -> dict:
    err = err.dropna()
    if err.empty:
        return {"n": 0, "mae": None, "rmse": None, "max_abs": None, "mean": None, "worst_model": None}
    return {"n": int(len(err)), "mae": float(err.abs().mean()), "rmse": float(np.sqrt((err ** 2).mean())),
            "max_abs": float(err.abs().max()), "mean": float(err.mean()), "worst_model": str(err.abs().idxmax())}


def refit_errors(preferences: pd.DataFrame, published: pd.Series) -> pd.DataFrame:
    """Per model of ``preferences``: the refit without difficulty (:func:`refit_lc_winrate` on its rows)
    next to the published LC, and the error."""
    rows = []
    for model, g in preferences.drop_duplicates(["model", "instruction_index"]).groupby("model", sort=True):
        generator_1 = set(g["generator_1"]) if "generator_1" in g else {None}
        same = generator_1 == {model}
        refit = refit_lc_winrate(g["len_output_1"], g["len_output_2"], g["preference"], same_model=same)
        rows.append({"model": model, "lc_winrate_refit_no_difficulty": refit["lc_winrate_refit"],
                     "published": float(published.get(model, np.nan))})
    df = pd.DataFrame(rows).set_index("model")
    df["error"] = df["lc_winrate_refit_no_difficulty"] - df["published"]
    return df


def lc_from_weights(weights_path: str | Path, preferences_path: str | Path, leaderboard_path: str | Path, *,
                    ridge: float | None = None, ridge_grid=RIDGE_GRID) -> dict:
    """The offline LC estimate and its error against the leaderboard (module docstring).

    Returns ``ridge`` (chosen on ``ridge_grid`` by the mean absolute error on the models in the fit,
    unless given), ``difficulty`` (805 floats), ``models``: per model with published weights, the
    estimate ``lc_winrate_estimated``, the published ``length_controlled_winrate``, the error and
    whether it was in the fit; ``errors``: statistics on ``in_fit`` / ``held_out`` / ``all``;
    ``exact``: the models whose published weights make the estimate independent of difficulty
    (difficulty coefficient 0, e.g. the baseline), with their largest error; ``refit_no_difficulty``:
    the plain refit's error on the models in the file; and what was left out.
    """
    weights = load_lc_weights(weights_path)
    preferences = load_leaderboard_preferences(preferences_path)
    published = load_leaderboard(leaderboard_path)
    if "length_controlled_winrate" not in published.columns:
        raise ValueError(f"{leaderboard_path}: no 'length_controlled_winrate' column")
    lc_published = published["length_controlled_winrate"].astype(float)
    fit_rows, left_out = _fit_rows(preferences, weights)
    in_fit = set(fit_rows["model"])
    n = int(preferences["instruction_index"].max() + 1)

    def evaluate(r):
        d = estimate_instruction_difficulty(preferences, weights, ridge=r, n_instructions=n)
        est = predict_lc_winrate(weights, d)
        return d, est, est - lc_published.reindex(est.index)

    chosen_by = "given"
    if ridge is None:
        chosen_by = "grid, mean absolute error against the published LC of the models in the fit"
        scores = {}
        for r in ridge_grid:
            err = evaluate(r)[2]
            scores[r] = float(err[err.index.isin(in_fit)].abs().mean())
        ridge = min(scores, key=scores.get)
    difficulty, est, err = evaluate(ridge)
    models = pd.DataFrame({"lc_winrate_estimated": est, "length_controlled_winrate": lc_published.reindex(est.index),
                           "error": err, "in_fit": est.index.isin(in_fit),
                           "difficulty_coefficient": weights["difficulty"]})
    scored = models[models["length_controlled_winrate"].notna()]
    exact = scored[scored["difficulty_coefficient"] == 0]
    refit = refit_errors(preferences[preferences["model"].isin(lc_published.index)], lc_published)
    return {
        "method": "per-instruction MAP difficulty with each model's published GLM coefficients fixed, "
                  "N(0, 1/ridge) prior; LC = upstream predict_winrate (x100) with the published weights",
        "ridge": float(ridge),
        "ridge_chosen_by": chosen_by,
        "difficulty": [float(x) for x in difficulty],
        "errors": {"in_fit": _error_stats(scored.loc[scored["in_fit"], "error"]),
                   "held_out": _error_stats(scored.loc[~scored["in_fit"], "error"]),
                   "all": _error_stats(scored["error"])},
        "exact": {"models": list(exact.index), "max_abs_error": float(exact["error"].abs().max()) if len(exact) else None},
        "refit_no_difficulty": {"errors": _error_stats(refit["error"]),
                                "models": refit.reset_index().to_dict(orient="records")},
        "models": models.reset_index(names="model").to_dict(orient="records"),
        "left_out": {**left_out,
                     "leaderboard_models_without_weights": sorted(set(lc_published.index) - set(weights.index)),
                     "weights_without_published_lc": sorted(set(weights.index) - set(lc_published.dropna().index))},
    }
