"""Figures and headline numbers that notebooks write, with where they came from.

A notebook calls :func:`start_notebook` once (after its papermill ``parameters`` cell), then
:func:`save_fig` for each figure and :func:`save_results` for its headline numbers:

- ``figures/NN_name.png`` and ``.pdf``, in one fixed style;
- ``figures/NN_results.json``: the numbers a reader compares with the paper;
- ``figures/MANIFEST.json``: for every figure, the notebook, preset, seed, git commit and time.

Nothing is written to the working directory; the folder comes from ``starling_lib.paths``
(``$STARLING_FIGURES``) unless the notebook was given ``figures_dir``.

The style is one seaborn theme (:data:`STYLE`, set by :func:`start_notebook`). The figures that
several notebooks or panels share are drawn here, from the library's result objects, so a notebook
cell is one call: :func:`first_place_panels` (Figure 6), :func:`gold_by_model_figure` (notebook 00),
:func:`power_figure`, :func:`agreement_figure` and :func:`pointwise_figure` (notebook 01).
Notebooks 02 and 05 draw from :mod:`starling_lib.reward.figures`, notebook 04 from
:mod:`starling_lib.evaluation.figures`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

from . import package_versions, paths

# One seaborn theme for every figure: seaborn.set_theme(**STYLE).
STYLE_RC = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.frameon": False,
    "svg.hashsalt": "starling",
}
STYLE = {"context": "notebook", "style": "whitegrid", "palette": "tab10", "font_scale": 0.9, "rc": STYLE_RC}

_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")


@dataclass
class NotebookSession:
    """What a running notebook is: its name, preset, seed and output folder."""

    notebook: str
    preset: str
    seed: int
    figures: Path

    @property
    def number(self) -> str:
        return self.notebook[:2]


_session: NotebookSession | None = None


def start_notebook(notebook: str, preset: str = "tiny", seed: int = 0, figures_dir: str | None = None,
                   shared_data_dir: str | None = None, verbose: bool = True) -> NotebookSession:
    """Set style, seeds and output folder for notebook ``NN_name``; print versions.

    ``figures_dir`` and ``shared_data_dir`` come from the notebook's parameters cell (``None``:
    the library defaults), so a test can run a notebook without touching the committed figures.
    """
    global _session
    if not _NAME.match(notebook):
        raise ValueError(f"notebook name {notebook!r} must look like '01_positional_bias'")
    if shared_data_dir:
        os.environ["STARLING_SHARED_DATA"] = str(shared_data_dir)
    figures = Path(figures_dir) if figures_dir else paths.figures_dir()
    figures.mkdir(parents=True, exist_ok=True)
    set_theme()
    from .models import seed_everything  # torch import kept out of module import time

    seed_everything(seed)
    _quiet_libraries()
    _session = NotebookSession(notebook=notebook, preset=preset, seed=seed, figures=figures)
    if verbose:
        print(versions_line())
        print(f"notebook {notebook}: preset={preset} seed={seed} figures -> {figures}")
    return _session


def set_theme() -> None:
    """The project's figure style (:data:`STYLE`), for notebooks and anyone plotting by hand."""
    import seaborn as sns

    sns.set_theme(**STYLE)


def _quiet_libraries() -> None:
    """No download/shard progress bars or info logs in notebook outputs: they bury the results and
    differ from run to run. Warnings and errors still show."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_warning()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_warning()


def versions_line() -> str:
    """One line of the versions that decide results (rasbt-style: versions first)."""
    versions = package_versions(("torch", "transformers", "datasets", "trl", "tokenizers", "starling-lib"))
    return " | ".join([f"python {platform.python_version()}"] + [f"{pkg} {v or '-'}" for pkg, v in versions.items()])


def current_session() -> NotebookSession:
    if _session is None:
        raise RuntimeError("call starling_lib.plotting.start_notebook(...) first (it records the "
                           "notebook, preset and seed that MANIFEST.json needs)")
    return _session


def save_fig(fig, name: str, formats: tuple[str, ...] = ("png", "pdf")) -> Path:
    """Write ``fig`` as ``figures/<name>.png`` (+ pdf) and record it in ``MANIFEST.json``."""
    session = current_session()
    if not _NAME.match(name) or name[:2] != session.number:
        raise ValueError(f"figure name {name!r} must start with the notebook number "
                         f"'{session.number}_' and use lowercase letters, digits and '_'")
    files = []
    for fmt in formats:
        path = session.figures / f"{name}.{fmt}"
        # Fixed metadata so re-running a notebook only changes files whose pixels changed.
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        fig.savefig(path, format=fmt, metadata=metadata)
        files.append(path.name)
    _update_manifest(session, name, files)
    return session.figures / files[0]


def report_checks(checks: dict[str, bool]) -> None:
    """The checks cell of every notebook: print ``PASS name`` / ``FAIL name`` per claim, then raise
    naming the failed ones, so a wrong claim stops ``make reproduce``."""
    for name, ok in checks.items():
        print(("PASS " if ok else "FAIL ") + name)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        raise AssertionError(f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(failed))


def save_results(results: dict) -> Path:
    """Write the notebook's headline numbers to ``figures/NN_results.json``."""
    session = current_session()
    path = session.figures / f"{session.number}_results.json"
    payload = {**_provenance(session), "results": results}
    _write_json(path, payload)
    return path


