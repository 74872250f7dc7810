"""save_fig / save_results write where told, with provenance, and refuse misnamed figures."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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
