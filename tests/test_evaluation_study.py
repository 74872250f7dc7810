"""Notebook 04's bookkeeping in evaluation.findings and its figures in evaluation.figures: tables,
results, checks and verdict from hand-made runs, and the published rows from the real files."""

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from starling_lib.evaluation import figures, findings  # noqa: E402
from starling_lib.paths import shared_data  # noqa: E402

MODEL_IDS = {"sft": "tiny-sft-0", "apa": "tiny-apa-0"}


def _scores(overall_sft=4.0, overall_apa=2.5, failed=0):
    def one(overall, writing, math):
        return {"turn_1": overall + 0.5, "turn_2": overall - 0.5, "overall": overall, "n_judgments": 4,
                "n_failed": failed, "by_category": {"writing": writing, "math": math}}
    return {"tiny-sft-0": one(overall_sft, 3.0, 5.0), "tiny-apa-0": one(overall_apa, 4.0, 1.0)}


def _gold():
    return pd.DataFrame([{"model": m, "question_id": q, "turn": t, "category": c, "gold": g}
                         for m, base in (("sft", 1.0), ("apa", 0.0)) for q, c in ((1, "writing"), (2, "math"))
                         for t, g in ((1, base + q), (2, base + q + 1))])


def _alpaca():
    rows = [("sft", 0.0, 27.4, 2.0, 46.8, 23.8, 68), ("apa", 0.0, 7.3, 1.0, 9.0, 5.0, 300),
            ("sft", 1.0, 16.8, 2.3, 20.0, 13.1, 120), ("apa", 1.0, 25.6, 2.6, 30.0, 22.0, 150)]
    return pd.DataFrame([{"model": m, "temperature": t, "win_rate": w, "standard_error": se,
                          "lc_refit_no_difficulty": lc, "gold_win_rate": g, "gold": 0.0, "avg_length": n,
                          "n_total": 2, "n_failed": 0} for m, t, w, se, lc, g, n in rows])


def test_gold_win_rate_counts_ties_half():
    # wins 1 (3 > 1), tie 1 (1 == 1), loss 1 (2 < 3): (1 + 0.5) / 3
    assert findings.gold_win_rate([3, 1, 2], [1, 1, 3]) == pytest.approx(50.0)
    assert findings.gold_win_rate([2, 2], [1, 1]) == 100.0


def test_mt_bench_tables_by_hand():
    gold = _gold()
    table = findings.mt_bench_demo_table(_scores(), gold, MODEL_IDS)
    assert table.loc["sft", "overall"] == 4.0 and table.loc["apa", "turn 1"] == 3.0
    assert table.loc["sft", "mean gold"] == pytest.approx((2 + 3 + 3 + 4) / 4)
    judge, gold_cat = findings.mt_bench_by_category(_scores(), gold, MODEL_IDS)
    assert list(judge.index) == ["writing\nT=0.7", "math\nT=0"] and list(judge.columns) == ["sft", "apa"]
    assert gold_cat.loc["math\nT=0", "apa"] == pytest.approx((2 + 3) / 2)
    assert list(gold_cat.columns) == ["sft", "apa"]


def test_lc_estimate_summary_keeps_the_errors_only():
    assert findings.lc_estimate_summary(None) is None
    est = {"method": "m", "ridge": 0.5, "ridge_chosen_by": "grid", "errors": {"all": 1}, "exact": {"models": []},
           "models": [1, 2], "refit_no_difficulty": {"errors": {"mae": 6.5}, "models": [3]}}
    assert findings.lc_estimate_summary(est) == {"method": "m", "ridge": 0.5, "ridge_chosen_by": "grid",
                                              "errors": {"all": 1}, "exact": {"models": []},
                                              "refit_no_difficulty": {"mae": 6.5}}


def _check_inputs(**changes):
    quality = {"n_pairs": 3, "kappa_between_orders": 0.5}
    inputs = dict(mt_scores=_scores(), model_ids=MODEL_IDS, n_questions=2, resumed_same=True, alpaca=_alpaca(),
                  n_instructions=2, pair_rows=[{}, {}, {}], pair_quality=quality, published=None, lc_estimate=None,
                  paper=pd.DataFrame({"alpaca_eval_v1": [1.0]}), judge_real=None, mt_real=None)
    return inputs | changes


def test_evaluation_checks_pass_and_fail_by_hand():
    checks = findings.evaluation_checks(**_check_inputs())
    assert len(checks) == 5 and all(checks.values())
    failing = findings.evaluation_checks(**_check_inputs(mt_scores=_scores(failed=1), resumed_same=False))
    assert not failing["every MT-Bench demo judgment parsed (none failed)"]
    assert not failing["a repeated judging run sends nothing and scores the same"]
    assert failing["two judgments per question and model"]
    mt_real = {"questions": 80, "judge_prompts": 8, "references": 29, "judgments_per_model": 160}
    assert not findings.evaluation_checks(**_check_inputs(mt_real=mt_real))[
        "MT-Bench: 80 questions, 8 judge prompts, 30 references, 160 judgments per model"]


