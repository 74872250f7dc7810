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
