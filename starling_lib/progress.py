"""Progress bars for long work, with one switch for the whole library.

Reward-model and SFT training (the Trainer's own bar, with the loss), the RL loop (iteration, proxy
and gold reward, KL) and answer generation show progress: a widget in JupyterLab, text in a
terminal (``tqdm.auto``). A call's ``progress`` argument decides; left at ``None`` it is on unless
``$STARLING_PROGRESS`` is ``0`` (the test suite sets that, and ``--json`` commands pass ``False``).
Bars only display: they draw no random numbers, so a run with or without them gives the same
numbers.
"""

from __future__ import annotations

import os

OFF = frozenset({"0", "false", "no", "off"})


def progress_enabled(progress: bool | None = None) -> bool:
    """``progress`` when given; otherwise on unless ``$STARLING_PROGRESS`` says 0/false/no/off."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("STARLING_PROGRESS", "1").strip().lower() not in OFF


def progress_bar(iterable=None, *, progress: bool | None = None, **tqdm_kwargs):
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one), disabled where progress is off."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress_enabled(progress), dynamic_ncols=True, **tqdm_kwargs)
