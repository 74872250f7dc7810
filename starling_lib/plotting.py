"""Figures and headline numbers that notebooks write, with where they came from.

A notebook calls :func:`start_notebook` once (after its papermill ``parameters`` cell), then
:func:`save_fig` for each figure and :func:`save_results` for its headline numbers:

- ``figures/NN_name.png`` and ``.pdf``, in one fixed style;
- ``figures/NN_results.json``: the numbers a reader compares with the paper;
- ``figures/MANIFEST.json``: for every figure, the notebook, preset, seed, git commit and time.

Nothing is written to the working directory; the folder comes from ``starling_lib.paths``
(``$STARLING_FIGURES``) unless the notebook was given ``figures_dir``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import matplotlib

from . import package_versions, paths

STYLE = {
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
    matplotlib.rcParams.update(STYLE)
    from .models import seed_everything  # torch import kept out of module import time

    seed_everything(seed)
    _quiet_libraries()
    _session = NotebookSession(notebook=notebook, preset=preset, seed=seed, figures=figures)
    if verbose:
        print(versions_line())
        print(f"notebook {notebook}: preset={preset} seed={seed} figures -> {figures}")
    return _session


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
