"""Judge-quality report: hand-checked κ, Wilson intervals, flips, first-shown and longer preference on
written judgments; the shown order recovered from real weighted annotations; the CLI."""

import json
import math

import pytest

from starling_lib import cli
from starling_lib.evaluation import judge_quality as jq
from starling_lib.evaluation.mt_bench import write_judgments
from starling_lib.paths import shared_data


def test_cohen_kappa_by_hand():
    # agree on items 0-3 (x) and 6-7 (y): p_o = .6; both raters 6 x and 4 y: p_e = .36 + .16 = .52;
    # κ = (.6 - .52) / (1 - .52) = 1/6
    a = list("xxxxxxyyyy")
    b = list("xxxxyyyyxx")
    assert jq.cohen_kappa(a, b) == pytest.approx(1 / 6)
    assert jq.cohen_kappa(a, a) == 1.0 and jq.cohen_kappa(["t"] * 3, ["t"] * 3) == 1.0
    assert jq.cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        jq.cohen_kappa(["x"], ["x", "y"])


def test_wilson_interval_by_hand():
    # k=8, n=10, z²=3.8416: centre (0.8 + 0.19208) / 1.38416 = 0.71674, half 1.41602 * sqrt(.016 + .009604) = 0.22658
    lo, hi = jq.wilson_interval(8, 10)
    assert (lo, hi) == (pytest.approx(0.49016, abs=1e-4), pytest.approx(0.94332, abs=1e-4))
    assert jq.wilson_interval(0, 0) is None and jq.proportion(0, 0)["rate"] is None


def pair(qid, g1, g2, turn=1):
    return {"question_id": qid, "model_1": "a", "model_2": "b", "g1_winner": g1, "g2_winner": g2, "turn": turn}


def test_mt_bench_pair_report_by_hand():
    rows = [pair(1, "model_1", "model_1"),  # consistent
            pair(2, "model_1", "model_2"),  # each order picks the first shown: a decisive flip
            pair(3, "model_2", "tie"),      # a flip to a tie
            pair(4, "tie", "tie"),
            pair(5, "error", "model_1")]    # a failed game: left out, counted
    answers = {"a": {1: ["a" * 100], 2: ["a" * 10], 3: ["a" * 50], 4: ["a"]},
               "b": {1: ["b" * 10], 2: ["b" * 100], 3: ["b" * 70]}}
    r = jq.mt_bench_pair_report(rows, answers)
    assert (r["n_pairs"], r["n_unparsed"]) == (4, 1)
    assert r["flip_rate"]["k"] == 2 and r["flip_rate"]["rate"] == 0.5
    assert r["decisive_flip_rate"]["k"] == 1
    # g1 = (m1, m1, m2, tie), g2 = (m1, m2, tie, tie): p_o = 2/4; marginals g1 (.5, .25, .25), g2 (.25, .25, .5):
    # p_e = .125 + .0625 + .125 = .3125; κ = (.5 - .3125) / .6875 = 0.272727
    assert r["kappa_between_orders"] == pytest.approx(0.1875 / 0.6875)
    # decisive games: g1 m1 (first), m1 (first), m2 (second); g2 m1 (second), m2 (first): 3 of 5 first shown
    assert (r["prefers_first_shown"]["k"], r["prefers_first_shown"]["n"]) == (3, 5)
    assert r["tie_rate"]["k"] == 3 and r["tie_rate"]["n"] == 8
    # longer: pair 1 a=100 wins twice (longer, +90); pair 2 a=10 wins once (shorter), b=100 wins once (longer);
    # pair 3: b=70 vs a=50 differ by 20 <= 30: not counted; pair 4 has no 'b' answer -> left out
    assert (r["prefers_longer"]["k"], r["prefers_longer"]["n"]) == (3, 4)
    assert "1 pairs without answers" in r["prefers_longer_note"]
    assert jq.mt_bench_pair_report(rows)["prefers_longer"] is None


