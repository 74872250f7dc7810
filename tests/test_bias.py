"""Position statistics by hand, and Figure 6's numbers from the real GPT-4 logs."""

import numpy as np
import pytest

from conftest import RATING_STRATEGIES
from starling_lib.bias import (
    analyze_rating_log, bias_report, bootstrap_interval, chi_square_uniform, first_place_counts, mean_rank_by_position,
    position_stats, power_analysis, power_analytic, prompts_needed, rating_log_folders, scaled_profile,
    strategy_effects, total_variation_from_uniform, wilson_interval,
)
from test_nectar import rating_log_row, write_lines

# First-place frequency by input position A..G from the recorded ranking_order (issue 3 quotes
# no_pairwise; the others are the same computation, rounded to 3 digits).
FIGURE_6 = {
    "no_pairwise": [.313, .308, .174, .097, .046, .031, .031],
    "pairwise_no_given_order": [.278, .225, .107, .134, .112, .086, .059],
    "pairwise_not_random": [.271, .126, .090, .156, .126, .090, .141],
    "baseline_no_tiebreak": [.278, .175, .077, .134, .108, .124, .103],
    "tiebreak_order_given": [.214, .144, .102, .160, .123, .144, .112],
    "tiebreak_order_given_static_2": [.210, .193, .061, .171, .072, .160, .133],
}


def test_wilson_interval_textbook_values():
    low, high = wilson_interval([0, 5], 10)
    assert low[0] == pytest.approx(0.0, abs=1e-12) and high[0] == pytest.approx(0.2775, abs=1e-4)
    assert low[1] == pytest.approx(0.2366, abs=1e-4) and high[1] == pytest.approx(0.7634, abs=1e-4)


def test_counts_ranks_and_chi_square_by_hand():
    orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [2]]  # the last is incomplete: counts for first place only
    assert first_place_counts(orders, 3).tolist() == [2, 1, 1]
    mean, se, n = mean_rank_by_position(orders, 3)
    # ranks of positions 0,1,2 in the three complete orders: (1,2,3), (1,3,2), (2,1,3)
    assert n == 3 and mean.tolist() == pytest.approx([4 / 3, 2.0, 8 / 3])
    assert se[0] == pytest.approx(np.std([1, 1, 2], ddof=1) / np.sqrt(3))
    stat, dof, p = chi_square_uniform([10, 0])
    assert (stat, dof) == (10.0, 1) and p == pytest.approx(0.0015654, abs=1e-6)
    assert total_variation_from_uniform([0.5, 0.5]) == 0 and total_variation_from_uniform([1, 0, 0, 0]) == 0.75
    with pytest.raises(ValueError, match="outside 0..2"):
        first_place_counts([[3, 0, 1]], 3)


def test_bootstrap_interval_brackets_the_estimate():
    orders = [[0]] * 30 + [[1]] * 10
    low, high = bootstrap_interval(orders, 2, n_bootstrap=500, seed=1)
    assert low[0] < 0.75 < high[0] and low[1] < 0.25 < high[1]
    st = position_stats(orders, 2, ci="bootstrap", n_bootstrap=500)
    assert st.ci_method == "bootstrap" and st.first_freq.tolist() == [0.75, 0.25]
    with pytest.raises(ValueError, match="wilson"):
        position_stats(orders, 2, ci="normal")


def test_power_analytic_matches_simulation_and_scales_with_bias():
    freq = np.array(FIGURE_6["no_pairwise"])
    for row in power_analysis(freq, [10, 20, 40], n_sim=4000, seed=3):
        assert row["power_analytic"] == pytest.approx(row["power_simulated"], abs=0.07)
    assert power_analytic(np.ones(7), 1000) == pytest.approx(0.05)
    n_strong, n_weak = prompts_needed(freq), prompts_needed(scaled_profile(freq, 0.3))
    assert n_strong < n_weak
    assert power_analytic(freq, n_strong) >= 0.8 > power_analytic(freq, n_strong - 1)
    assert prompts_needed(np.ones(7)) is None


def test_figure_6_first_place_frequencies_exactly(ratings_dir):
    results = {}
    for folder in rating_log_folders(ratings_dir):
        res = analyze_rating_log(folder)
        results[res.strategy] = res.stats
        assert np.round(res.stats.first_freq, 3).tolist() == FIGURE_6[res.strategy]
        assert res.stats.n == res.stats.n_complete == res.stats.first_counts.sum()
        assert np.all(res.stats.ci_low <= res.stats.first_freq) and np.all(res.stats.first_freq <= res.stats.ci_high)
    assert tuple(results) == tuple(sorted(RATING_STRATEGIES))
    assert sum(st.n for st in results.values()) == 1143
    # The naive ranking is the most biased: position A or B comes first 62% of the time.
    effects = {e["strategy"]: e for e in strategy_effects(results)}
    assert all(e["delta_tv"] < 0 for name, e in effects.items() if name != "no_pairwise")
    assert results["no_pairwise"].p_value < 1e-20
    with pytest.raises(KeyError, match="baseline"):
        strategy_effects({"x": results["no_pairwise"]})


