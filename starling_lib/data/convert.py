"""Nectar rows as training examples: listwise (K answers best-first) and pairwise (chosen/rejected).

Rows are validated Nectar rows (:func:`starling_lib.data.nectar.load_nectar`): ranks are distinct
whole numbers, rank 1 = best. Prompts become chat messages (``prompt_to_messages``), so the examples
drop straight into TRL's conversational preference format::

    {"prompt": [{"role": "user", "content": ...}, ...],
     "chosen": [{"role": "assistant", "content": better}],
     "rejected": [{"role": "assistant", "content": worse}]}

The K-wise reward model of the Starling paper trains on all K(K-1)/2 pairs of a prompt (21 for K=7);
``mode="adjacent"`` keeps only the K-1 neighbouring pairs of the ranking, ``"best_vs_worst"`` the
one pair of the best and the worst answer (DPO's usual pair from a ranking, ``starling dpo train``).
"""

from __future__ import annotations

from itertools import combinations

import datasets

from starling_lib.data.chat import prompt_to_messages
from starling_lib.data.schema import NectarFormatError

PAIR_MODES = ("all", "adjacent", "best_vs_worst")

MESSAGES = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
LISTWISE_FEATURES = datasets.Features({
    "prompt": MESSAGES,
    "answers": [datasets.Value("string")],
    "models": [datasets.Value("string")],
    "ranks": [datasets.Value("float64")],
})
PAIRWISE_FEATURES = datasets.Features({
    "prompt": MESSAGES,
    "chosen": MESSAGES,
    "rejected": MESSAGES,
    "prompt_index": datasets.Value("int64"),
    "n_pairs": datasets.Value("int64"),
})


def require_ranks(row: dict, purpose: str = "listwise and pairwise examples") -> None:
    """Raise a clear :class:`NectarFormatError` when the row's answers carry no Nectar rank (an
    unrated row, or a judge log without ranks such as ``pointwise_pairwise_baseline``)."""
    missing = [i for i, answer in enumerate(row["answers"]) if answer.get("rank") is None]
    if missing:
        raise NectarFormatError("missing_rank", f"{purpose} need Nectar's rank, and answers{missing} have none "
                                "(for a judge log, rank by its ranking_order instead)", field="answers[].rank")


def _best_first(row: dict) -> list[dict]:
    require_ranks(row)
    return sorted(row["answers"], key=lambda answer: answer["rank"])


def to_listwise(row: dict) -> dict:
    """``{"prompt": messages, "answers": [best .. worst], "models": [...], "ranks": [...]}``."""
    ranked = _best_first(row)
    return {
        "prompt": prompt_to_messages(row["prompt"]),
        "answers": [a["answer"] for a in ranked],
        "models": [a["model"] for a in ranked],
        "ranks": [a["rank"] for a in ranked],
    }


def pairs_per_prompt(k: int, mode: str = "all") -> int:
    """Pairs :func:`to_pairwise` makes from K answers: K(K-1)/2 for ``"all"``, K-1 for ``"adjacent"``,
    1 for ``"best_vs_worst"``."""
    if mode not in PAIR_MODES:
        raise ValueError(f"mode must be one of {PAIR_MODES}, got {mode!r}")
    return {"all": k * (k - 1) // 2, "adjacent": k - 1, "best_vs_worst": 1}[mode]


def to_pairwise(row: dict, mode: str = "all") -> list[dict]:
    """Preference pairs from one row; in each, ``chosen`` has a strictly better (lower) rank."""
    if mode not in PAIR_MODES:
        raise ValueError(f"mode must be one of {PAIR_MODES}, got {mode!r}")
    ranked = _best_first(row)
    pairs = {"all": lambda: combinations(ranked, 2), "adjacent": lambda: zip(ranked, ranked[1:]),
             "best_vs_worst": lambda: [(ranked[0], ranked[-1])]}[mode]()
    messages = prompt_to_messages(row["prompt"])
    return [
        {"prompt": messages,
         "chosen": [{"role": "assistant", "content": better["answer"]}],
         "rejected": [{"role": "assistant", "content": worse["answer"]}]}
        for better, worse in pairs
    ]


def listwise_dataset(dataset: datasets.Dataset) -> datasets.Dataset:
    """:func:`to_listwise` over a Nectar dataset, one row per prompt."""
    return dataset.map(to_listwise, remove_columns=dataset.column_names, features=LISTWISE_FEATURES)


def _pairwise_batch(batch: dict, indices: list[int], mode: str) -> dict:
    out = {name: [] for name in PAIRWISE_FEATURES}
    for i, index in enumerate(indices):
        pairs = to_pairwise({"prompt": batch["prompt"][i], "answers": batch["answers"][i]}, mode)
        for pair in pairs:
            for name in ("prompt", "chosen", "rejected"):
                out[name].append(pair[name])
            out["prompt_index"].append(index)
            out["n_pairs"].append(len(pairs))
    return out


def pairwise_dataset(dataset: datasets.Dataset, mode: str = "all") -> datasets.Dataset:
    """:func:`to_pairwise` over a Nectar dataset: columns prompt, chosen, rejected, prompt_index
    (row of ``dataset`` the pair came from) and n_pairs (pairs made from that row)."""
    if mode not in PAIR_MODES:
        raise ValueError(f"mode must be one of {PAIR_MODES}, got {mode!r}")
    # A batched map may return more rows than it gets: one prompt expands to its pairs.
    return dataset.map(_pairwise_batch, batched=True, with_indices=True, fn_kwargs={"mode": mode},
                       remove_columns=dataset.column_names, features=PAIRWISE_FEATURES)
