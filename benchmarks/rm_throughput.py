"""Reward-model training time: our listwise trainer vs TRL's RewardTrainer on the expanded pairs.

    python benchmarks/rm_throughput.py [--preset tiny] [--n-train 200] [--n-eval 100] [--dtype auto|fp32|bf16]

Both train the **same** tiny reward model (same initial weights, from the preset's assets) on the
**same** comparisons — every one of the K(K-1)/2 = 21 ordered pairs of each tiny-world prompt —
for one epoch, with the same max length, precision, optimiser, learning rate and number of
optimiser steps:

- ours: ``ListwiseRewardTrainer`` with ``loss_type="pairwise"``: B prompts per step, each answer
  encoded once (7 sequences per prompt), all 21 pair differences from that one forward;
- TRL: ``RewardTrainer`` on :func:`pairwise_dataset` (21 chosen/rejected rows per prompt),
  21·B pairs per step, i.e. 42 sequences per prompt.

A forward/backward pass costs about the same per sequence, so 42/7 = 6x is the bound on the speed-up.
``ratio`` = TRL's ``train()`` seconds / ours, summed over ``--seeds`` data orders (goal >= 5).
Ours tokenizes inside its collator, so its time includes tokenization; TRL tokenizes its dataset
before ``train()`` (reported apart, as ``trl_prepare_s``). Both final models are scored on the
same held-out prompts with the same code: pairwise accuracy against the given ranks and against
the gold reward. For reference (not timed against TRL) the same trainer is also run with its
default K-wise loss (``ours_kwise``). Ours must not be worse: ``ok`` needs the paired 95% interval of the accuracy
difference (ours - TRL, over seeds) to reach 0. The last line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import PrinterCallback

from starling_lib.config import get_preset
from starling_lib.data.convert import pairwise_dataset
from starling_lib.data.tinyworld import generate_world, world_dataset
from starling_lib.models import quiet_transformers
from starling_lib.precision import DTYPE_NAMES, precision_record, resolve_precision, trainer_precision_args
from starling_lib.reward.data import tinyworld_examples
from starling_lib.reward.metrics import paired_difference_ci
from starling_lib.reward.train import build_backbone, evaluate_reward_model, train_reward_model

TARGET_RATIO = 5.0


def one_seed(preset, seed, train_rows, eval_examples, world, args, log) -> dict:
    """Both trainers from the same initial weights, data order seeded by ``seed``."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --- ours
        model, tokenizer = build_backbone(preset)
        ours = train_reward_model(preset, tinyworld_examples(train_rows), None, tmp / "ours", model=model,
                                  tokenizer=tokenizer, save_final=False, seed=seed, data_seed=seed)
        ours_metrics = evaluate_reward_model(ours.model, tokenizer, eval_examples, preset)
        log(f"seed {seed} ours: {ours.train_seconds:.1f} s, {ours.metrics['steps']} steps, "
            f"held-out pairwise acc {ours_metrics['eval_pairwise_accuracy']:.3f}")
        # Not part of the ratio: the same trainer with its default K-wise loss, for reference.
        kwise_preset = dataclasses.replace(preset, reward=dataclasses.replace(preset.reward, loss_type="kwise"))
        model, tokenizer = build_backbone(kwise_preset)
        kwise = train_reward_model(kwise_preset, tinyworld_examples(train_rows), None, tmp / "kwise", model=model,
                                   tokenizer=tokenizer, save_final=False, seed=seed, data_seed=seed)
        kwise_metrics = evaluate_reward_model(kwise.model, tokenizer, eval_examples, kwise_preset)

        # --- TRL
        from trl import RewardConfig as TRLRewardConfig
        from trl import RewardTrainer

        model, tokenizer = build_backbone(preset)
        started = time.perf_counter()
        pairs = pairwise_dataset(world_dataset(world).select(range(args.n_train)), mode="all")
        pairs = pairs.remove_columns(["prompt_index", "n_pairs"])
        trl_args = TRLRewardConfig(
            output_dir=str(tmp / "trl"), per_device_train_batch_size=21 * args.prompts_per_step,
            learning_rate=args.lr, num_train_epochs=1, lr_scheduler_type=preset.reward.lr_scheduler,
            max_length=preset.reward.max_length, **trainer_precision_args(resolve_precision(preset.runtime)), use_cpu=True, report_to="none",
            save_strategy="no", logging_steps=10, disable_tqdm=True, seed=seed, data_seed=seed,
            dataloader_num_workers=0, center_rewards_coefficient=None, disable_dropout=True)
        with quiet_transformers():
            trainer = RewardTrainer(model=model, args=trl_args, train_dataset=pairs, processing_class=tokenizer)
            trainer.remove_callback(PrinterCallback)
        trl_prepare_s = time.perf_counter() - started
        started = time.perf_counter()
        with quiet_transformers():
            trainer.train()
        trl_seconds = time.perf_counter() - started
        trl_metrics = evaluate_reward_model(trainer.model, tokenizer, eval_examples, preset)
        log(f"seed {seed} trl: {trl_seconds:.1f} s, {trainer.state.global_step} steps "
            f"({len(trainer.train_dataset)} of {len(pairs)} pairs within max_length), "
            f"held-out pairwise acc {trl_metrics['eval_pairwise_accuracy']:.3f}")
    return {"ours": ours_metrics, "trl": trl_metrics, "ours_kwise": kwise_metrics, "ours_s": ours.train_seconds, "trl_s": trl_seconds,
            "ours_steps": ours.metrics["steps"], "trl_steps": trainer.state.global_step,
            "trl_prepare_s": trl_prepare_s, "trl_pairs": len(pairs), "trl_pairs_kept": len(trainer.train_dataset)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--n-train", type=int, default=160, help="training prompts (x21 pairs for TRL)")
    parser.add_argument("--n-eval", type=int, default=1000, help="held-out prompts")
    parser.add_argument("--seeds", type=int, default=3, help="data orders; accuracies are compared per seed")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="compute dtype (auto: the hardware's choice)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = get_preset(args.preset, [f"runtime.dtype={args.dtype}", "reward.loss_type=pairwise", "reward.epochs=1",
                                      f"reward.prompts_per_batch={args.prompts_per_step}",
                                      f"reward.learning_rate={args.lr}", "reward.save_steps=100000",
                                      "reward.logging_steps=10", "reward.warmup_ratio=0.0"])
    world = preset.world
    world.n_prompts = args.n_train + args.n_eval
    rows = generate_world(world)
    train_rows, eval_rows = rows[:args.n_train], rows[args.n_train:]
    eval_examples = tinyworld_examples(eval_rows)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731

    runs = []
    for seed in range(args.seeds):
        runs.append(one_seed(preset, seed, train_rows, eval_examples, world, args, log))
    ours_acc = np.array([r["ours"]["eval_pairwise_accuracy"] for r in runs])
    trl_acc = np.array([r["trl"]["eval_pairwise_accuracy"] for r in runs])
    diff_mean, diff_low, diff_high = paired_difference_ci(ours_acc, trl_acc) if len(runs) > 1 else (
        float(ours_acc[0] - trl_acc[0]), math.nan, math.nan)
    ours_s = np.array([r["ours_s"] for r in runs])
    trl_s = np.array([r["trl_s"] for r in runs])

    def both(key):
        return {name: round(float(np.mean([r[name][key] for r in runs])), 4) for name in ("ours", "trl", "ours_kwise")}

    result = {
        "benchmark": "rm_throughput", "preset": args.preset, "precision": resolve_precision(preset.runtime).as_dict(), "cpu": precision_record()["cpu"], "seeds": args.seeds,
        "n_train_prompts": args.n_train, "n_eval_prompts": args.n_eval, "max_length": preset.reward.max_length,
        "steps": {"ours": runs[0]["ours_steps"], "trl": runs[0]["trl_steps"]},
        "train_s": {"ours": [round(x, 2) for x in ours_s], "trl": [round(x, 2) for x in trl_s]},
        "trl_prepare_s": round(float(np.mean([r["trl_prepare_s"] for r in runs])), 2),
        "trl_pairs": runs[0]["trl_pairs"], "trl_pairs_kept": runs[0]["trl_pairs_kept"],
        "sequences_per_prompt": {"ours": 7, "trl": 42}, "bound": 6.0,
        "heldout_pairwise_accuracy": both("eval_pairwise_accuracy"),
        "heldout_gold_pairwise_accuracy": both("eval_gold_pairwise_accuracy"),
        "accuracy_difference": {"mean": round(diff_mean, 4), "ci95": [round(diff_low, 4), round(diff_high, 4)]},
        "ratio": round(float(trl_s.sum() / ours_s.sum()), 3), "target": TARGET_RATIO,
    }
    # "Not worse": the paired 95% interval of (ours - TRL) over seeds reaches 0 or above.
    not_worse = diff_mean >= 0 or (not math.isnan(diff_high) and diff_high >= 0)
    result["ok"] = bool(result["ratio"] >= TARGET_RATIO and not_worse)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