def _provenance(session: NotebookSession) -> dict:
    from .precision import precision_record  # torch kept out of module import time

    return {
        "notebook": session.notebook,
        "preset": session.preset,
        "seed": session.seed,
        "git_commit": git_commit(),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision_record(),
    }


def _update_manifest(session: NotebookSession, name: str, files: list[str]) -> None:
    path = session.figures / "MANIFEST.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest[name] = {**_provenance(session), "files": files}
    _write_json(path, dict(sorted(manifest.items())))


def _write_json(path: Path, payload) -> None:
    # Write-then-rename: a run killed mid-write never leaves a truncated JSON behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def git_commit() -> str:
    """Short commit of the repository, ``-dirty`` when files other than figures/ changed; or ``unknown``.

    figures/ is left out because regenerating figures is what a run does: the first figure written
    would otherwise mark every later one dirty.
    """
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=10", "HEAD")
        if head.returncode != 0:
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)figures")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


# ----------------------------------------------------------------------------------------------
# Figures shared by notebooks (seaborn where it is the natural tool: bars, boxes, lines by group)

def _first_place_bars(ax, stats, color="tab:blue"):
    """First-place frequency by input position with its intervals, and 1/K dashed: one Figure-6 panel."""
    import seaborn as sns

    from .judge.parse import LETTERS

    letters = list(LETTERS[:stats.k])
    sns.barplot(x=letters, y=stats.first_freq, color=color, alpha=0.85, errorbar=None, ax=ax)
    ax.errorbar(range(stats.k), stats.first_freq, fmt="none", ecolor="0.25", capsize=2, lw=1,
                yerr=[stats.first_freq - stats.ci_low, stats.ci_high - stats.first_freq])
    ax.axhline(1 / stats.k, ls="--", color="grey", lw=1)


def first_place_panels(stats_by_strategy: dict, title: str, labels: dict | None = None, reference: dict | None = None):
    """Figure 6: one panel per strategy (2 x 3), P(ranked first) by input position with intervals.

    ``stats_by_strategy``: strategy -> :class:`starling_lib.bias.PositionStats`; ``labels``: the
    paper's name of each strategy; ``reference``: strategy -> frequencies drawn as dots (GPT-4's).
    """
    import matplotlib.pyplot as plt

    labels = labels or {}
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.6), sharey=True)
    for ax, (name, stats) in zip(axes.flat, stats_by_strategy.items()):
        _first_place_bars(ax, stats)
        if reference is not None and name in reference:
            ax.plot(range(stats.k), reference[name], "o", color="tab:orange", ms=4, label="GPT-4 (real logs)")
        ax.set_title(f"{labels.get(name, name)}\n({name}, n={stats.n})", fontsize=9)
        ax.set_ylabel("P(ranked first)" if ax in axes[:, 0] else "")
        ax.set_xlabel("input position" if ax in axes[1] else "")
    if reference is not None:
        axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gold_by_model_figure(answers, tau: float, seed: int = 0):
    """Notebook 00: gold reward per simulated model (boxes, best model first) and mean gold per sampled
    rank with 95 % bootstrap intervals. ``answers``: a DataFrame with ``model``, ``rank``, ``gold``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    order = list(answers.groupby("model")["gold"].mean().sort_values(ascending=False).index)
    with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated `vert`
        warnings.filterwarnings("ignore", message="vert: bool", category=DeprecationWarning)
        sns.boxplot(data=answers, x="model", y="gold", order=order, showfliers=False, color="tab:blue",
                    boxprops={"alpha": 0.6}, ax=left)
    left.set_xticks(range(len(order)), [m.removeprefix("tiny-") for m in order], rotation=30)
    left.set(xlabel="", ylabel="gold reward", title="Simulated models differ in quality")
    sns.barplot(data=answers.assign(rank=answers["rank"].astype(int)), x="rank", y="gold", errorbar=("ci", 95),
                seed=seed, color="tab:orange", ax=right)
    right.set(xlabel="sampled rank (1 = best)", ylabel="mean gold reward",
              title=f"Ranks follow gold (Kendall tau {tau:.2f})")
    fig.tight_layout()
    return fig


def power_figure(power, labels: dict, n_grid, bias_sizes, prompts_needed):
    """Notebook 01, part 3. Left: power of the chi-square test against prompts per strategy
    (``power``: DataFrame with ``strategy``, ``n``, ``power_analytic``, ``power_simulated``; lines
    analytic, dots simulated). Right: prompts for 80 % power against bias size."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    named = power.assign(strategy=power.strategy.map(lambda s: labels.get(s, s)))
    sns.lineplot(data=named, x="n", y="power_analytic", hue="strategy", ax=ax1)
    sns.scatterplot(data=named, x="n", y="power_simulated", hue="strategy", s=12, legend=False, ax=ax1)
    ax1.axhline(0.8, ls="--", color="grey", lw=1)
    ax1.set_xscale("log")
    ax1.set_xticks(list(n_grid), [str(n) for n in n_grid])
    ax1.xaxis.set_minor_locator(plt.NullLocator())
    ax1.set(xlabel="prompts per strategy", ylabel="power of the chi-square test",
            title="Power to detect each GPT-4 profile\n(lines: analytic, dots: simulated)")
    ax1.legend(fontsize=7, title=None)
    ax2.plot(bias_sizes, prompts_needed, "o-")
    ax2.set_yscale("log")
    ax2.set(xlabel="bias size (TV distance from uniform)", ylabel="prompts for 80 % power",
            title="Prompts needed vs bias size\n(the naive profile, scaled towards uniform)")
    fig.tight_layout()
    return fig


