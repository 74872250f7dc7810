"""Notebooks 02 and 05's figures, drawn from the reward library's result objects (one call per cell).

- :func:`theory_figure`: level 1 of notebook 02, estimation error against n per estimator and the
  relative efficiency (MSE split pairs / MSE K-wise) with their intervals;
- :func:`tinyworld_figure`: level 2, held-out accuracy per loss against training prompts (seaborn
  lines, mean over seeds with the min-max band) and the training loss;
- :func:`real_rankings_figure`: level 3, the MiniLM heads and "longer wins" on real GPT-4 rankings;
- :func:`benchmark_figure`: notebook 05, every model on the four benchmarks and its length bias.

The theme is :data:`starling_lib.plotting.STYLE`, set by :func:`~starling_lib.plotting.start_notebook`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

LOSS_COLORS = {"kwise": "tab:blue", "pairwise": "tab:orange", "adjacent": "tab:green", "length": "tab:grey"}
MODEL_COLORS = {"RM-34B": "black", "MiniLM K-wise head": "tab:blue", "MiniLM pairwise head": "tab:orange",
                "MiniLM fine-tuned K-wise": "navy", "MiniLM fine-tuned pairwise": "sienna", "longer wins": "tab:grey"}


def _log_n_axis(ax, n_grid) -> None:
    """A log x axis labelled at exactly the grid's n."""
    ax.set_xscale("log")
    ax.set_xticks(list(n_grid), [str(n) for n in n_grid])
    ax.xaxis.set_minor_locator(plt.NullLocator())


def theory_figure(summary):
    """Notebook 02, level 1 (``summary``: :func:`starling_lib.reward.theory.summarise_errors`). Left: mean
    estimation error per estimator against n with its t-interval, and a 1/sqrt(n) guide through K-wise's
    first point; right: MSE split pairs / MSE K-wise with its paired bootstrap interval."""
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(10, 3.8))
    names = {"kwise": "K-wise MLE", "pairwise": "split-pairs MLE"}
    for name, part in summary.groupby("estimator"):
        ax.errorbar(part.n, part.mean_error, yerr=[part.mean_error - part.error_low, part.error_high - part.mean_error],
                    marker="o", capsize=3, color=LOSS_COLORS[name], label=names[name])
    n_grid = np.array(sorted(summary.n.unique()))
    ref = summary[summary.estimator == "kwise"].mean_error.iloc[0] * np.sqrt(n_grid[0] / n_grid)
    ax.plot(n_grid, ref, "k:", lw=1, label=r"$\propto 1/\sqrt{n}$")
    ax.set(yscale="log", xlabel="ranked prompts n (K = 7)", ylabel=r"$\|\hat\theta-\theta^\star\|$", title="estimation error")
    ax.legend()
    pw = summary[summary.estimator == "pairwise"]
    ax_ratio.errorbar(pw.n, pw.mse_ratio, yerr=[pw.mse_ratio - pw.mse_ratio_low, pw.mse_ratio_high - pw.mse_ratio],
                      marker="o", capsize=3, color="tab:purple")
    ax_ratio.axhline(1, color="grey", ls="--", lw=1)
    ax_ratio.set(xlabel="ranked prompts n", ylabel="MSE split pairs / MSE K-wise",
                 title="relative efficiency (> 1: K-wise better)")
    for a in (ax, ax_ratio):
        _log_n_axis(a, n_grid)
    fig.tight_layout()
    return fig