def ann(p, out1, out2, **extra):
    return {"instruction": f"q{len(out1)}-{len(out2)}-{p}", "output_1": out1, "output_2": out2, "preference": p, **extra}


def weighted_raw(p_second):
    top = [{"token": "m", "logprob": math.log(1 - p_second)}, {"token": "M", "logprob": math.log(p_second)}]
    return {"logprobs": {"content": [{"token": "M" if p_second > 0.5 else "m", "logprob": 0.0, "top_logprobs": top}]}}


def test_annotations_report_by_hand():
    rows = [ann(2, "r" * 10, "m" * 100, is_swapped=False),   # model (second shown) wins, longer
            ann(1, "r" * 100, "m" * 10, is_swapped=False),   # reference (first shown) wins, longer
            ann(1.9, "r" * 10, "m" * 20, is_swapped=True),   # model shown first wins; lengths differ by 10
            ann(1.5, "r" * 10, "m" * 100, is_swapped=True),  # a draw: not decisive, lengths equal for alpaca_eval
            ann(None, "r", "m"),                              # no preference, no order
            ann(1.2, "r" * 200, "m" * 10,                     # order recovered: 1 + P(second)=0.2 -> shown in order
                raw_completion=weighted_raw(0.2)),
            ann(1.2, "r" * 10, "m" * 200, raw_completion=weighted_raw(0.8))]  # 2 - 0.8 = 1.2 -> swapped
    rows.append(dict(rows[0]))  # a duplicate pair: dropped, as alpaca_eval does
    r = jq.annotations_report(rows)
    assert (r["n_pairs"], r["n_duplicates"]) == (7, 1)
    assert jq.shown_first(rows[5]) == "output_1" and jq.shown_first(rows[6]) == "output_2"
    assert jq.shown_first(ann(1.5, "a", "b", raw_completion=weighted_raw(0.5))) is None
    # decisive with known order: rows 0 (second won), 1 (first won), 2 (first won), 5 (first), 6 (second)
    assert (r["prefers_first_shown"]["k"], r["prefers_first_shown"]["n"]) == (3, 5)
    assert r["n_shown_order_unknown"] == 1
    # longer (> 30 chars apart): row 0 yes, row 1 yes, row 5 yes (reference 200 won), row 6 no (reference 10 won)
    assert (r["prefers_longer"]["k"], r["prefers_longer"]["n"]) == (3, 4)
    assert r["flip_rate"] is None and "both orders" in r["order_note"]


def test_cli_judge_report_on_written_files(capsys, tmp_path):
    path = write_judgments(tmp_path / "gpt-4_pair.jsonl", [pair(1, "model_1", "model_1"), pair(2, "model_1", "model_2")])
    code = cli.main(["judge", "report", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (r,) = json.loads(out)
    assert r["kind"] == "mt_bench_pairwise" and r["flip_rate"]["k"] == 1 and r["prefers_first_shown"]["k"] == 3

    single = write_judgments(tmp_path / "gpt-4_single.jsonl", [{"question_id": 1, "model": "a", "score": 5}])
    code = cli.main(["judge", "report", str(single)])
    _, err = capsys.readouterr()
    assert code == 1 and "row 0: no field 'g1_winner'" in err and "Traceback" not in err


def test_real_gpt4_turbo_annotations_shown_order_and_biases():
    root = shared_data("alpaca_eval")
    if root is None:
        pytest.skip("AlpacaEval data not present (../shared/data/alpaca_eval)")
    r = jq.judge_report(root / "gpt4_0613_concise_weighted_annotations.json")
    # every annotation with a raw completion gives its order (398 in order, 402 swapped); 5 have none
    assert r["n_pairs"] == 805 and r["n_shown_order_unknown"] == 5
    assert r["prefers_first_shown"]["n"] == 800
    assert 0 < r["prefers_longer"]["rate"] < 1 and r["prefers_longer"]["n"] > 700
