"""DPO: offline preference tuning of the policy on pairs drawn from rankings (``starling dpo train``).

What it is for: the Starling blog tried DPO (Rafailov et al. 2023) from OpenChat 3.5 and saw "no
significant improvements over the initial model", which it put down to OpenChat 3.5 having had
offline preference training already (C-RLFT). Here DPO starts from the same SFT policy as APA / PPO
(``starling apa train --policy``), on pairs from the rankings of the same RL prompts, so the online
and offline methods can be compared on held-out gold reward (:func:`evaluate_dpo`). The stand-in for
a start that "already had offline preference training" is SFT on the best-ranked answers only
(``starling sft train --answers best``, ``sft.answers=best``).

The training is TRL's ``DPOTrainer`` (its sigmoid loss, ``-log σ(β[(log π/π_ref)(y_w) − (log π/π_ref)(y_l)])``,
Rafailov et al. 2023, eq. 7); nothing of the loss is written here. The reference policy is the
start: TRL precomputes its log-probabilities of every pair before the first step
(``dpo.precompute_ref``), so no second copy of the model is kept (on a 2-core CPU one pass over
the pairs instead of one reference forward per step and epoch), or keeps a frozen copy.

Pairs (:func:`preference_pairs`) are TRL's conversational preference examples
(``{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}``, made by
:func:`starling_lib.data.convert.to_pairwise`) under a rule: ``best_vs_worst`` (one pair per
ranking), ``adjacent`` (K-1) or ``all`` (K(K-1)/2). Ties and missing ranks are errors naming the
row and the field; rows with fewer than two answers are counted and skipped (with a warning).

Outputs under ``output_dir``: ``final/`` (a plain causal LM + tokenizer, read back with
:func:`~starling_lib.policy.pipeline.load_saved_policy` like SFT and APA runs), ``log.jsonl`` (TRL's
logs per step: loss, ``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
``rewards/margins``, ...) and ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable

import datasets
import numpy as np
import pandas as pd
from transformers import PrinterCallback
from trl import DPOConfig, DPOTrainer

from starling_lib.config import Preset
from starling_lib.data.chat import prompt_to_messages
from starling_lib.data.convert import PAIR_MODES, to_pairwise
from starling_lib.data.gold import gold_reward
from starling_lib.data.nectar import load_nectar
from starling_lib.data.schema import NectarFormatError
from starling_lib.paths import runs_dir
from starling_lib.policy.pipeline import load_policy, split_world
from starling_lib.policy.rollout import RewardScorer
from starling_lib.policy.sft import plain_forward, quiet_trainer_logs
from starling_lib.policy.study import evaluate_policy
from starling_lib.precision import resolve_device, resolve_precision, trainer_precision_args
from starling_lib.progress import progress_enabled
from starling_lib.reward.train import JsonlLogCallback, RewardRun

PAIR_RULES = PAIR_MODES
"""``best_vs_worst``, ``adjacent`` or ``all`` (see :func:`starling_lib.data.convert.to_pairwise`)."""
METRIC_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
"""TRL's per-step DPO logs kept in the run's metrics (first and last step)."""


class PreferencePairs(list):
    """What :func:`preference_pairs` returns: a list of TRL conversational preference examples, with
    ``rule``, ``n_rows`` (rows read), ``skipped_rows`` (indices of rows with fewer than 2 answers)
    and ``n_before_cap`` (pairs before ``max_pairs``)."""

    def __init__(self, pairs=(), *, rule: str = "best_vs_worst", n_rows: int = 0, skipped_rows=(),
                 n_before_cap: int | None = None):
        super().__init__(pairs)
        self.rule, self.n_rows, self.skipped_rows = rule, n_rows, list(skipped_rows)
        self.n_before_cap = len(self) if n_before_cap is None else n_before_cap

    def summary(self) -> dict:
        return {"pairs": len(self), "pair_rule": self.rule, "rows": self.n_rows,
                "rows_skipped_under_2_answers": len(self.skipped_rows), "pairs_before_cap": self.n_before_cap}


def preference_pairs(rows, rule: str = "best_vs_worst", *, max_pairs: int | None = None, seed: int = 0,
                     source: str | None = None) -> PreferencePairs:
    """(prompt, chosen, rejected) examples from Nectar-format ``rows`` whose answers carry ranks.

    ``rule``: ``best_vs_worst`` (rank 1 against the last rank), ``adjacent`` (each rank against the
    next) or ``all`` (every pair); chosen always has the strictly lower (better) rank. A missing or
    non-numeric rank, or two answers with the same rank (a tie: no preference), raises
    :class:`~starling_lib.data.schema.NectarFormatError` naming ``source``, the row and the field;
    rows with fewer than 2 answers are skipped and counted (``skipped_rows``, a warning).
    ``max_pairs``: keep a random subset of this many (seeded by ``seed``, in the original order).
    """
    if rule not in PAIR_RULES:
        raise ValueError(f"pair rule must be one of {PAIR_RULES}, got {rule!r}")
    pairs, skipped, n_rows = [], [], 0
    for i, row in enumerate(rows):
        n_rows += 1
        ranked = _ranked_row(row, i, source)
        if ranked is None:
            skipped.append(i)
            continue
        pairs += to_pairwise(ranked, rule)
    if skipped:
        warnings.warn(f"{source or 'rows'}: {len(skipped)} of {n_rows} rows have fewer than 2 answers and give no "
                      f"preference pair; skipped (rows {skipped[:10]}{' ...' if len(skipped) > 10 else ''})",
                      stacklevel=2)
    n_before_cap = len(pairs)
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
        pairs = [pairs[k] for k in keep]
    return PreferencePairs(pairs, rule=rule, n_rows=n_rows, skipped_rows=skipped, n_before_cap=n_before_cap)


def _ranked_row(row, i: int, source: str | None) -> dict | None:
    """``{"prompt", "answers": [{answer, rank: float}]}`` of row ``i``, checked; ``None`` when it
    has fewer than 2 answers."""
    def fail(reason: str, field: str, detail: str):
        raise NectarFormatError(reason, detail, path=source, row=i, field=field)

    if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
        fail("missing_field", "prompt", "the prompt is missing or not a string")
    try:
        messages = prompt_to_messages(row["prompt"])
    except NectarFormatError as err:
        fail(err.reason, "prompt", err.detail)
    if messages[-1]["role"] != "user":
        fail("no_generation_point", "prompt", "the prompt must end on a Human turn (the generation point)")
    answers = row.get("answers")
    if not isinstance(answers, list):
        fail("missing_field" if answers is None else "wrong_type", "answers", "answers must be a list of "
             f"{{answer, rank}} objects, got {type(answers).__name__}")
    if len(answers) < 2:
        return None
    checked, seen = [], {}
    for j, entry in enumerate(answers):
        if not isinstance(entry, dict) or not isinstance(entry.get("answer"), str):
            fail("wrong_type", f"answers[{j}].answer", "each answer must be an object with a string 'answer'")
        rank = entry.get("rank")
        if rank is None:
            fail("missing_rank", f"answers[{j}].rank", "rank is missing (preference pairs need every answer ranked)")
        if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not math.isfinite(rank):
            fail("wrong_type", f"answers[{j}].rank", f"rank must be a finite number, got {rank!r}")
        if float(rank) in seen:
            fail("tied_rank", f"answers[{j}].rank", f"rank {rank} ties with answers[{seen[float(rank)]}]: "
                 "a tie states no preference")
        seen[float(rank)] = j
        checked.append({"answer": entry["answer"], "model": entry.get("model", ""), "rank": float(rank)})
    return {"prompt": row["prompt"], "answers": checked}


def dpo_pairs(preset: Preset, source: str | None = None) -> PreferencePairs:
    """Pairs under ``preset.dpo``'s rule and cap: from the tiny world's ``rl`` part (the prompts the
    online methods tune on, :func:`~starling_lib.policy.pipeline.split_world`) or from the rows of a
    Nectar file / hub id (``source``; ``data.strict`` decides whether a bad row stops the load)."""
    source = source or preset.data.source
    if source == "tinyworld":
        rows, label = split_world(preset)["rl"], "tiny world (rl part)"
    else:
        rows, label = list(load_nectar(source, strict=preset.data.strict)), str(source)
    cfg = preset.dpo
    return preference_pairs(rows, cfg.pair_rule, max_pairs=cfg.max_pairs, seed=preset.runtime.seed, source=label)


def dpo_arguments(preset: Preset, output_dir: Path, **overrides) -> DPOConfig:
    """The TRL ``DPOConfig`` that ``preset.dpo`` (and ``preset.runtime``) stand for."""
    cfg, device = preset.dpo, resolve_device(preset.runtime)
    kwargs = dict(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        lr_scheduler_type="linear", beta=cfg.beta, loss_type=[cfg.loss_type], max_length=cfg.max_length,
        precompute_ref_log_probs=cfg.precompute_ref, save_strategy="no", logging_steps=1,
        seed=preset.runtime.seed, data_seed=preset.runtime.seed, report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=device.type == "cpu",
        **trainer_precision_args(resolve_precision(preset.runtime, device)),
        # transformers 5's name for it (it warns about the old ``gradient_checkpointing``, TRL's default True)
        activation_checkpointing=cfg.gradient_checkpointing,
        ddp_backend="gloo" if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )
    kwargs.update(overrides)
    return DPOConfig(**kwargs)


class DpoRun(RewardRun):
    """What :func:`train_dpo` returns: output folder, the tuned model, tokenizer, metrics, seconds,
    log path, history (TRL's log records)."""


def train_dpo(preset: Preset, pairs: list[dict], output_dir: str | Path | None = None, *, model=None, tokenizer=None,
              start: str | Path | None = None, quiet: bool = True, progress: bool | None = None,
              measure_pairs: bool = True, **training_overrides) -> DpoRun:
    """Tune a policy with DPO on ``pairs`` (:func:`preference_pairs`) under ``preset.dpo``.

    The policy is ``model`` / ``tokenizer`` (trained in place: pass a ``copy.deepcopy`` to keep the
    start), else :func:`~starling_lib.policy.pipeline.load_policy` of ``start`` (an SFT run folder or
    model folder; ``None``: the preset's policy), the start ``starling apa train --policy`` uses.
    The reference policy is the start. ``measure_pairs``: after training, TRL's evaluation on the
    training pairs (``pairs_rewards/margins``, ``pairs_rewards/accuracies``, ...: before training both
    are 0 by definition, the policy being its reference). Extra keyword arguments override
    ``DPOConfig`` fields.
    """
    output_dir = Path(output_dir) if output_dir is not None else runs_dir() / "dpo" / preset.name
    output_dir.mkdir(parents=True, exist_ok=True)
    if not pairs:
        raise ValueError("no preference pairs to train on")
    if model is None or tokenizer is None:
        model, tokenizer = load_policy(preset, start)
    log_path = output_dir / "log.jsonl"
    log_path.unlink(missing_ok=True)
    dataset = datasets.Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    show = progress_enabled(progress)
    with quiet_trainer_logs() if quiet else contextlib.nullcontext(), _trl_output(show):
        args = dpo_arguments(preset, output_dir, **{"disable_tqdm": not show,
                                                     **training_overrides})
        # The reference: TRL's precomputed log-probabilities of the start, or a frozen copy of it (TRL
        # would otherwise reload config.name_or_path, which is not the start for a model trained in memory).
        ref_model = None if args.precompute_ref_log_probs else copy.deepcopy(model).eval()
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[JsonlLogCallback(log_path, {"stage": "dpo"})])
        if measure_pairs:  # the training pairs as TRL prepared them (tokenized, reference log-probs added)
            trainer.eval_dataset = {"pairs": trainer.train_dataset}
        if quiet:
            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        measured = trainer.evaluate() if measure_pairs else {}
        if trainer.is_world_process_zero():
            trainer.save_model(str(output_dir / "final"))  # the tokenizer too (it is the processing class)
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    steps = [r for r in history if "rewards/margins" in r]
    summary = pairs.summary() if isinstance(pairs, PreferencePairs) else {"pairs": len(pairs)}
    metrics = {**summary, "pairs_trained": len(trainer.train_dataset), "steps": trainer.state.global_step,
               "train_seconds": train_seconds}
    for key in METRIC_KEYS:
        name = "train_" + key.replace("/", "_")
        metrics[name + "_first"] = steps[0].get(key) if steps else None
        metrics[name + "_last"] = steps[-1].get(key) if steps else None
    # TRL logs its evaluation's DPO metrics as eval_<key> (the Trainer's own as eval_pairs_<key>).
    after = next((r for r in reversed(history) if "eval_rewards/margins" in r), {}) if measure_pairs else None
    if after is not None:
        for key in METRIC_KEYS:
            value = measured.get("eval_pairs_loss") if key == "loss" else after.get("eval_" + key)
            metrics["pairs_" + key.replace("/", "_")] = value
    if trainer.is_world_process_zero():
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return DpoRun(output_dir, plain_forward(trainer.model), tokenizer, metrics, train_seconds, log_path, history)


@contextlib.contextmanager
def _trl_output(show: bool):
    """TRL's bar over the reference log-probabilities follows ``$TQDM_DISABLE`` only: set it while
    progress is off. TRL 1.16 itself calls transformers' deprecated ``is_gradient_checkpointing``
    (a FutureWarning no caller can act on): ignored."""
    before = os.environ.get("TQDM_DISABLE")
    if not show:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        if before is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = before


def evaluate_dpo(policy, tokenizer, start_policy, scorer: RewardScorer, prompts: list, preset: Preset, seed: int = 0,
                 algo: str = "dpo", gold_fn: Callable | None = gold_reward) -> pd.DataFrame:
    """The online methods' held-out evaluation (:func:`~starling_lib.policy.study.evaluate_policy`:
    gold and proxy reward, KL to ``start_policy``, length per prompt) of a DPO policy, at evaluation
    seed ``1000 + seed`` as :func:`~starling_lib.policy.study.compare_algorithms` samples run ``seed``,
    with columns ``algo`` and ``seed`` so the rows join that function's ``evals``."""
    frame = evaluate_policy(policy, tokenizer, start_policy, scorer, prompts, preset, seed=1000 + seed, gold_fn=gold_fn)
    return frame.assign(algo=algo, seed=seed)
