"""Listwise examples for reward models from any source, and a train/eval split by prompt.

What it is for: one call turns the tiny world, a Nectar file or hub id, or the authors' GPT-4
rating logs into listwise examples (``prompt``, ``answers``, ``ranks``, optional
``gold_rewards``) that :class:`starling_lib.reward.collate.ListwiseCollator` reads.

- Tiny world: ranks are the world's Plackett-Luce ranks; ``gold_rewards`` come with them.
- Nectar (JSONL / Parquet / hub): ranks are Nectar's ``rank`` field (GPT-4's published ranking).
- Rating logs (``starling_ratings/<strategy>/rankings.jsonl``): ranks come from the log's own
  ``ranking_order`` — the ranking GPT-4 produced under that prompting strategy — not from the
  Nectar ``rank`` the rows also carry. Rows whose ranking is incomplete keep only the ranked
  answers (the collator masks the rest). The same prompt appears once per strategy, so splits
  are made **by prompt text**: a prompt is on one side only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from starling_lib.config import Preset
from starling_lib.data.chat import prompt_to_messages
from starling_lib.data.convert import require_ranks
from starling_lib.data.nectar import load_nectar, rating_log_folders, read_rating_log
from starling_lib.data.gold import gold_reward
from starling_lib.data.tinyworld import generate_world


def tinyworld_examples(rows: list[dict]) -> list[dict]:
    """Tiny-world (or any Nectar-schema) rows -> listwise examples with gold rewards."""
    return [{"prompt_text": row["prompt"], "prompt": prompt_to_messages(row["prompt"]),
             "answers": [a["answer"] for a in row["answers"]],
             "ranks": [float(a["rank"]) for a in row["answers"]],
             "gold_rewards": [gold_reward(row["prompt"], a["answer"]) for a in row["answers"]]}
            for row in rows]


def nectar_examples(dataset) -> list[dict]:
    """Nectar rows (a ``datasets.Dataset`` or list of dicts) -> listwise examples, ranks = ``rank``."""
    examples = []
    for row in dataset:
        require_ranks(row, "reward-model examples from Nectar rows")
        examples.append({"prompt_text": row["prompt"], "prompt": prompt_to_messages(row["prompt"]),
                         "answers": [a["answer"] for a in row["answers"]],
                         "ranks": [float(a["rank"]) for a in row["answers"]]})
    return examples


def rating_log_examples(rows: list[dict], strategy: str | None = None) -> list[dict]:
    """Rating-log rows (:func:`read_rating_log`) -> listwise examples ranked by ``ranking_order``;
    ``nectar_ranks`` only where the log stores Nectar's rank."""
    examples = []
    for row in rows:
        order = row["ranking_order"]
        ranked = [i for i in order if 0 <= i < len(row["answers"])]
        nectar_ranks = [row["answers"][i]["rank"] for i in ranked]
        examples.append({
            "prompt_text": row["prompt"], "prompt": prompt_to_messages(row["prompt"]),
            "answers": [row["answers"][i]["answer"] for i in ranked],
            "ranks": [float(j + 1) for j in range(len(ranked))],
            **({"nectar_ranks": [float(r) for r in nectar_ranks]} if None not in nectar_ranks else {}),
            "strategy": strategy,
        })
    return examples


def is_rating_log(source) -> bool:
    """True for a ``rankings.jsonl``, a folder holding one, or a folder of such folders."""
    path = Path(source)
    if path.is_file():
        return path.name == "rankings.jsonl"
    return path.is_dir() and ((path / "rankings.jsonl").is_file() or any(path.glob("*/rankings.jsonl")))


def load_examples(preset: Preset, source: str | os.PathLike | None = None, max_prompts: int | None = None) -> list[dict]:
    """Listwise examples from ``source`` (default ``preset.data.source``), at most ``max_prompts``
    (default ``data.max_prompts``) distinct prompts; all rankings of a kept prompt stay together."""
    source = preset.data.source if source is None else source
    max_prompts = preset.data.max_prompts if max_prompts is None else max_prompts
    if source == "tinyworld":
        examples = tinyworld_examples(generate_world(preset.world))
    elif is_rating_log(source):
        folders = [Path(source).parent] if Path(source).is_file() else rating_log_folders(source)
        examples = []
        for folder in folders:
            rows, _ = read_rating_log(folder, strict=preset.data.strict)
            examples += rating_log_examples(rows, strategy=folder.name)
    else:
        examples = nectar_examples(load_nectar(source, strict=preset.data.strict))
    if max_prompts is not None:
        keep = set(distinct_prompts(examples)[:max_prompts])
        examples = [e for e in examples if e["prompt_text"] in keep]
    if not examples:
        raise ValueError(f"no usable examples in {source}")
    return examples


def distinct_prompts(examples: list[dict]) -> list[str]:
    """Prompt texts in first-seen order, each once."""
    return list(dict.fromkeys(e["prompt_text"] for e in examples))


def split_by_prompt(examples: list[dict], eval_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded ``eval_fraction`` of the distinct prompts, with every ranking of
    them, goes to eval; order within each side is the input order."""
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    prompts = distinct_prompts(examples)
    n_eval = int(round(eval_fraction * len(prompts)))
    if eval_fraction > 0 and (n_eval == 0 or n_eval == len(prompts)):
        raise ValueError(f"eval_fraction {eval_fraction} of {len(prompts)} prompts leaves one side empty")
    held = set(np.asarray(prompts, dtype=object)[np.random.default_rng(seed).permutation(len(prompts))[:n_eval]])
    return ([e for e in examples if e["prompt_text"] not in held], [e for e in examples if e["prompt_text"] in held])


def prompt_folds(examples: list[dict], n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Cross-validation folds by prompt: ``n_folds`` arrays of example indices; each prompt in one fold."""
    prompts = distinct_prompts(examples)
    if not 2 <= n_folds <= len(prompts):
        raise ValueError(f"n_folds must be between 2 and the {len(prompts)} distinct prompts, got {n_folds}")
    fold_of = {p: i % n_folds for i, p in enumerate(np.asarray(prompts, dtype=object)[
        np.random.default_rng(seed).permutation(len(prompts))])}
    folds = [[] for _ in range(n_folds)]
    for index, example in enumerate(examples):
        folds[fold_of[example["prompt_text"]]].append(index)
    return [np.array(f, dtype=int) for f in folds]
