"""Shared test set-up: offline hub, headless plotting, and the optional published data."""

import os

# Before any test module imports datasets/transformers: never try the network (it retries for
# ~25 s here before failing) and never open a window.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from starling_lib.paths import shared_data  # noqa: E402

RATING_STRATEGIES = (
    "no_pairwise", "pairwise_no_given_order", "pairwise_not_random",
    "baseline_no_tiebreak", "tiebreak_order_given", "tiebreak_order_given_static_2",
)


@pytest.fixture(scope="session")
def ratings_dir():
    """``../shared/data/starling_ratings`` (real GPT-4 rating logs); skips when absent."""
    path = shared_data("starling_ratings")
    if path is None:
        pytest.skip("published rating logs not present (../shared/data/starling_ratings)")
    return path
