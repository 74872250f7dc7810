"""Notebook 04's bookkeeping, so each of its cells is one call.

- The published rows recomputed from ``shared``: :func:`alpaca_eval_2_row`, :func:`lc_estimate_from_shared`,
  :func:`real_judge_reports`, :func:`mt_bench_files_summary`.
- The demo runs' tables: :func:`mt_bench_gold`, :func:`mt_bench_demo_table`, :func:`mt_bench_by_category`,
  :func:`alpaca_demo_runs`.
- The results file (:func:`evaluation_results`), the checks (:func:`evaluation_checks`,
  :func:`tiny_verdict_checks`) and the verdict rendered from the runs (:func:`demo_verdict`).

The policies and the demo set they run on are in :mod:`~starling_lib.evaluation.study`; the figures
in :mod:`~starling_lib.evaluation.figures`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from starling_lib.data.gold import gold_reward
from starling_lib.evaluation.study import instruction_gold


AE2_ROW_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total", "discrete_win_rate",
                   "avg_length")
"""The AlpacaEval 2 leaderboard columns recomputed from a model's annotations."""


def alpaca_eval_2_row(alpaca_dir: str | Path, model: str = "gpt4_0613_concise") -> dict:
    """``model``'s AlpacaEval 2 leaderboard row recomputed from its real annotations in ``alpaca_dir``.

    Returns ``{"results", "table", "summary"}``: the JSON-ready numbers (``model``'s recomputed and
    published columns, its published LC and the offline refit under its own name; Starling-LM-7B-alpha's
    row and average length from its outputs file), the side-by-side table (recomputed, leaderboard,
    difference) and a printable summary of the LC and length lines.
    """
    from starling_lib.evaluation import alpaca_eval

    alpaca_dir = Path(alpaca_dir)
    board = alpaca_eval.load_leaderboard(alpaca_dir / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv")
    ours = alpaca_eval.score_annotations(alpaca_eval.load_annotations(alpaca_dir / f"{model}_weighted_annotations.json"))
    row, starling_row = board.loc[model], board.loc["Starling-LM-7B-alpha"]
    recomputed = {c: float(ours[c]) for c in AE2_ROW_COLUMNS}
    leaderboard = {c: float(row[c]) for c in AE2_ROW_COLUMNS}
    table = pd.DataFrame({"recomputed": recomputed, "leaderboard": leaderboard}).loc[list(AE2_ROW_COLUMNS)]
    table["difference"] = table.recomputed - table.leaderboard
    refit = ours["lc_winrate_refit_no_difficulty"]
    starling_length = alpaca_eval.avg_length(
        [o["output"] for o in alpaca_eval.load_outputs(alpaca_dir / "Starling-LM-7B-alpha_outputs.json")])
    reference_length = alpaca_eval.avg_length(
        [o["output"] for o in alpaca_eval.load_outputs(alpaca_dir / "reference_gpt4_1106_preview_outputs.json")])
    summary = (f"length-controlled win rate: published {row.length_controlled_winrate:.3f}; the offline refit "
               f"without difficulties (lc_winrate_refit_no_difficulty) {refit:.3f}\n  {ours['lc_note']}\n"
               f"Starling-LM-7B-alpha on the same leaderboard: win rate {starling_row.win_rate:.2f} ± "
               f"{starling_row.standard_error:.2f}, LC {starling_row.length_controlled_winrate:.2f}; average length "
               f"{starling_length} characters from its outputs file (leaderboard {starling_row.avg_length}), "
               f"the reference's {reference_length}")
    results = {model: {"recomputed": recomputed, "leaderboard": leaderboard,
                       "lc_published": float(row.length_controlled_winrate), "lc_winrate_refit_no_difficulty": refit},
               "starling_lm_7b_alpha": {"win_rate": float(starling_row.win_rate),
                                        "lc": float(starling_row.length_controlled_winrate),
                                        "avg_length_recomputed": starling_length,
                                        "avg_length_leaderboard": int(starling_row.avg_length)}}
    return {"results": results, "table": table, "summary": summary}


def lc_estimate_from_shared(alpaca_dir: str | Path) -> dict:
    """:func:`~starling_lib.evaluation.alpaca_eval.lc_from_weights` on the leaderboard files in ``alpaca_dir``."""
    from starling_lib.evaluation import alpaca_eval

    alpaca_dir = Path(alpaca_dir)
    return alpaca_eval.lc_from_weights(alpaca_dir / "lc_glm_weights_baseline_gpt4_1106_preview.csv",
                                       alpaca_dir / "ae2_leaderboard_preferences.csv.gz",
                                       alpaca_dir / "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv")


def lc_estimate_summary(lc_estimate: dict | None) -> dict | None:
    """The part of an LC estimate the results file keeps: method, ridge, errors, the exact models,
    and the refit-without-difficulty's errors (``None`` stays ``None``)."""
    if lc_estimate is None:
        return None
    return ({k: lc_estimate[k] for k in ("method", "ridge", "ridge_chosen_by", "errors", "exact")}
            | {"refit_no_difficulty": lc_estimate["refit_no_difficulty"]["errors"]})


def real_judge_reports(alpaca_dir: str | Path) -> dict[str, dict]:
    """:func:`~starling_lib.evaluation.judge_quality.judge_report` of the GPT-4-turbo annotations of
    ``gpt4_0613_concise`` and of every AlpacaEval 1 annotations file, keyed by file name stem."""
    from starling_lib.evaluation import judge_quality

    alpaca_dir = Path(alpaca_dir)
    files = [alpaca_dir / "gpt4_0613_concise_weighted_annotations.json",
             *sorted((alpaca_dir / "alpaca_eval_1").glob("*_annotations.json"))]
    return {f.name.removesuffix("_annotations.json"): judge_quality.judge_report(f) for f in files}


def judge_quality_table(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per judge report: pairs, P(first shown) and P(longer) with their 95 % intervals."""
    return pd.DataFrame({name: {"pairs": r["n_pairs"], "P(first shown)": r["prefers_first_shown"]["rate"],
                                "first-shown 95% CI": r["prefers_first_shown"]["ci95"],
                                "P(longer)": r["prefers_longer"]["rate"], "longer 95% CI": r["prefers_longer"]["ci95"]}
                         for name, r in reports.items()}).T


def mt_bench_files_summary(bench_dir: str | Path) -> tuple[dict, pd.DataFrame]:
    """FastChat's real MT-Bench files in ``bench_dir``: ``(counts, prompts)``, the counts of questions,
    judge prompts, references and single judgments per model (and questions per category), and the
    judge prompt each category and turn gets (requests built for placeholder answers)."""
    from starling_lib.evaluation import mt_bench

    bench_dir = Path(bench_dir)
    questions = mt_bench.load_questions(bench_dir / "question.jsonl")
    prompts = mt_bench.load_judge_prompts(bench_dir / "judge_prompts.jsonl")
    references = mt_bench.load_references(bench_dir / "reference_answer" / "gpt-4.jsonl")
    placeholder = {q.question_id: ["(answer 1)", "(answer 2)"] for q in questions}
    requests, plan, _ = mt_bench.build_single_requests(questions, placeholder, "any-model", prompts, references)
    chosen = pd.DataFrame([{"category": p["category"], "turn": p["turn"], "judge prompt": p["prompt_name"]}
                           for p in plan])
    table = (chosen.groupby(["category", "turn"])["judge prompt"].agg(lambda s: ", ".join(sorted(set(s))))
             .unstack("turn"))
    counts = {"questions": len(questions), "judge_prompts": len(prompts), "references": len(references),
              "judgments_per_model": len(requests), "per_category": mt_bench.category_counts(questions)}
    return counts, table


def benchmark_spearman(paper: pd.DataFrame) -> tuple[float, int]:
    """Spearman correlation of MT-Bench and AlpacaEval 1 over the table's rows that have both, and their number."""
    rated = paper.dropna(subset=["alpaca_eval_v1"])
    return float(rated[["mt_bench", "alpaca_eval_v1"]].corr(method="spearman").iloc[0, 1]), len(rated)


def mt_bench_gold(questions, answers: dict, model_ids: dict[str, str]) -> pd.DataFrame:
    """The truth the simulated MT-Bench judge reads: one row per model, question and turn with the tiny
    world's gold reward of the answer in its conversation (``model`` is the short name of ``model_ids``)."""
    from starling_lib.evaluation.mt_bench.demo import conversation_prompt

    by_id = {q.question_id: q for q in questions}
    rows = []
    for name, mid in model_ids.items():
        for qid, turns in answers[mid].items():
            for t, answer in enumerate(turns, start=1):
                rows.append({"model": name, "question_id": qid, "turn": t, "category": by_id[qid].category,
                             "gold": gold_reward(conversation_prompt(by_id[qid].turns, turns, t), answer)})
    return pd.DataFrame(rows)


def mt_bench_demo_table(mt_scores: dict, gold_mt: pd.DataFrame, model_ids: dict[str, str]) -> pd.DataFrame:
    """Per model: the judge's turn-1, turn-2 and overall scores, judgments, failures and the mean gold."""
    return pd.DataFrame({name: {"turn 1": mt_scores[mid]["turn_1"], "turn 2": mt_scores[mid]["turn_2"],
                                "overall": mt_scores[mid]["overall"], "judgments": mt_scores[mid]["n_judgments"],
                                "failed": mt_scores[mid]["n_failed"],
                                "mean gold": gold_mt[gold_mt.model == name].gold.mean()}
                         for name, mid in model_ids.items()}).T


def _with_temperature(index) -> list[str]:
    from starling_lib.evaluation.answers import category_temperature

    return [f"{c}\nT={category_temperature(c):g}" for c in index]


def mt_bench_by_category(mt_scores: dict, gold_mt: pd.DataFrame, model_ids: dict[str, str]
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(judge, gold)``: the judge's mean rating and the mean gold reward per category (rows, labelled
    ``category\\nT=<FastChat's temperature>``) and model (columns, in ``model_ids`` order)."""
    judge = pd.DataFrame({name: mt_scores[mid]["by_category"] for name, mid in model_ids.items()})
    judge.index = _with_temperature(judge.index)
    gold = gold_mt.pivot_table(index="category", columns="model", values="gold")[list(model_ids)]
    gold.index = _with_temperature(gold.index)
    return judge, gold


def mt_bench_demo_summary(mt_report: dict, pair: dict, pair_quality: dict) -> str:
    """Printable lines: skipped questions and requests sent, the pairwise result, the judge's consistency."""
    return (f"skipped: { {k: v['count'] for k, v in mt_report['skipped'].items()} }; judge: {mt_report['n_sent']} "
            f"requests sent, {mt_report['n_cached']} from cache\n"
            f"pairwise (both orders, inconsistent = tie): APA wins {pair['wins']}, loses {pair['losses']}, ties "
            f"{pair['ties']} of {pair['n']}: win rate {pair['win_rate']:.3f}\n"
            f"simulated judge, both orders: flips {pair_quality['flip_rate']['rate']:.3f}, kappa between orders "
            f"{pair_quality['kappa_between_orders']:.3f}, prefers first shown "
            f"{pair_quality['prefers_first_shown']['rate']:.3f}")


def gold_win_rate(gold_model, gold_reference) -> float:
    """The win rate (%) the gold reward gives the model over the reference, ties counted half."""
    gold_model, gold_reference = np.asarray(gold_model, dtype=float), np.asarray(gold_reference, dtype=float)
    return 100 * float(np.mean((gold_model > gold_reference) + 0.5 * (gold_model == gold_reference)))


def alpaca_demo_runs(instructions: list[dict], reference_outputs: list[dict], generators: dict, model_ids: dict[str, str],
                     client, out_dir: str | Path, *, temperatures, batch_size: int, style: str, seed: int = 0
                     ) -> tuple[pd.DataFrame, dict]:
    """Every policy of ``generators`` answers the demo ``instructions`` at each temperature (outputs
    cached in ``out_dir/<model id>-T<t>.json``), ``client`` annotates them against ``reference_outputs``.

    Returns ``(table, annotations)``: one row per model and temperature (the judge's win rate, its
    standard error and the LC refit without difficulty, the gold win rate and mean gold, average
    length, annotations and failures), and the annotations keyed by ``(model, temperature)``.
    """
    from starling_lib.evaluation import alpaca_eval
    from starling_lib.evaluation.answers import generate_alpaca_outputs

    rows, annotations_by_run = [], {}
    for temperature in temperatures:
        for name, generator in generators.items():
            outputs, _ = generate_alpaca_outputs(instructions, generator, model_ids[name],
                                                 Path(out_dir) / f"{model_ids[name]}-T{temperature:g}.json",
                                                 batch_size=batch_size, seed=seed, temperature=temperature)
            annotations, report = alpaca_eval.judge_outputs(outputs, reference_outputs, client, style=style, seed=seed,
                                                            model_name=model_ids[name])
            score = alpaca_eval.score_annotations(annotations)
            gold_model = np.array([instruction_gold(a["instruction"], a["output_2"]) for a in annotations])
            gold_reference = np.array([instruction_gold(a["instruction"], a["output_1"]) for a in annotations])
            annotations_by_run[(name, temperature)] = annotations
            rows.append({"model": name, "temperature": temperature, "win_rate": score["win_rate"],
                         "standard_error": score["standard_error"],
                         "lc_refit_no_difficulty": score["lc_winrate_refit_no_difficulty"],
                         "gold_win_rate": gold_win_rate(gold_model, gold_reference),
                         "gold": gold_model.mean(), "avg_length": score["avg_length"],
                         "n_total": score["n_total"], "n_failed": report["n_failed"]})
    return pd.DataFrame(rows), annotations_by_run


def reference_summary(reference_outputs: list[dict]) -> dict:
    """The demo reference outputs' mean gold reward and average length (characters)."""
    from starling_lib.evaluation import alpaca_eval

    return {"gold": float(np.mean([instruction_gold(r["instruction"], r["output"]) for r in reference_outputs])),
            "avg_length": alpaca_eval.avg_length([r["output"] for r in reference_outputs])}


def evaluation_results(*, published: dict | None, mt_real: dict | None, paper: pd.DataFrame, rho: float,
                       mt_scores: dict, gold_mt: pd.DataFrame, model_ids: dict[str, str], pair: dict, pair_quality: dict,
                       lc_estimate: dict | None, ae1_extra: dict, judge_real: dict | None, alpaca: pd.DataFrame,
                       judge: str) -> dict:
    """Notebook 04's results file: the published reproductions (``None`` where ``shared`` lacks the
    files), the paper table's source and rank correlation, the MT-Bench and AlpacaEval demo runs."""
    from starling_lib.evaluation.published import STARLING_TABLE_SOURCE

    keys = ("turn_1", "turn_2", "overall", "n_judgments", "n_failed")
    return {
        "published_alpaca_eval": published,
        "mt_bench_files": mt_real,
        "paper_table": {"source": STARLING_TABLE_SOURCE, "spearman_mt_bench_vs_alpaca_eval_v1": float(rho)},
        "mt_bench_demo": {name: {**{k: mt_scores[mid][k] for k in keys},
                                 "gold": float(gold_mt[gold_mt.model == name].gold.mean())}
                          for name, mid in model_ids.items()},
        "mt_bench_pairwise_apa_vs_sft": pair,
        "mt_bench_pairwise_judge_quality": pair_quality,
        "lc_estimate": lc_estimate_summary(lc_estimate),
        "alpaca_eval_v1_column": paper.to_dict(orient="records"),
        "alpaca_eval_v1_extra_annotations": ae1_extra,
        "judge_quality_real_annotations": judge_real,
        "alpaca_eval_demo": alpaca.round(4).to_dict(orient="records"),
        "judge": judge,
    }


def evaluation_checks(*, mt_scores: dict, model_ids: dict[str, str], n_questions: int, resumed_same: bool,
                      alpaca: pd.DataFrame, n_instructions: int, pair_rows: list, pair_quality: dict,
                      published: dict | None, lc_estimate: dict | None, paper: pd.DataFrame, judge_real: dict | None,
                      mt_real: dict | None) -> dict[str, bool]:
    """Notebook 04's claims that hold on every preset: the demo machinery (every judgment parsed, two
    per question, resuming sends nothing, both orders judged) and, where ``shared`` has the files, the
    exact reproductions (AlpacaEval 2's row, LC from the published weights, the AlpacaEval 1 column,
    GPT-4-turbo's position bias, FastChat's MT-Bench counts)."""
    mids = list(model_ids.values())
    checks = {
        "every MT-Bench demo judgment parsed (none failed)": all(mt_scores[m]["n_failed"] == 0 for m in mids),
        "two judgments per question and model": all(mt_scores[m]["n_judgments"] == 2 * n_questions for m in mids),
        "a repeated judging run sends nothing and scores the same": resumed_same,
        "every AlpacaEval demo annotation has a preference": int(alpaca.n_failed.sum()) == 0
        and bool((alpaca.n_total == n_instructions).all()),
    }
    if published is not None:
        rec, lead = published["gpt4_0613_concise"]["recomputed"], published["gpt4_0613_concise"]["leaderboard"]
        checks["AlpacaEval 2: recomputed row equals the leaderboard's"] = all(abs(rec[c] - lead[c]) < 1e-9 for c in rec)
        checks["AlpacaEval 2: 9.400 ± 0.901 on 805"] = (round(rec["win_rate"], 3), round(rec["standard_error"], 3),
                                                        rec["n_total"]) == (9.4, 0.901, 805)
    if lc_estimate is not None:
        e = lc_estimate["errors"]
        checks["LC from published weights: held-out mean abs error <= 1 point"] = e["held_out"]["mae"] <= 1.0
        checks["LC from published weights: exact where difficulty does not enter"] = (
            lc_estimate["exact"]["max_abs_error"] == 0)
        checks["LC: the estimate beats the refit without difficulty tenfold"] = (
            10 * e["all"]["mae"] < lc_estimate["refit_no_difficulty"]["errors"]["mae"])
    if "alpaca_eval_v1_recomputed" in paper:
        redone = paper.dropna(subset=["alpaca_eval_v1_recomputed"])
        checks["AlpacaEval 1 column: 4 rows recomputed, each equal to the leaderboard to 1e-9"] = (
            len(redone) == 4 and bool((redone.leaderboard_difference.abs() < 1e-9).all()))
        checks["AlpacaEval 1 column: each typed value is the recomputed one rounded"] = bool(
            (redone.difference.abs() <= 0.005).all())
    if judge_real is not None:
        turbo = judge_real["gpt4_0613_concise_weighted"]["prefers_first_shown"]
        checks["GPT-4-turbo prefers the second-shown output (first-shown CI below 1/2)"] = turbo["ci95"][1] < 0.5
    checks["MT-Bench demo pairwise: every pair judged in both orders"] = (
        pair_quality["n_pairs"] == len(pair_rows) and pair_quality["kappa_between_orders"] is not None)
    if mt_real is not None:
        checks["MT-Bench: 80 questions, 8 judge prompts, 30 references, 160 judgments per model"] = (
            mt_real["questions"], mt_real["judge_prompts"], mt_real["references"], mt_real["judgments_per_model"]
        ) == (80, 8, 30, 160)
    return checks


def _demo_runs(alpaca: pd.DataFrame):
    runs = alpaca.set_index(["model", "temperature"])
    return (runs.loc[(m, t)] for t in (1.0, 0.0) for m in ("sft", "apa"))


def tiny_verdict_checks(*, alpaca: pd.DataFrame, mt_scores: dict, gold_mt: pd.DataFrame, by_category: pd.DataFrame,
                        model_ids: dict[str, str]) -> dict[str, bool]:
    """The tiny verdict's claims: decoding decides the verdict (APA ahead sampled, SFT ahead greedy;
    SFT above APA overall on MT-Bench)."""
    sft_t1, apa_t1, sft_t0, apa_t0 = _demo_runs(alpaca)
    gold = gold_mt.groupby("model").gold.mean()
    return {
        "tiny: sampled (T=1), APA beats SFT on the judge's and the gold win rate":
            apa_t1.win_rate > sft_t1.win_rate + 2 * max(apa_t1.standard_error, sft_t1.standard_error)
            and apa_t1.gold_win_rate > sft_t1.gold_win_rate,
        "tiny: greedy (T=0), SFT beats APA on the judge's and the gold win rate":
            sft_t0.win_rate > apa_t0.win_rate and sft_t0.gold_win_rate > apa_t0.gold_win_rate,
        "tiny: the judge's win rates order the four runs as the gold win rates do":
            list(alpaca.sort_values("win_rate").index) == list(alpaca.sort_values("gold_win_rate").index),
        "tiny: MT-Bench demo, SFT above APA overall, on the judge and on gold":
            mt_scores[model_ids["sft"]]["overall"] > mt_scores[model_ids["apa"]]["overall"]
            and gold["sft"] > gold["apa"],
        # No claim about which MT-Bench categories APA wins (~5 questions each): the warm ones moved
        # between runs (both in one bf16 run, roleplay only in the next), and in an fp32 run on an AMD
        # Zen 3 without bf16 APA also led a T<=0.1 category, so the verdict reports them, unasserted.
        # No claim about the LC refit: how far it moves greedy SFT depends on how short those answers come
        # out (+19 points at 68 characters in one run, -0.5 at 114 in the next, both seed 0), so
        # the verdict only reports the shift against its standard error (demo_verdict).
    }


def _beats(a: float, b: float) -> str:
    """``beats`` / ``does not beat``, or ``is level with`` where the two agree to the 0.1 shown."""
    if round(a, 1) == round(b, 1):
        return "is level with"
    return "beats" if a > b else "does not beat"


def demo_verdict(*, alpaca: pd.DataFrame, mt_scores: dict, gold_mt: pd.DataFrame, by_category: pd.DataFrame,
                 pair: dict, model_ids: dict[str, str], reference: dict) -> str:
    """The demo part of notebook 04's verdict in markdown, every number from the runs and every
    direction from the same comparisons :func:`tiny_verdict_checks` asserts on tiny."""
    sft_t1, apa_t1, sft_t0, apa_t0 = _demo_runs(alpaca)
    sft, apa = (mt_scores[model_ids[m]]["overall"] for m in ("sft", "apa"))
    gold = gold_mt.groupby("model").gold.mean()
    warm = [c.split("\n")[0] for c in by_category.index if c.endswith("T=0.7")]
    apa_ahead = [c.split("\n")[0] for c in by_category.index if by_category.loc[c, "apa"] > by_category.loc[c, "sft"]]
    shift = sft_t0.lc_refit_no_difficulty - sft_t0.win_rate
    closer = ("raw" if abs(sft_t0.win_rate - sft_t0.gold_win_rate)
              < abs(sft_t0.lc_refit_no_difficulty - sft_t0.gold_win_rate) else "LC refit")
    lc_effect = (f"a shift of {shift:+.1f} points, beyond two standard errors (± {sft_t0.standard_error:.1f}); the gold win "
                 f"rate ({sft_t0.gold_win_rate:.1f} %) is closer to the {closer} number"
                 if abs(shift) > 2 * sft_t0.standard_error else
                 f"a shift of {shift:+.1f} points, within two standard errors (± {sft_t0.standard_error:.1f}): length "
                 f"control makes no measurable difference to this run")
    return "\n".join([
        f"- **AlpacaEval demo, sampled at the temperature APA was tuned at (T = 1):** APA "
        f"{_beats(apa_t1.win_rate, sft_t1.win_rate)} its SFT start, {apa_t1.win_rate:.1f} % vs {sft_t1.win_rate:.1f} % "
        f"against the reference (± {apa_t1.standard_error:.1f} and {sft_t1.standard_error:.1f}); the gold win rates "
        f"say {apa_t1.gold_win_rate:.1f} vs {sft_t1.gold_win_rate:.1f}.",
        f"- **The same policies decoded greedily (T = 0):** SFT {sft_t0.win_rate:.1f} %, APA {apa_t0.win_rate:.1f} % "
        f"(gold {sft_t0.gold_win_rate:.1f} vs {apa_t0.gold_win_rate:.1f}): SFT "
        f"{_beats(sft_t0.win_rate, apa_t0.win_rate)} APA.",
        f"- **MT-Bench demo**, at FastChat's per-category temperatures: APA is ahead in "
        f"{', '.join(apa_ahead) or 'no category'} (the T = 0.7 categories: {', '.join(warm) or 'none'}); overall the "
        f"judge gives SFT {sft:.2f} and APA {apa:.2f} (gold {gold['sft']:.2f} vs {gold['apa']:.2f}); pairwise, APA "
        f"wins {pair['win_rate']:.2f} with ties as half.",
        f"- **Length control where length is quality.** The greedy SFT answers average {sft_t0.avg_length:.0f} "
        f"characters against the reference's {reference['avg_length']}; AlpacaEval 2's GLM, refitted on them, gives "
        f"`lc_refit_no_difficulty` {sft_t0.lc_refit_no_difficulty:.1f} % against the raw {sft_t0.win_rate:.1f} %, "
        f"{lc_effect}.",
    ])