def agreement_figure(agreement):
    """Notebook 01, part 4: per agreement log, the share of adjacent pairs of GPT-4's K-wise order that a
    separate pairwise call reverses, against k, with t intervals (``agreement``: an AgreementReport)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, log in enumerate(agreement.logs):
        ks = np.array([a.k for a in log.by_k])
        err = np.array([a.mean_error for a in log.by_k])
        yerr = np.array([[a.mean_error - a.ci_low, a.ci_high - a.mean_error] for a in log.by_k]).T
        ax.errorbar(ks + 0.06 * (i - 1.5), err, yerr=yerr, marker="o", ms=4, capsize=2,
                    ls="-" if log.explain else "--", label=f"explain={log.explain}, shuffle={log.shuffle}")
    ax.set(xlabel="k: answers ranked at once", ylabel="adjacent pairs a separate\npairwise call decides the other way",
           title="GPT-4's K-wise order against separate pairwise calls (95 % t intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pointwise_figure(pointwise, comparisons: dict, baseline):
    """Notebook 01, part 4: GPT-4's single-answer scores (counts), how adjacent pairs of a 7-wise
    ranking fare under them (tie / agree / disagree, one bar per way of matching answers), and the
    7-wise baseline's first places (``baseline``: a RatingLogAnalysis)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .judge_experiments import OUTCOMES

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    scores = sorted(pointwise.score_counts)
    sns.barplot(x=[f"{s:g}" for s in scores], y=[pointwise.score_counts[s] for s in scores], color="tab:blue",
                errorbar=None, ax=ax1)
    ax1.set(xlabel="GPT-4's score of one answer, seen alone", ylabel="answers",
            title=f"{pointwise.n_answers} answers of {pointwise.n_prompts} prompts")
    left = np.zeros(len(comparisons))
    for outcome, color in zip(OUTCOMES, ("tab:gray", "tab:green", "tab:red")):
        share = np.array([c.fractions[outcome] for c in comparisons.values()])
        ax2.barh(range(len(comparisons)), share, left=left, height=0.6, color=color, label=outcome)
        for row, (x0, w) in enumerate(zip(left, share)):
            ax2.text(x0 + w / 2, row, f"{w:.3f}", ha="center", va="center", fontsize=8, color="white")
        left += share
    matched = {"text": "text", "model": "model name"}
    ax2.set_yticks(range(len(comparisons)), [f"matched by\n{matched.get(c.match, c.match)}" for c in comparisons.values()])
    ax2.set_ylim(1.5, -1.1)  # first row on top, room for the legend above the bars
    ax2.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    ax2.set(xlabel="share of adjacent pairs of the 7-wise ranking",
            title=f"Scores vs ranking ({pointwise.comparison.n_pairs} pairs)")
    ax2.grid(False, axis="y")
    _first_place_bars(ax3, baseline.stats)
    ax3.set(xlabel="input position", ylabel="P(ranked first)", title=f"{baseline.strategy} (n={baseline.stats.n})")
    fig.tight_layout()
    return fig
