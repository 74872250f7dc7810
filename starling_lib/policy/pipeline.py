"""Loading what a policy-tuning run starts from: the policy, the reward model, the prompts.

What it is for: ``starling apa train`` and notebook 03 start a run from saved folders (an SFT run,
a reward-model run) or from the preset's own models, on prompts kept apart from the SFT and
reward-model data; this module resolves those into objects so the CLI only wires.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer

from starling_lib.config import Preset
from starling_lib.data.nectar import load_nectar
from starling_lib.data.gold import gold_reward
from starling_lib.data.tinyworld import generate_world
from starling_lib.models import adopt_pad_token, build_tiny_assets, load_causal_lm, quiet_transformers
from starling_lib.paths import runs_dir, saved_model_dir
from starling_lib.reward.data import distinct_prompts, load_examples


def load_saved_policy(path: str | Path):
    """(causal LM, tokenizer) saved in ``path``: an SFT or APA run folder (its ``final/``) or any HF
    model folder. Its tokenizer gets a pad token as in :func:`load_policy`."""
    path = saved_model_dir(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no saved policy here (config.json missing)")
    with quiet_transformers():
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    adopt_pad_token(model, with_pad_token(tokenizer))
    return model, tokenizer


def load_policy(preset: Preset, path: str | Path | None = None):
    """(causal LM, tokenizer): the saved policy at ``path`` when given (:func:`load_saved_policy`),
    else the preset's policy (``policy_model.name_or_path``, or the tiny policy, untrained).

    A tokenizer without a pad token (Llama/Mistral checkpoints) gets ``unk`` (else ``eos``) as its pad,
    whichever way the policy came: rollouts pad prompts with it."""
    if path is not None:
        return load_saved_policy(path)
    with quiet_transformers():
        if preset.policy_model.name_or_path:
            tokenizer = AutoTokenizer.from_pretrained(preset.policy_model.name_or_path)
            tokenizer.padding_side = "left"
            model = load_causal_lm(preset.policy_model, with_pad_token(tokenizer))
        else:
            paths = build_tiny_assets(preset, runs_dir() / "assets" / preset.name)
            model, tokenizer = AutoModelForCausalLM.from_pretrained(paths["policy"]), AutoTokenizer.from_pretrained(paths["tokenizer"])
    adopt_pad_token(model, with_pad_token(tokenizer))
    return model, tokenizer


def with_pad_token(tokenizer):
    """``tokenizer`` with a pad token: its own, else ``unk``, else ``eos`` (rollouts and batches pad with it)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def split_world(preset: Preset) -> dict[str, list[dict]]:
    """Tiny-world rows split by prompt into ``sft``, ``rm``, ``rl`` and ``eval`` (no prompt in two parts)."""
    study, sft = preset.policy_study, preset.sft
    world = dataclasses.replace(preset.world, n_prompts=study.world_prompts)
    # The world's prompts repeat (single-turn ones come from a small lexicon): keep one row per
    # distinct prompt, in a seeded random order so no part gets only the common ones.
    rows = list({row["prompt"]: row for row in generate_world(world)}.values())
    order = np.random.default_rng(preset.world.seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    sizes = {"sft": sft.n_prompts, "rm": study.rm_prompts, "eval": study.eval_prompts}
    if sum(sizes.values()) >= len(rows):
        raise ValueError(f"policy_study.world_prompts={study.world_prompts} gives {len(rows)} distinct prompts, "
                         f"not enough for sft {sizes['sft']} + rm {sizes['rm']} + eval {sizes['eval']} + some for RL")
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name] = rows[start:start + size]
        start += size
    parts["rl"] = rows[start:]
    return parts


def sft_rows(preset: Preset, source: str | None = None) -> list[dict]:
    """Nectar-format rows to fine-tune on: the tiny world's ``sft`` part (:func:`split_world`), or the
    rows of a Nectar file / hub id (``train_sft`` takes the first ``sft.n_prompts``)."""
    source = source or preset.data.source
    if source == "tinyworld":
        return split_world(preset)["sft"]
    return list(load_nectar(source, strict=preset.data.strict))


def policy_prompts(preset: Preset, source: str | None = None, max_prompts: int | None = None
                   ) -> tuple[list, Callable | None]:
    """(prompts to tune on, gold function or None).

    The tiny world: its ``rl`` part (:func:`split_world`, disjoint from the SFT and reward-model
    prompts), with ``gold_reward`` (it knows the true reward of any text, so runs also log it).
    Otherwise the distinct prompts of ``source`` (a Nectar file or hub id, rating logs).
    """
    source = source or preset.data.source
    if source == "tinyworld":
        return [row["prompt"] for row in split_world(preset)["rl"]][:max_prompts], gold_reward
    return distinct_prompts(load_examples(preset, source, max_prompts=max_prompts)), None
