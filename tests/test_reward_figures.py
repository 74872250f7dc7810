"""Notebooks 02 and 05's figures (starling_lib.reward.figures) draw the numbers they are given."""

import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from starling_lib.reward import figures  # noqa: E402


def test_theory_figure_draws_errors_intervals_and_ratios():
    summary = pd.DataFrame([
        {"n": n, "estimator": est, "mean_error": e, "error_low": e - 0.01, "error_high": e + 0.02,
         "mse_ratio": r, "mse_ratio_low": r - 0.1, "mse_ratio_high": r + 0.2}
        for n, est, e, r in ((25, "kwise", 0.4, 1.0), (100, "kwise", 0.2, 1.0),
                             (25, "pairwise", 0.44, 1.2), (100, "pairwise", 0.22, 1.3))])
    fig = figures.theory_figure(summary)
    ax, ax_ratio = fig.axes
    kwise = next(c for c in ax.containers if c.get_label() == "K-wise MLE")
    assert list(kwise.lines[0].get_ydata()) == [0.4, 0.2]
    bars = kwise.lines[2][0].get_segments()
    assert np.allclose([s[1][1] - s[0][1] for s in bars], 0.03)  # error_high - error_low
    guide = next(line for line in ax.lines if "sqrt" in line.get_label())
    assert np.allclose(guide.get_ydata(), [0.4, 0.2])  # 1/sqrt(n) through K-wise's first point
    ratio = ax_ratio.containers[0]
    assert np.allclose(ratio.lines[0].get_ydata(), [1.2, 1.3])
    assert np.allclose([s[1][1] - s[0][1] for s in ratio.lines[2][0].get_segments()], 0.3)  # high - low
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25", "100"]
    plt.close(fig)


def test_tinyworld_figure_lines_are_seed_means_bands_their_range():
    curve = pd.DataFrame([{"n_prompts": n, "loss": loss, "seed": s, "pairwise_accuracy": acc,
                           "gold_pairwise_accuracy": acc - 0.1}
                          for n, loss, accs in ((10, "kwise", (0.7, 0.8)), (40, "kwise", (0.9, 0.9)),
                                                (10, "pairwise", (0.6, 0.6)), (40, "pairwise", (0.7, 0.9)))
                          for s, acc in enumerate(accs)])
    logs = pd.DataFrame({"loss_type": ["kwise"] * 3, "step": [1, 2, 3], "loss": [2.0, 1.0, 0.5]})
    fig = figures.tinyworld_figure(curve, logs, rank_gold_agreement=0.88)
    given, gold, loss = fig.axes
    blue = matplotlib.colors.to_rgba(figures.LOSS_COLORS["kwise"])
    kwise = next(line for line in given.lines if len(line.get_ydata()) and matplotlib.colors.to_rgba(line.get_color()) == blue)
    assert np.allclose(kwise.get_ydata(), [0.75, 0.9])
    band = given.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), 0.7) and np.isclose(band.max(), 0.9)  # kwise: min and max over seeds
    assert any(np.allclose(line.get_ydata(), 0.88) for line in gold.lines)
    assert np.allclose(loss.lines[0].get_ydata(), [1.0, 0.5, 0.25]) and "n = 40" in loss.get_title()
    plt.close(fig)


def test_real_rankings_and_benchmark_bars_are_the_numbers_given():
    order = ["kwise", "pairwise", "adjacent", "length"]
    summary = pd.DataFrame({"vs GPT-4 ranking": [0.6, 0.61, 0.62, 0.7], "low": [0.55] * 4, "high": [0.75] * 4,
                            "vs Nectar ranking": [0.5, 0.51, 0.52, 0.6], "low ": [0.45] * 4, "high ": [0.65] * 4},
                           index=pd.Index(order, name="model"))
    real = types.SimpleNamespace(summary=summary, agreement={"pairwise_agreement": 0.8}, n_rankings=12, n_prompts=6)
    fig = figures.real_rankings_figure(real)
    ax = fig.axes[0]
    assert np.allclose([p.get_height() for p in ax.patches], [0.6, 0.61, 0.62, 0.7, 0.5, 0.51, 0.52, 0.6])
    assert any(np.allclose(line.get_ydata(), 0.8) for line in ax.lines) and "12 real GPT-4 rankings (6" in ax.get_title()
    plt.close(fig)

    def entry(acc, longer):
        return {"accuracy": acc, "accuracy_low": acc - 0.05, "accuracy_high": acc + 0.05,
                "prefers_longer": longer, "prefers_longer_low": longer - 0.1, "prefers_longer_high": longer + 0.1}
    names = ["preference", "truthfulness", "safety", "verbosity"]
    metrics = {"RM-34B": {n: entry(0.8, 0.69) for n in names}, "longer wins": {n: entry(0.6, 1.0) for n in names}}
    fig = figures.benchmark_figure(metrics, names, n_decoys=30, voters_prefer_longer=0.63)
    ax, ax_len = fig.axes
    assert np.allclose([p.get_height() for p in ax.patches], [0.8] * 4 + [0.6] * 4)
    assert ax.get_xticklabels()[3].get_text() == "verbosity\n(30 decoys)"
    assert np.allclose([p.get_width() for p in ax_len.patches], [0.69, 1.0])
    assert any(np.allclose(line.get_xdata(), 0.63) for line in ax_len.lines)
    plt.close(fig)
