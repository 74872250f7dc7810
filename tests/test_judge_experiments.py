"""The authors' other judge experiments: K-wise order against pairwise calls, and pointwise scores,
by hand on small cases and exactly on the published logs."""

import json
import math

import pytest
from scipy import stats as sps

from starling_lib.data.schema import NectarFormatError
from starling_lib.judge_experiments import (
    agreement_report, analyze_agreement_log, compare_with_ranking, pairwise_agreement, pointwise_report,
    pointwise_scores, read_log_args, score_counts, t_interval,
)

from test_nectar import rating_log_row, write_lines


# ---------------------------------------------------------------------------- agreement by hand

def agreement_row(order, pairwise, k=None):
    return {"k": k or len(order), "ranking_order": order, "pairwise": pairwise}


def test_error_is_the_share_of_adjacent_pairs_decided_the_other_way():
    rows = [
        agreement_row([2, 0, 1], [2, 0]),  # both pairwise winners are the K-wise better one: 0
        agreement_row([2, 0, 1], [0, 1]),  # both reversed: 1
        agreement_row([1, 0, 2], [1, 2]),  # second reversed: 1/2
        agreement_row([0, 1], [1]),        # k = 2, reversed: 1
        agreement_row([0, 1], [0]),        # k = 2, agrees: 0
        agreement_row([1], [], k=2),       # GPT-4 ranked one answer, no pairwise call: left out
    ]
    at2, at3 = pairwise_agreement(rows)
    assert (at3.k, at3.n_rows, at3.n_left_out, at3.n_pairs, at3.n_disagree) == (3, 3, 0, 6, 3)
    assert at3.mean_error == pytest.approx(0.5)  # mean of 0, 1, 1/2: per row, not per pair
    assert (at2.k, at2.n_rows, at2.n_left_out, at2.n_pairs, at2.n_disagree, at2.mean_error) == (2, 2, 1, 2, 1, 0.5)
    # Student t: 0.5 ± t(0.975, 2) · sd / √3 with sd = 0.5
    half = sps.t.ppf(0.975, 2) * 0.5 / math.sqrt(3)
    assert (at3.ci_low, at3.ci_high) == pytest.approx((0.5 - half, 0.5 + half))


def test_t_interval_edge_cases():
    assert all(math.isnan(x) for x in t_interval([0.3]))
    assert t_interval([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))  # no spread, no width


@pytest.mark.parametrize("pairwise, reason", [("B", "wrong_type"), ([0, "A"], "wrong_type"), (None, "wrong_type"),
                                              ([0, 1, 2], "wrong_num_answers")])
def test_bad_pairwise_names_file_row_and_field(pairwise, reason):
    rows = [agreement_row([1, 0, 2], [1, 0]), agreement_row([1, 0, 2], pairwise)]
    with pytest.raises(NectarFormatError) as caught:
        pairwise_agreement(rows, path="x/rankings.jsonl")
    err = caught.value
    assert (err.row, err.field, err.reason) == (1, "pairwise", reason)
    assert str(err).startswith("x/rankings.jsonl: row 1, field 'pairwise': ")


def test_agreement_log_folder_reads_its_run_settings(tmp_path):
    folder = tmp_path / "my_agreement"
    folder.mkdir()
    write_lines(folder / "rankings.jsonl", [rating_log_row(pairwise=[1]), rating_log_row(pairwise=[0])])
    (folder / "log_args.txt").write_text("Namespace(dirname='results/x', k_val=7, seed=101, explain=False, "
                                         "do_pairwise=True, shuffle=True)\n")
    assert read_log_args(folder) == {"explain": False, "do_pairwise": True, "shuffle": True}
    log = analyze_agreement_log(folder)
    assert (log.experiment, log.explain, log.shuffle) == ("my_agreement", False, True)
    assert [(a.k, a.n_rows, a.mean_error) for a in log.by_k] == [(2, 2, 0.5)]  # order [1, 0]: [1] agrees
    assert json.loads(json.dumps(log.to_dict()))["by_k"][0]["n_disagree"] == 1
    plain = tmp_path / "plain"
    plain.mkdir()
    write_lines(plain / "rankings.jsonl", [rating_log_row()])
    with pytest.raises(ValueError, match="no 'pairwise' field: not an agreement log"):
        analyze_agreement_log(plain)
    report = agreement_report([tmp_path])
    assert [log.experiment for log in report.logs] == ["my_agreement"] and report.skipped == [str(plain)]
    with pytest.raises(ValueError, match="no agreement log"):
        agreement_report([plain])


# ------------------------------------------------------------------------- pointwise by hand

def pointwise_row(prompt, answer, model, score):
    """A row as read_pointwise_log returns it."""
    return {"prompt": f"\n\nHuman: {prompt}\n\nAssistant: ", "answer": answer, "model": model, "score": float(score)}


def ranking_of(prompt, answers, order):
    return {"prompt": f"\n\nHuman: {prompt}\n\nAssistant: ", "ranking_order": order,
            "answers": [{"answer": a, "model": m, "rank": None} for a, m in answers]}