def tinyworld_figure(curve, logs, rank_gold_agreement: float):
    """Notebook 02, level 2. Two panels of held-out pairwise accuracy against training prompts, per
    loss (seaborn lines: mean over seeds, band: their range), against the given ranks and against
    gold (dashed: the given ranks' own agreement with gold); a third of the training loss over the
    optimiser steps, each loss over its first logged value (``logs``: ``study.read_training_logs``)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    n_grid = sorted(curve.n_prompts.unique())
    for ax, metric, title in ((axes[0], "pairwise_accuracy", "held-out accuracy vs given ranks"),
                              (axes[1], "gold_pairwise_accuracy", "held-out accuracy vs gold reward")):
        sns.lineplot(data=curve, x="n_prompts", y=metric, hue="loss", palette=LOSS_COLORS, marker="o",
                     errorbar=lambda x: (x.min(), x.max()), ax=ax)
        _log_n_axis(ax, n_grid)
        ax.set(xlabel="training prompts (7 answers each)", ylabel="pairwise accuracy", title=title)
    axes[1].axhline(rank_gold_agreement, color="k", ls="--", lw=1, label="given ranks vs gold")
    axes[1].legend(fontsize=8)
    for loss, part in logs.groupby("loss_type"):
        axes[2].plot(part.step, part.loss / part.loss.iloc[0], color=LOSS_COLORS[loss], label=loss)
    axes[2].set(xlabel="optimiser step", ylabel="loss / first logged loss",
                title=f"training loss (n = {max(n_grid)}, seed 0)")
    axes[2].legend()
    fig.tight_layout()
    return fig


def real_rankings_figure(real):
    """Notebook 02, level 3 (``real``: ``study.RealRankingsStudy``): per model, held-out accuracy against
    the GPT-4 ranking (solid) and Nectar's (light), 95 % bootstrap intervals over prompts; dashed: how
    often GPT-4 agrees with itself, dotted: chance."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    order = ["kwise", "pairwise", "adjacent", "length"]
    part, x = real.summary.loc[order], np.arange(len(order))
    for offset, (col, lo, hi, label) in zip((-0.18, 0.18), (("vs GPT-4 ranking", "low", "high", "vs the held-out GPT-4 ranking"),
                                                             ("vs Nectar ranking", "low ", "high ", "vs Nectar's published ranking"))):
        ax.bar(x + offset, part[col], width=0.36, yerr=[part[col] - part[lo], part[hi] - part[col]], capsize=3,
               color=[LOSS_COLORS[o] for o in order], alpha=1.0 if offset < 0 else 0.5, label=label)
    ax.axhline(real.agreement["pairwise_agreement"], color="k", ls="--", lw=1, label="GPT-4 agrees with itself")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(x, ["K-wise head", "pairwise head", "adjacent head", "longer wins"])
    ax.set(ylabel="held-out pairwise accuracy", ylim=(0.45, 0.85),
           title=f"MiniLM reward heads on {real.n_rankings} real GPT-4 rankings ({real.n_prompts} prompts, CV by prompt)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def benchmark_figure(metrics: dict, benchmarks: list[str], n_decoys: int, voters_prefer_longer: float):
    """Notebook 05. Left: accuracy per benchmark and model with 95 % bootstrap intervals over items
    (``metrics``: model -> ``bench.bench_metrics``'s dict); right: P(prefers the longer Arena response)
    per model, with the voters' own rate dashed."""
    fig, (ax, ax_len) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.8 / len(metrics)
    for i, (model, per) in enumerate(metrics.items()):
        x = np.array([benchmarks.index(n) for n in per]) + (i - (len(metrics) - 1) / 2) * width
        acc = np.array([per[n]["accuracy"] for n in per])
        err = [acc - [per[n]["accuracy_low"] for n in per], [per[n]["accuracy_high"] for n in per] - acc]
        ax.bar(x, acc, width=width, yerr=err, capsize=2, color=MODEL_COLORS[model], label=model)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(range(len(benchmarks)), ["human preference\n(Arena)", "truthfulness\n(TruthfulQA)",
                                           "safety\n(PKU-SafeRLHF)", f"verbosity\n({n_decoys} decoys)"])
    ax.set(ylabel="accuracy (95 % bootstrap over items)", ylim=(0, 1.05), title="the Starling reward-model benchmark")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    pref = [(m, per["preference"]) for m, per in metrics.items()]
    y = np.arange(len(pref))
    ax_len.barh(y, [p["prefers_longer"] for _, p in pref], capsize=2, color=[MODEL_COLORS[m] for m, _ in pref],
                xerr=[[p["prefers_longer"] - p["prefers_longer_low"] for _, p in pref],
                      [p["prefers_longer_high"] - p["prefers_longer"] for _, p in pref]])
    ax_len.axvline(voters_prefer_longer, color="tab:red", ls="--", lw=1.2, label="Arena voters")
    ax_len.axvline(0.5, color="grey", ls=":", lw=1)
    ax_len.set_yticks(y, [m for m, _ in pref])
    ax_len.invert_yaxis()
    ax_len.set(xlabel="P(prefers the longer response)", xlim=(0, 1.05), title="length bias on Arena battles")
    ax_len.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
