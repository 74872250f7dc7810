"""AlpacaEval 2's LC offline: difficulties estimated with published GLM weights fixed, LC predicted as
upstream's ``predict_winrate``; hand-built cases with a known answer, then the real leaderboard files."""

import json

import numpy as np
import pandas as pd
import pytest

from starling_lib import cli
from starling_lib.evaluation import alpaca_eval as ae
from starling_lib.evaluation.alpaca_eval import score as ae_score
from starling_lib.paths import shared_data

COLUMNS = ",np.tanh(std_delta_len),instruction_difficulty,not_gamed_baseline.astype(float)\n"


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=float)))


def write_weights(path, rows):
    path.write_text(COLUMNS + "".join(f"{m},{c},{a},{b}\n" for m, (c, a, b) in rows.items()))
    return path


# ------------------------------------------------------------------------------------ by hand

def test_predict_lc_winrate_by_hand(tmp_path):
    weights = ae.load_lc_weights(write_weights(tmp_path / "w.csv", {
        "base": (0, 0, 0), "flat": (-1.2, 0.0, 0.4), "hard": (0.5, 2.0, -1.0)}))
    d = np.array([-1.0, 0.0, 1.0])
    lc = ae.predict_lc_winrate(weights, d)
    assert lc["base"] == 50.0
    # difficulty coefficient 0: 100 σ(0.4) = 59.8688, whatever the difficulties (the length term is set to 0)
    assert lc["flat"] == pytest.approx(59.86876, abs=1e-5)
    # 100/3 (σ(-3) + σ(-1) + σ(1)) = 100/3 (0.0474259 + 0.2689414 + 0.7310586) = 34.91420
    assert lc["hard"] == pytest.approx(34.91420, abs=1e-5)
    # against another baseline: the weight differences, as upstream's delta_weights
    vs_flat = ae.predict_lc_winrate(weights, d, baseline="flat")
    assert vs_flat["flat"] == 50.0 and vs_flat["base"] == pytest.approx(100 - 59.86876, abs=1e-5)


def test_difficulties_are_recovered_from_exact_soft_labels():
    rng = np.random.default_rng(0)
    models = {f"m{k}": (rng.normal(-1, 0.3), rng.uniform(0.5, 1.5), rng.normal(0, 1)) for k in range(12)}
    weights = pd.DataFrame(models, index=["length", "difficulty", "intercept"]).T
    truth = rng.normal(0, 1, size=30)
    rows = []
    for m, (c, a, b) in models.items():
        len_1 = rng.integers(200, 2000, size=30)
        len_2 = rng.integers(200, 2000, size=30)
        delta = (len_1 - len_2).astype(float)
        p = sigmoid(c * np.tanh(delta / delta.std(ddof=1)) + a * truth + b)
        rows += [{"model": m, "instruction_index": i, "preference": 1 + p[i], "len_output_1": len_1[i],
                  "len_output_2": len_2[i], "generator_1": "base"} for i in range(30)]
    prefs = pd.DataFrame(rows)
    d = ae.estimate_instruction_difficulty(prefs, weights, ridge=0.0)
    assert d == pytest.approx(truth, abs=1e-6)  # the likelihood's maximum is the truth when labels are exact
    shrunk = ae.estimate_instruction_difficulty(prefs, weights, ridge=1.0)
    assert np.all(np.abs(shrunk) < np.abs(d) + 1e-9)  # the prior pulls every estimate toward 0


def test_one_instruction_by_hand():
    # one model (c=0, a=1, b=0), one instruction with soft label 0.75: d = logit(0.75) = ln 3
    weights = pd.DataFrame({"length": [0.0], "difficulty": [1.0], "intercept": [0.0]}, index=["m"])
    prefs = pd.DataFrame([{"model": "m", "instruction_index": 0, "preference": 1.75,
                           "len_output_1": 10, "len_output_2": 20}])
    assert ae.estimate_instruction_difficulty(prefs, weights, ridge=0.0)[0] == pytest.approx(np.log(3), abs=1e-9)
    # with a N(0, 1/ridge) prior: σ(d) - 0.75 + ridge d = 0; for ridge 1, d = 0.20013 (σ(0.20013) = 0.54987)
    assert ae.estimate_instruction_difficulty(prefs, weights, ridge=1.0)[0] == pytest.approx(0.20013, abs=1e-5)


def test_refit_on_lengths_equals_the_refit_on_annotations():
    rows = [{"instruction": f"q{i}", "output_1": "x" * (100 + 37 * i % 400), "output_2": "y" * (80 + 53 * i % 500),
             "generator_1": "ref", "generator_2": "m", "preference": 1 + (i % 7) / 6} for i in range(40)]
    a = ae.refit_lc_from_annotations(rows)
    b = ae.refit_lc_winrate([len(r["output_1"]) for r in rows], [len(r["output_2"]) for r in rows],
                            [r["preference"] for r in rows])
    assert a["lc_winrate_refit_no_difficulty"] == b["lc_winrate_refit"]
    assert set(ae.LC_FIELDS.values()).isdisjoint({"length_controlled_winrate"})