def test_pointwise_scores_average_repeats_and_compare_adjacent_pairs():
    scored = [pointwise_row("q", "a", "m1", 9), pointwise_row("q", "a", "m1", 7),  # "a" scored twice: mean 8
              pointwise_row("q", "b", "m1", 8), pointwise_row("q", "c", "m2", 10),
              pointwise_row("r", "d", "m1", 5)]
    assert score_counts(scored) == {5.0: 1, 7.0: 1, 8.0: 1, 9.0: 1, 10.0: 1}
    by_text = pointwise_scores(scored)
    assert by_text[("\n\nHuman: q\n\nAssistant: ", "a")] == 8.0 and len(by_text) == 4
    rankings = [ranking_of("q", [("a", "m1"), ("b", "m1"), ("c", "m2")], [2, 0, 1]),  # c(10) > a(8) = b(8)
                ranking_of("r", [("d", "m1"), ("e", "m2")], [0, 1])]                  # e has no score: skipped
    c = compare_with_ranking(rankings, by_text)
    assert (c.n_rankings, c.n_scored, c.n_pairs, c.counts) == (2, 1, 2, {"tie": 1, "agree": 1, "disagree": 0})
    # Matched by model name, a and b (both m1) become one answer, scored (9 + 7 + 8) / 3
    assert pointwise_scores(scored, match="model")[("\n\nHuman: q\n\nAssistant: ", "m1")] == 8.0
    with pytest.raises(ValueError, match="match must be one of"):
        pointwise_scores(scored, match="position")


def test_name_matching_turns_different_answers_into_ties():
    scored = [pointwise_row("q", "good", "m1", 9), pointwise_row("q", "bad", "m1", 3)]
    ranking = [ranking_of("q", [("good", "m1"), ("bad", "m1")], [0, 1])]
    assert compare_with_ranking(ranking, pointwise_scores(scored)).counts["agree"] == 1
    assert compare_with_ranking(ranking, pointwise_scores(scored, "model"), "model").counts["tie"] == 1


# --------------------------------------------------------------------------- the published logs

AGREEMENT_EXPLAIN = [.103, .207, .290, .275, .305, .301]  # the reference, k = 2..7


def test_agreement_explain_reproduces_the_reference_exactly(experiments_dir):
    log = analyze_agreement_log(experiments_dir / "pairwise_agreement_explain")
    assert (log.explain, log.shuffle) == (True, False)
    assert [a.k for a in log.by_k] == [2, 3, 4, 5, 6, 7]
    assert [round(a.mean_error, 3) for a in log.by_k] == AGREEMENT_EXPLAIN
    assert [a.n_rows for a in log.by_k] == [97, 99, 99, 99, 99, 99] and log.by_k[0].n_left_out == 2
    assert log.by_k[0].n_disagree == 10 and log.by_k[-1].n_pairs == 99 * 6
    assert all(a.ci_low < a.mean_error < a.ci_high for a in log.by_k)


def test_all_four_agreement_logs(experiments_dir):
    report = agreement_report([experiments_dir])
    settings = {log.experiment: (log.explain, log.shuffle) for log in report.logs}
    assert settings == {"pairwise_agreement_explain": (True, False), "pairwise_agreement_explain_shuffle": (True, True),
                        "pairwise_agreement_no_explain": (False, False),
                        "pairwise_agreement_no_explain_shuffle": (False, True)}
    assert sorted(map(str, report.skipped)) == [str(experiments_dir / "pointwise_pairwise_baseline"),
                                                str(experiments_dir / "pointwise_rating_better_prompt")]
    errors = {log.experiment: [round(a.mean_error, 3) for a in log.by_k] for log in report.logs}
    assert errors["pairwise_agreement_no_explain"] == [.068, .204, .258, .276, .307, .318]
    # the K-wise order disagrees with a separate pairwise call more often as k grows
    assert all(e[-1] > e[0] for e in errors.values())


def test_pointwise_reproduces_the_reference_exactly(experiments_dir):
    report = pointwise_report(experiments_dir / "pointwise_rating_better_prompt",
                              experiments_dir / "pointwise_pairwise_baseline")
    assert (report.n_answers, report.n_prompts, report.score_counts[10.0]) == (672, 97, 512)
    c = report.comparison
    assert (c.n_rankings, c.n_scored, c.n_pairs) == (98, 95, 570)
    assert c.counts == {"tie": 399, "agree": 112, "disagree": 59}
    assert {o: round(f, 3) for o, f in c.fractions.items()} == {"tie": .700, "agree": .196, "disagree": .104}
    assert "512 got the top score 10" in report.format_text()
    by_model = pointwise_report(experiments_dir / "pointwise_rating_better_prompt",
                                experiments_dir / "pointwise_pairwise_baseline", match="model").comparison
    assert by_model.counts["tie"] > c.counts["tie"]  # the authors' name match adds ties
