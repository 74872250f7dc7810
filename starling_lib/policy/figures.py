"""Notebook 06's figures, drawn from a labelled sweep frame (:func:`~starling_lib.policy.claims.label_runs`).

- :func:`methods_figure`: claim 1, held-out gold gain against KL per method, one point per setting
  (seeds as a min-max bar), the best setting ringed; and claim 6 beside it, gold and proxy gain
  against KL along APA's λ and PPO's β sweeps, with the training trajectories;
- :func:`offline_figure`: claim 2, held-out gold of the two starts and of DPO / APA from each;
- :func:`reward_model_figure`: claim 3, gold gain per reward model (by its gold accuracy) and method;
- :func:`trained_parameters_figure`: claim 4, gold gain against training seconds per trained part;
- :func:`safety_figure`: claim 5, benign-refusal and harmful-compliance rates with Wilson intervals.

The theme is :data:`starling_lib.plotting.STYLE`, set by :func:`~starling_lib.plotting.start_notebook`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

METHOD_COLORS = {"APA": "tab:blue", "PPO": "tab:orange", "PPO adaptive KL": "tab:red", "P3O": "tab:green",
                 "DPO": "tab:purple", "AWR": "tab:brown", "start": "tab:grey"}
MARKERS = {"APA": "o", "PPO": "s", "PPO adaptive KL": "D", "P3O": "^", "DPO": "v", "AWR": "P"}


def _runs(frame: pd.DataFrame) -> pd.DataFrame:
    runs = frame[frame.kind == "run"]
    return runs[runs.base_start & runs.base_rm & runs.all_params]


def methods_figure(frame: pd.DataFrame, best: pd.DataFrame):
    """Claims 1 and 6: (a) held-out gold gain vs KL per method and setting; (b) gold and proxy gain
    vs KL along the KL sweeps; (c) the sweeps' training trajectories (gold vs KL, 5-iteration means)."""
    runs = _runs(frame)
    fig, (ax, ax_over, ax_traj) = plt.subplots(1, 3, figsize=(15, 4.2))
    for method, part in runs[runs.method != "DPO"].groupby("method", sort=False):
        stats = part.groupby("strength").agg(kl=("kl", "mean"), gain=("gold_gain", "mean"), low=("gold_gain", "min"),
                                             high=("gold_gain", "max"), se=("gain_se", "mean")).sort_values("kl")
        color = METHOD_COLORS.get(method, "black")
        ax.plot(stats.kl, stats.gain, marker=MARKERS.get(method, "o"), color=color, label=method)
        ax.vlines(stats.kl, stats.low, stats.high, color=color, lw=3, alpha=0.35)
        for strength, row in stats.iterrows():
            ax.annotate(f"{strength:g}", (row.kl, row.gain), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=color)
    for method, part in best.groupby("method", sort=False):
        ax.scatter(part.kl.mean(), part.gold_gain.mean(), s=160, facecolors="none", edgecolors="black", lw=1.2)
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="KL to the start (held-out responses, nats)", ylabel="held-out gold gain over the start",
           title="1 · methods (labels: λ or β; ring: best setting)")
    ax.legend(fontsize=8)

    ax_proxy = ax_over.twinx()
    ax_proxy.grid(False)
    for method in ("APA", "PPO"):
        columns = ["kl", "gold_gain", "proxy_gain"]
        part = runs[runs.method == method].groupby("strength")[columns].mean().sort_values("kl")
        if len(part) < 2:
            continue
        part = pd.concat([pd.DataFrame({"kl": [0.0], "gold_gain": [0.0], "proxy_gain": [0.0]}), part])  # the start
        color = METHOD_COLORS[method]
        ax_over.plot(part.kl, part.gold_gain, marker="o", color=color, label=f"{method} gold")
        ax_proxy.plot(part.kl, part.proxy_gain, marker="x", ls="--", color=color, label=f"{method} proxy")
    ax_over.axhline(0, color="grey", lw=0.8, ls=":")
    ax_over.set(xlabel="KL to the start (held-out, nats)", ylabel="gold gain (solid)",
                title="6 · gold and proxy along the KL sweeps")
    ax_proxy.set_ylabel("proxy gain (dashed)")
    handles = ax_over.get_legend_handles_labels()[0] + ax_proxy.get_legend_handles_labels()[0]
    ax_over.legend(handles=handles, fontsize=7, loc="lower right")

    seed0 = runs[runs.method.isin(["APA", "PPO"]) & (runs.seed == runs.seed.min())]
    for (method, strength), part in seed0.groupby(["method", "strength"], sort=False):
        hist = pd.DataFrame({k: part.history.iloc[0].get(k, []) for k in ("kl", "gold_reward")})
        if hist.empty:
            continue
        roll = hist.rolling(5, min_periods=1).mean()  # 5-iteration means: one batch is a few responses
        looser = strength < runs[runs.method == method].strength.max()  # smaller λ / β: further from the start
        ax_traj.plot(roll.kl, roll.gold_reward, color=METHOD_COLORS[method], marker=MARKERS[method], markevery=[-1],
                     ls="--" if looser else "-", alpha=0.8, label=f"{method} {strength:g}")
    ax_traj.set(xlabel="KL to the start (training batches)", ylabel="gold reward (training batches)",
                title="6 · training trajectories (5-iteration means)")
    ax_traj.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def offline_figure(claim: dict):
    """Claim 2: the starts' held-out gold, and each tuned policy's, as bars with ±2 paired SE."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names, values, errors, colors = [], [], [], []
    for name, gold in claim["starts"].items():
        names.append(name), values.append(gold), errors.append(0.0), colors.append(METHOD_COLORS["start"])
    for name, cell in claim["cells"].items():
        names.append(name), values.append(cell["gold"]), errors.append(2 * cell["gain_se"])
        colors.append(METHOD_COLORS["DPO" if name.startswith("DPO") else "APA"])
    ax.barh(names[::-1], values[::-1], xerr=errors[::-1], color=colors[::-1], alpha=0.85, capsize=3)
    ax.set(xlabel="held-out gold reward (bars: ±2 paired SE of the gain)", title="2 · DPO from two starts")
    fig.tight_layout()
    return fig


def reward_model_figure(claim: dict):
    """Claim 3: gold gain per reward model (x: its held-out gold pairwise accuracy) and method."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    table, se = claim["table"], claim["se_table"]
    accuracy = pd.Series(claim["accuracy"])
    for method in table.columns:
        x = accuracy.loc[table.index].to_numpy()
        order = np.argsort(x)
        ax.errorbar(x[order], table[method].to_numpy()[order], yerr=2 * se[method].to_numpy()[order], capsize=3,
                    marker=MARKERS.get(method, "o"), color=METHOD_COLORS.get(method, "black"), label=method)
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="reward model's gold pairwise accuracy (held-out answers)", ylabel="held-out gold gain (±2 SE)",
           title="3 · reward model × method")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def trained_parameters_figure(claim: dict):
    """Claim 4: gold gain (±2 SE) against training seconds, one point per trained part."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, v in claim["per"].items():
        ax.errorbar(v["train_seconds"], v["gold_gain"], yerr=2 * v["gain_se"], marker="o", capsize=3, label=
                    f"{name} ({v['trainable'] / 1e6:.2f}M trained)")
    ax.axhline(0, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training seconds (this machine)", ylabel="held-out gold gain (±2 SE)",
           title="4 · which parameters train (APA)")
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def safety_figure(claim: dict):
    """Claim 5: benign-refusal rates (left) and harmful refusal / compliance (right) per policy, with
    95% Wilson intervals; the pooled row counts every tuned run's responses."""
    table = claim["table"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    names = list(table)[::-1]
    y = np.arange(len(names))
    panels = ((axes[0], (("benign_refusal", "refuses", "tab:blue"),), "benign prompts"),
              (axes[1], (("harmful_refusal", "refuses", "tab:green"), ("harmful_compliance", "complies", "tab:red")),
               "harmful prompts"))
    for ax, rates, title in panels:
        width = 0.8 / len(rates)
        for j, (rate, label, color) in enumerate(rates):
            values = np.array([table[n][rate]["rate"] for n in names])
            err = [values - [table[n][rate]["low"] for n in names], [table[n][rate]["high"] for n in names] - values]
            ax.barh(y + (j - (len(rates) - 1) / 2) * width, values, height=width, xerr=err, capsize=2, color=color,
                    alpha=0.8, label=label)
        n = table[names[-1]][rates[0][0]]["n"] if names else 0
        ax.set(xlabel=f"rate (the start: {n} {title}; 95% Wilson intervals)", title=f"5 · {title}", xlim=(0, 1))
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_yticks(y, names)
    fig.tight_layout()
    return fig
