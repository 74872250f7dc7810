"""Notebook 04's figures, drawn from the evaluation library's result objects (one call per cell).

- :func:`lc_estimate_figure`: every model's LC win rate estimated offline from the published GLM
  weights against the published one (in the fit, held out, the one-model refit), and the errors;
- :func:`paper_table_figure`: the Starling release table, MT-Bench against AlpacaEval 1, with the
  cells recomputed from annotations ringed and APA's step from OpenChat 3.5 as an arrow;
- :func:`mt_bench_demo_figure`: the MT-Bench demo per category, the judge's ratings and the gold reward;
- :func:`alpaca_demo_figure`: the AlpacaEval demo's judge win rates (± s.e.) and gold win rates per
  temperature.

The theme is :data:`starling_lib.plotting.STYLE`, set by :func:`~starling_lib.plotting.start_notebook`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

POLICY_COLORS = {"sft": "tab:grey", "apa": "tab:blue"}
"""The demo's two policies: notebook 03's SFT start and its APA-tuned policy."""


def lc_estimate_figure(lc_estimate: dict):
    """Left: offline LC estimate against the published LC per model (in the fit, held out, and the
    refit without difficulty as crosses); right: histograms of the estimate's error."""
    models = pd.DataFrame(lc_estimate["models"]).dropna(subset=["length_controlled_winrate"])
    fig, (ax, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    for in_fit, part in models.groupby("in_fit"):
        label = f"{'in the fit' if in_fit else 'held out'} ({len(part)})"
        ax.scatter(part.length_controlled_winrate, part.lc_winrate_estimated, s=12, label=label)
        ax_err.hist(part.error, bins=30, alpha=0.6, label=label)
    refit = pd.DataFrame(lc_estimate["refit_no_difficulty"]["models"]).dropna(subset=["published"])
    ax.scatter(refit.published, refit.lc_winrate_refit_no_difficulty, s=12, marker="x", color="grey",
               label="refit without difficulty")
    ax.plot([0, 100], [0, 100], color="black", lw=0.8)
    ax.set(xlabel="published LC win rate (%)", ylabel="offline estimate (%)", title="AlpacaEval 2 LC, offline")
    ax_err.set(xlabel="estimate - published (points)", ylabel="models", title="error of lc_winrate_estimated")
    ax.legend(fontsize=7)
    ax_err.legend(fontsize=7)
    fig.tight_layout()
    return fig


def paper_table_figure(paper: pd.DataFrame, source: str, start: str = "Openchat-3.5", tuned: str = "Starling-7B"):
    """MT-Bench against AlpacaEval 1 per model of the release table, coloured by tuning method; cells
    recomputed from annotations (column ``alpaca_eval_v1_recomputed``) ringed; an arrow from
    ``start`` to ``tuned``; ``source`` printed under the axes."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    rated = paper.dropna(subset=["alpaca_eval_v1"])
    for method, part in rated.groupby("method", sort=False):
        ax.scatter(part.mt_bench, part.alpaca_eval_v1, s=40, label=method)
    for _, r in rated.iterrows():
        offset = (4, -9) if r.model == "Claude-1" else (4, 3)  # Claude-1 sits next to Openchat-3.5
        ax.annotate(r.model, (r.mt_bench, r.alpaca_eval_v1), textcoords="offset points", xytext=offset, fontsize=7)
    if "alpaca_eval_v1_recomputed" in paper:
        redone = paper.dropna(subset=["alpaca_eval_v1_recomputed"])
        ax.scatter(redone.mt_bench, redone.alpaca_eval_v1_recomputed, s=140, facecolors="none", edgecolors="black",
                   label="recomputed from annotations")
    a, b = paper.set_index("model").loc[[start, tuned], ["mt_bench", "alpaca_eval_v1"]].itertuples(index=False)
    ax.annotate("", xy=(b.mt_bench, b.alpaca_eval_v1), xytext=(a.mt_bench, a.alpaca_eval_v1),
                arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.5))
    ax.set(xlabel="MT-Bench (GPT-4 grades, 1-10)", ylabel="AlpacaEval 1 win rate (%)",
           title="Starling-7B release table: RLAIF with APA moved OpenChat 3.5 (arrow)")
    ax.legend(fontsize=7, title="tuning", title_fontsize=8)
    fig.text(0.01, 0.005, "source: " + source, fontsize=6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def mt_bench_demo_figure(by_category: pd.DataFrame, gold_by_category: pd.DataFrame, n_questions: int):
    """Bars per category and model: the judge's mean rating (left) and the gold reward it reads (right)."""
    fig, (ax, ax_gold) = plt.subplots(1, 2, figsize=(12, 3.8))
    by_category.plot.bar(ax=ax, color=[POLICY_COLORS[c] for c in by_category.columns], rot=0)
    ax.set(ylabel="mean judge rating (1-10)", title=f"MT-Bench demo ({n_questions} questions x 2 turns)")
    gold_by_category.plot.bar(ax=ax_gold, color=[POLICY_COLORS[c] for c in gold_by_category.columns], rot=0)
    ax_gold.set(ylabel="mean gold reward", title="what the judge reads: the tiny world's gold reward")
    fig.tight_layout()
    return fig


def alpaca_demo_figure(alpaca: pd.DataFrame, temperatures, *, reference: str, n_instructions: int, style: str):
    """Per temperature and model: the judge's win rate against ``reference`` (bars, ± s.e.) and the
    gold win rate (black diamonds)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width, temperatures = 0.35, list(temperatures)
    for k, name in enumerate(alpaca.model.unique()):
        part = alpaca[alpaca.model == name].set_index("temperature").loc[temperatures]
        x = np.arange(len(temperatures)) + (k - 0.5) * width
        ax.bar(x, part.win_rate, width, yerr=part.standard_error, color=POLICY_COLORS[name], capsize=3,
               label=f"{name.upper()}: judge win rate ± s.e.")
        ax.scatter(x, part.gold_win_rate, marker="D", color="black", zorder=3,
                   label="gold win rate (the truth)" if k == 0 else None)
    ax.set_xticks(np.arange(len(temperatures)), [f"T = {t:g}" + (" (greedy)" if t == 0 else "") for t in temperatures])
    ax.set(ylabel=f"win rate vs {reference} (%)", title=f"AlpacaEval demo ({n_instructions} instructions), {style} annotator")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