def test_tiny_verdict_checks_and_verdict_from_the_runs():
    gold = _gold()
    judge, _ = findings.mt_bench_by_category(_scores(), gold, MODEL_IDS)
    checks = findings.tiny_verdict_checks(alpaca=_alpaca(), mt_scores=_scores(), gold_mt=gold, by_category=judge,
                                       model_ids=MODEL_IDS)
    assert all(checks.values()), checks
    text = findings.demo_verdict(alpaca=_alpaca(), mt_scores=_scores(), gold_mt=gold, by_category=judge,
                              pair={"win_rate": 0.35}, model_ids=MODEL_IDS, reference={"avg_length": 182})
    assert "APA beats its SFT start, 25.6 % vs 16.8 %" in text and "(± 2.6 and 2.3)" in text
    assert "SFT 27.4 %, APA 7.3 %" in text and "SFT beats APA" in text
    assert "APA is ahead in writing (the T = 0.7 categories: writing)" in text
    assert "SFT 4.00 and APA 2.50 (gold 3.00 vs 2.00)" in text and "wins 0.35" in text
    assert "average 68 characters against the reference's 182" in text and "46.8 % against the raw 27.4 %" in text
    assert "a shift of +19.4 points, beyond two standard errors (± 2.0); the gold win rate (23.8 %) is closer to the raw number" in text
    small = _alpaca().assign(lc_refit_no_difficulty=[22.2, 7.7, 18.8, 22.0], win_rate=[22.7, 7.3, 16.8, 25.6])
    assert "a shift of -0.5 points, within two standard errors (± 2.0): length control makes no measurable" in (
        findings.demo_verdict(alpaca=small, mt_scores=_scores(), gold_mt=gold, by_category=judge,
                              pair={"win_rate": 0.35}, model_ids=MODEL_IDS, reference={"avg_length": 182}))
    # the same cells on a run where sampling does not help APA say so
    flipped = _alpaca().assign(win_rate=[27.4, 7.3, 25.6, 16.8])
    assert "APA does not beat its SFT start" in findings.demo_verdict(
        alpaca=flipped, mt_scores=_scores(), gold_mt=gold, by_category=judge, pair={"win_rate": 0.35},
        model_ids=MODEL_IDS, reference={"avg_length": 182})
    level = _alpaca().assign(win_rate=[27.4, 7.3, 21.52, 21.48])
    assert "APA is level with its SFT start, 21.5 % vs 21.5 %" in findings.demo_verdict(
        alpaca=level, mt_scores=_scores(), gold_mt=gold, by_category=judge, pair={"win_rate": 0.35},
        model_ids=MODEL_IDS, reference={"avg_length": 182})
    assert not findings.tiny_verdict_checks(alpaca=flipped, mt_scores=_scores(), gold_mt=gold, by_category=judge,
                                         model_ids=MODEL_IDS)["tiny: sampled (T=1), APA beats SFT on the judge's and the gold win rate"]


def test_alpaca_demo_figure_draws_the_table():
    alpaca = _alpaca()
    fig = figures.alpaca_demo_figure(alpaca, [0.0, 1.0], reference="tiny-rambler", n_instructions=2, style="weighted")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([27.4, 16.8, 7.3, 25.6])  # sft at T=0, 1, then apa
    assert ax.get_title() == "AlpacaEval demo (2 instructions), weighted annotator"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["T = 0 (greedy)", "T = 1"]


def _alpaca_dir():
    path = shared_data("alpaca_eval")
    if path is None or not (path / "gpt4_0613_concise_weighted_annotations.json").is_file():
        pytest.skip("published AlpacaEval data not present (../shared/data/alpaca_eval)")
    return path


def test_alpaca_eval_2_row_equals_the_leaderboard():
    row = findings.alpaca_eval_2_row(_alpaca_dir())
    rec = row["results"]["gpt4_0613_concise"]["recomputed"]
    assert (round(rec["win_rate"], 3), round(rec["standard_error"], 3), rec["n_total"]) == (9.4, 0.901, 805)
    assert row["table"].difference.abs().max() < 1e-9
    assert row["results"]["starling_lm_7b_alpha"]["avg_length_recomputed"] == 1895


def test_mt_bench_files_summary_on_fastchats_files():
    bench = shared_data("mt_bench")
    if bench is None or not (bench / "question.jsonl").is_file():
        pytest.skip("FastChat's MT-Bench files not present (../shared/data/mt_bench)")
    counts, prompts = findings.mt_bench_files_summary(bench)
    assert (counts["questions"], counts["judge_prompts"], counts["references"], counts["judgments_per_model"]) == (
        80, 8, 30, 160)
    assert prompts.loc["math", 1] == "single-math-v1" and prompts.loc["writing", 2] == "single-v1-multi-turn"


def test_paper_table_figure_rings_the_recomputed_cells():
    paper = pd.DataFrame({"model": ["Openchat-3.5", "Starling-7B", "X"], "method": ["C-RLFT", "APA", "SFT"],
                          "mt_bench": [7.81, 8.09, 6.0], "alpaca_eval_v1": [88.5, 91.99, None],
                          "alpaca_eval_v1_recomputed": [88.5, None, None]})
    fig = figures.paper_table_figure(paper, "a source")
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 2 + 1  # two rated rows, one ring
    assert findings.benchmark_spearman(paper) == (pytest.approx(1.0), 2)
    assert any(t.get_text() == "source: a source" for t in fig.texts)