def test_reparse_agrees_with_the_recorded_order(ratings_dir):
    for folder in rating_log_folders(ratings_dir):
        res = analyze_rating_log(folder, reparse=True)
        rp = res.reparse
        assert rp["n_rows"] == rp["n_parsed"] == rp["n_recorded_full"]
        assert rp["agreement"] >= 0.99 and rp["n_unparseable"] == 0
        assert np.round(res.stats.first_freq, 3).tolist() == FIGURE_6[res.strategy]


def test_rating_log_folders_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <strategy>/rankings.jsonl"):
        rating_log_folders(tmp_path)


# ------------------------------------------------------------------ several k, and other logs

def test_a_log_with_several_k_is_analysed_per_k(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    three = [{"answer": t, "model": t, "rank": r} for t, r in (("x", 3.0), ("y", 1.0), ("z", 2.0))]
    lines = [rating_log_row(ranking_order=[1, 0], rating_text="[['B', 'A']]"),
             rating_log_row(ranking_order=[0, 1], rating_text="[['A', 'B']]"),
             rating_log_row(ranking_order=[1, 0], rating_text="[['B', 'A']]"),
             rating_log_row(answers=three, ranking_order=[2, 0, 1], model_ranking=["z", "x", "y"], k=3,
                            rating_text="[['C', 'A', 'B']]")]
    write_lines(folder / "rankings.jsonl", lines)
    res = analyze_rating_log(folder, reparse=True)
    assert sorted(res.by_k) == [2, 3] and res.stats is res.by_k[3]
    assert res.by_k[2].first_counts.tolist() == [1, 2] and res.by_k[2].n == 3
    assert res.by_k[3].first_counts.tolist() == [0, 0, 1]
    assert res.reparse["n_agree"] == res.reparse["n_recorded_full"] == 4
    payload = res.to_dict(digits=3)
    assert payload["k"] == 3 and payload["by_k"][2]["first_freq"] == [0.333, 0.667]
    text = bias_report([folder]).format_text().splitlines()
    assert text[2].split() == ["mixed", "3", "1", "0.000", "0.000", "1.000", "0.333", "0.37"]  # chi2 = 2, p = e^-1
    assert text[3].split()[:4] == ["2", "3", "0.333", "0.667"]


def test_report_puts_the_unranked_baseline_next_to_figure_6(ratings_dir, experiments_dir):
    report = bias_report([ratings_dir, experiments_dir / "pointwise_pairwise_baseline",
                          experiments_dir / "pointwise_rating_better_prompt"])
    logs = {r.strategy: r for r in report.logs}
    assert list(logs)[-1] == "pointwise_pairwise_baseline" and logs["pointwise_pairwise_baseline"].stats.n == 98
    assert logs["pointwise_pairwise_baseline"].stats.first_counts.tolist() == [17, 19, 10, 18, 11, 11, 12]
    for name in RATING_STRATEGIES:  # Figure 6 unchanged
        assert np.round(logs[name].stats.first_freq, 3).tolist() == FIGURE_6[name] and not logs[name].by_k.keys() - {7}
    assert {e["strategy"] for e in report.effects_vs_naive} == set(RATING_STRATEGIES) | {"pointwise_pairwise_baseline"}
    assert report.pointwise == [{"strategy": "pointwise_rating_better_prompt", "kind": "pointwise-log",
                                 "path": str(experiments_dir / "pointwise_rating_better_prompt" / "rankings.jsonl"),
                                 "n_rows": 672, "n_prompts": 97}]
    assert "no input positions" in report.format_text()


def test_agreement_logs_first_place_per_k(experiments_dir):
    res = analyze_rating_log(experiments_dir / "pairwise_agreement_explain")
    assert sorted(res.by_k) == [2, 3, 4, 5, 6, 7] and res.stats.k == 7
    assert [res.by_k[k].n for k in range(2, 8)] == [99] * 6
    # the judge still favours position A at every k (against 1/k)
    assert all(res.by_k[k].first_freq[0] > 1 / k for k in range(2, 8))
