"""Where things live: the only module that decides paths.

Every other module and notebook asks here for the repository root, the committed data folder,
the figures folder, the ignored runs folder, and the (optional) shared reference data.
Environment variables override the defaults so tests and users can redirect output; they are
read at each call (:func:`figures_dir`, :func:`runs_dir`, :func:`shared_data`), never at import:

- ``STARLING_FIGURES``: where ``save_fig`` writes (default ``<repo>/figures``);
- ``STARLING_RUNS``: executed notebooks, logs and caches (default ``<repo>/runs``);
- ``STARLING_SHARED_DATA``: published reference data (default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
NOTEBOOKS = ROOT / "notebooks"


def figures_dir() -> Path:
    """Folder for figures, ``NN_results.json`` and ``MANIFEST.json``."""
    return Path(os.environ.get("STARLING_FIGURES", ROOT / "figures"))


def runs_dir() -> Path:
    """Ignored folder for executed notebooks, training logs and caches."""
    return Path(os.environ.get("STARLING_RUNS", ROOT / "runs"))


def saved_model_dir(path: str | os.PathLike) -> Path:
    """Where a saved model is: a run folder's ``final/`` when it has one, else ``path`` itself
    (a model folder, a checkpoint folder, or ``final/`` given directly)."""
    path = Path(path)
    return path / "final" if (path / "final").is_dir() else path


def shared_data(*parts: str, required: bool = False) -> Path | None:
    """Path to published reference data under ``../shared/data`` (or ``$STARLING_SHARED_DATA``).

    Returns ``None`` when the path is absent, so callers can fall back (tests skip, notebooks use
    the tiny world). With ``required=True`` a missing path raises ``FileNotFoundError`` that says
    how to point the library at the data.
    """
    base = Path(os.environ.get("STARLING_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = base.joinpath(*parts)
    if path.exists():
        return path
    if required:
        raise FileNotFoundError(
            f"reference data not found at {path}; set STARLING_SHARED_DATA to the folder holding "
            "starling_ratings/, mt_bench/ and alpaca_eval/"
        )
    return None
