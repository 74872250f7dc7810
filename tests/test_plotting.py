"""save_fig / save_results write where told, with provenance, and refuse misnamed figures."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from starling_lib import plotting  # noqa: E402


def test_save_fig_results_and_manifest(tmp_path):
    plotting.start_notebook("07_demo", preset="smoke", seed=3, figures_dir=str(tmp_path), verbose=False)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = plotting.save_fig(fig, "07_line")
    plotting.save_results({"auc": 0.5, "n": 3})
    assert png == tmp_path / "07_line.png"
    assert (tmp_path / "07_line.pdf").stat().st_size > 0
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    entry = manifest["07_line"]
    assert (entry["notebook"], entry["preset"], entry["seed"]) == ("07_demo", "smoke", 3)
    assert entry["files"] == ["07_line.png", "07_line.pdf"] and entry["git_commit"]
    results = json.loads((tmp_path / "07_results.json").read_text())
    assert results["results"] == {"auc": 0.5, "n": 3} and results["preset"] == "smoke"


def test_same_figure_twice_gives_identical_bytes(tmp_path):
    plotting.start_notebook("07_demo", figures_dir=str(tmp_path), verbose=False)
    fig, ax = plt.subplots()
    ax.bar(["a", "b"], [1, 2])
    plotting.save_fig(fig, "07_bars")
    first = {p: (tmp_path / p).read_bytes() for p in ("07_bars.png", "07_bars.pdf")}
    plotting.save_fig(fig, "07_bars")
    assert first == {p: (tmp_path / p).read_bytes() for p in first}


def test_figure_names_must_carry_the_notebook_number(tmp_path):
    plotting.start_notebook("07_demo", figures_dir=str(tmp_path), verbose=False)
    fig, _ = plt.subplots()
    with pytest.raises(ValueError, match="must start with the notebook number '07_'"):
        plotting.save_fig(fig, "08_other")
    with pytest.raises(ValueError, match="notebook name"):
        plotting.start_notebook("demo", figures_dir=str(tmp_path))


# ---- the shared figures: what they draw is the numbers they are given --------------------------

def _stats(freq, k=7, n=200, half=0.05):
    from starling_lib.bias import PositionStats

    freq = np.asarray(freq, dtype=float)
    zeros = np.zeros(k)
    return PositionStats(strategy="s", k=k, n=n, first_counts=np.round(freq * n), first_freq=freq,
                         ci_low=freq - half, ci_high=freq + half, ci_method="wilson", confidence=0.95,
                         mean_rank=zeros, mean_rank_se=zeros, n_complete=n, chi2=0.0, dof=k - 1, p_value=1.0)


def test_theme_is_set_once_by_start_notebook(tmp_path):
    import seaborn as sns

    sns.reset_orig()
    plotting.start_notebook("07_demo", figures_dir=str(tmp_path), verbose=False)
    assert matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["svg.hashsalt"] == "starling"
    assert matplotlib.rcParams["figure.figsize"] == list(plotting.STYLE_RC["figure.figsize"])


def test_first_place_panels_draw_the_frequencies_and_intervals():
    freq = np.array([0.31, 0.30, 0.12, 0.1, 0.07, 0.05, 0.05])
    panels = {f"s{i}": _stats(freq / freq.sum()) for i in range(6)}
    reference = {"s0": np.full(7, 1 / 7)}
    fig = plotting.first_place_panels(panels, "title", {"s0": "naive"}, reference=reference)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, freq / freq.sum())
    segments = next(c for c in ax.collections if hasattr(c, "get_segments")).get_segments()
    assert np.allclose([s[1][1] - s[0][1] for s in segments], 0.10)  # ci_high - ci_low
    assert ax.get_title().startswith("naive\n(s0, n=200)")
    assert any(np.allclose(line.get_ydata(), 1 / 7) for line in ax.lines)  # the 1/K reference
    assert len(fig.axes) == 6
    plt.close(fig)


def test_gold_by_model_bars_are_mean_gold_per_rank():
    import pandas as pd

    answers = pd.DataFrame({"model": ["tiny-a", "tiny-b"] * 6, "rank": [1.0, 2.0] * 6,
                            "gold": [3.0, 1.0, 5.0, 1.0, 4.0, 1.0, 3.0, 2.0, 5.0, 0.0, 4.0, 1.0]})
    fig = plotting.gold_by_model_figure(answers, tau=0.5, seed=0)
    right = fig.axes[1]
    assert [round(p.get_height(), 6) for p in right.patches] == [4.0, 1.0]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b"]  # best model first
    assert [t.get_text() for t in right.get_xticklabels()] == ["1", "2"] and "0.50" in right.get_title()
    plt.close(fig)


def test_report_checks_prints_pass_fail_and_raises_naming_failures(capsys):
    plotting.report_checks({"one": True, "two": True})
    assert capsys.readouterr().out == "PASS one\nPASS two\n"
    with pytest.raises(AssertionError, match="1 of 2 checks failed: two"):
        plotting.report_checks({"one": True, "two": False})
    assert capsys.readouterr().out == "PASS one\nFAIL two\n"


# ---- notebooks 02 and 05 --------------------------------------------------------------------------

def test_theory_figure_draws_errors_intervals_and_ratios():
    import pandas as pd

    summary = pd.DataFrame([
        {"n": n, "estimator": est, "mean_error": e, "error_low": e - 0.01, "error_high": e + 0.02,
         "mse_ratio": r, "mse_ratio_low": r - 0.1, "mse_ratio_high": r + 0.2}
        for n, est, e, r in ((25, "kwise", 0.4, 1.0), (100, "kwise", 0.2, 1.0),
                             (25, "pairwise", 0.44, 1.2), (100, "pairwise", 0.22, 1.3))])
    fig = plotting.theory_figure(summary)
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
    import pandas as pd

    curve = pd.DataFrame([{"n_prompts": n, "loss": loss, "seed": s, "pairwise_accuracy": acc,
                           "gold_pairwise_accuracy": acc - 0.1}
                          for n, loss, accs in ((10, "kwise", (0.7, 0.8)), (40, "kwise", (0.9, 0.9)),
                                                (10, "pairwise", (0.6, 0.6)), (40, "pairwise", (0.7, 0.9)))
                          for s, acc in enumerate(accs)])
    logs = pd.DataFrame({"loss_type": ["kwise"] * 3, "step": [1, 2, 3], "loss": [2.0, 1.0, 0.5]})
    fig = plotting.tinyworld_figure(curve, logs, rank_gold_agreement=0.88)
    given, gold, loss = fig.axes
    blue = matplotlib.colors.to_rgba(plotting.LOSS_COLORS["kwise"])
    kwise = next(line for line in given.lines if len(line.get_ydata()) and matplotlib.colors.to_rgba(line.get_color()) == blue)
    assert np.allclose(kwise.get_ydata(), [0.75, 0.9])
    band = given.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.min(), 0.7) and np.isclose(band.max(), 0.9)  # kwise: min and max over seeds
    assert any(np.allclose(line.get_ydata(), 0.88) for line in gold.lines)
    assert np.allclose(loss.lines[0].get_ydata(), [1.0, 0.5, 0.25]) and "n = 40" in loss.get_title()
    plt.close(fig)


def test_real_rankings_and_benchmark_bars_are_the_numbers_given():
    import types

    import pandas as pd

    order = ["kwise", "pairwise", "adjacent", "length"]
    summary = pd.DataFrame({"vs GPT-4 ranking": [0.6, 0.61, 0.62, 0.7], "low": [0.55] * 4, "high": [0.75] * 4,
                            "vs Nectar ranking": [0.5, 0.51, 0.52, 0.6], "low ": [0.45] * 4, "high ": [0.65] * 4},
                           index=pd.Index(order, name="model"))
    real = types.SimpleNamespace(summary=summary, agreement={"pairwise_agreement": 0.8}, n_rankings=12, n_prompts=6)
    fig = plotting.real_rankings_figure(real)
    ax = fig.axes[0]
    assert np.allclose([p.get_height() for p in ax.patches], [0.6, 0.61, 0.62, 0.7, 0.5, 0.51, 0.52, 0.6])
    assert any(np.allclose(line.get_ydata(), 0.8) for line in ax.lines) and "12 real GPT-4 rankings (6" in ax.get_title()
    plt.close(fig)

    def entry(acc, longer):
        return {"accuracy": acc, "accuracy_low": acc - 0.05, "accuracy_high": acc + 0.05,
                "prefers_longer": longer, "prefers_longer_low": longer - 0.1, "prefers_longer_high": longer + 0.1}
    names = ["preference", "truthfulness", "safety", "verbosity"]
    metrics = {"RM-34B": {n: entry(0.8, 0.69) for n in names}, "longer wins": {n: entry(0.6, 1.0) for n in names}}
    fig = plotting.benchmark_figure(metrics, names, n_decoys=30, voters_prefer_longer=0.63)
    ax, ax_len = fig.axes
    assert np.allclose([p.get_height() for p in ax.patches], [0.8] * 4 + [0.6] * 4)
    assert ax.get_xticklabels()[3].get_text() == "verbosity\n(30 decoys)"
    assert np.allclose([p.get_width() for p in ax_len.patches], [0.69, 1.0])
    assert any(np.allclose(line.get_xdata(), 0.63) for line in ax_len.lines)
    plt.close(fig)