def test_bad_files_name_the_row_and_field(tmp_path):
    bad = tmp_path / "w.csv"
    bad.write_text(COLUMNS + "base,0,0,0\nodd,0.1,x,0.2\n")
    with pytest.raises(ValueError, match=r"w.csv: row 1 \(odd\): field 'instruction_difficulty'"):
        ae.load_lc_weights(bad)
    (tmp_path / "short.csv").write_text(",a,b\nm,1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        ae.load_lc_weights(tmp_path / "short.csv")
    prefs = tmp_path / "p.csv"
    prefs.write_text("model,instruction_index,preference,len_output_1,len_output_2,extra\n"
                     "m,0,1.5,10,20,kept\nm,1,,10,20,kept\nm,2,2.5,10,20,kept\n")
    with pytest.raises(ValueError, match=r"p.csv: row 2: field 'preference'"):
        ae.load_leaderboard_preferences(prefs)
    prefs.write_text("model,instruction_index,preference,len_output_1,len_output_2,extra\n"
                     "m,0,0,10,20,kept\nm,1,,10,20,kept\n")
    df = ae.load_leaderboard_preferences(prefs)
    assert df["preference"].iloc[0] == 1.5 and np.isnan(df["preference"].iloc[1]) and "extra" in df


# ------------------------------------------------------------------------------ the real files

@pytest.fixture(scope="module")
def lc_files():
    root = shared_data("alpaca_eval")
    if root is None:
        pytest.skip("AlpacaEval data not present (../shared/data/alpaca_eval)")
    return (root / "lc_glm_weights_baseline_gpt4_1106_preview.csv", root / "ae2_leaderboard_preferences.csv.gz",
            root / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv")


@pytest.fixture(scope="module")
def lc_report(lc_files):
    return ae.lc_from_weights(*lc_files)


def test_lc_from_weights_against_every_published_lc(lc_report):
    r = lc_report
    assert len(r["difficulty"]) == 805
    assert (r["errors"]["in_fit"]["n"], r["errors"]["held_out"]["n"], r["errors"]["all"]["n"]) == (57, 142, 199)
    # the goal: mean absolute error at most 1 point on models held out of the fit
    assert r["errors"]["held_out"]["mae"] <= 1.0 and r["errors"]["held_out"]["max_abs"] < 2.0
    # where the published weights make difficulty irrelevant (the baseline, 50 by construction): exact
    assert r["exact"]["models"] == ["gpt4_1106_preview"] and r["exact"]["max_abs_error"] == 0.0
    # what was left out is reported, not silently dropped
    left = r["left_out"]
    assert left["duplicate_models"] == ["vicuna-13b-v1.5", "vicuna-7b-v1.5"] and left["duplicate_rows"] == 1610
    assert left["models_without_weights"] == ["text_davinci_003"]
    models = {m["model"]: m for m in r["models"]}
    assert models["gpt4_1106_preview"]["lc_winrate_estimated"] == 50.0


def test_the_refit_notes_error_is_the_measured_one(lc_report):
    e = lc_report["refit_no_difficulty"]["errors"]
    assert e["n"] == 57 and e["worst_model"] == "gpt4_gamed"
    assert round(e["mae"], 3) == ae_score.REFIT_NO_DIFFICULTY_MAE
    assert round(e["max_abs"], 3) == ae_score.REFIT_NO_DIFFICULTY_MAX
    # the estimate from the published weights is over an order of magnitude closer
    assert lc_report["errors"]["in_fit"]["mae"] * 10 < e["mae"]


def test_cli_lc_json_and_bad_input(capsys, lc_files, tmp_path):
    weights, prefs, board = lc_files
    code = cli.main(["alpaca-eval", "lc", "--weights", str(weights), "--preferences", str(prefs),
                     "--leaderboard", str(board), "--ridge", "0.5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert r["ridge"] == 0.5 and r["ridge_chosen_by"] == "given" and r["errors"]["held_out"]["mae"] <= 1.0
    assert all("length_controlled_winrate" in m and "lc_winrate_estimated" in m for m in r["models"])

    code = cli.main(["alpaca-eval", "lc", "--weights", str(tmp_path / "none.csv"), "--preferences", str(prefs),
                     "--leaderboard", str(board)])
    _, err = capsys.readouterr()
    assert code == 1 and "none.csv: no such file" in err and "Traceback" not in err
