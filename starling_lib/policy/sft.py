"""Supervised fine-tuning (SFT) of the policy on ranked answers: the starting point of RL.

What it is for: Starling-LM-7B-alpha was tuned from OpenChat 3.5, a model already fine-tuned on
chat data; the tiny policy gets the same kind of start here, learning to answer tiny-world (or
Nectar) prompts before APA / PPO push it toward a reward model.

Training is TRL's ``SFTTrainer`` on conversational prompt-completion examples
(:func:`sft_examples`) with ``completion_only_loss=True``: the prompt is rendered by the
tokenizer's chat template with the generation prompt (OpenChat: ``"<s>GPT4 Correct User: ...
<|end_of_turn|>GPT4 Correct Assistant:"``), and only the tokens after it, the answer and the
closing ``<|end_of_turn|>`` (the eos), are trained, so the policy learns to answer and to stop.

Outputs under ``output_dir``: ``final/`` (model + tokenizer; read it back with
:func:`~starling_lib.policy.pipeline.load_saved_policy`), ``log.jsonl`` (one JSON object per logging
step) and ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import PrinterCallback
from trl import SFTConfig, SFTTrainer

from starling_lib.config import Preset
from starling_lib.data.chat import prompt_to_messages
from starling_lib.models import quiet_transformers
from starling_lib.paths import runs_dir
from starling_lib.precision import resolve_device, resolve_precision, trainer_precision_args
from starling_lib.progress import progress_enabled
from starling_lib.policy.pipeline import load_policy
from starling_lib.reward.train import JsonlLogCallback, RewardRun

ANSWER_CHOICES = ("all", "best")


def sft_examples(rows: list[dict], answers: str = "all", max_prompts: int | None = None) -> list[dict]:
    """TRL conversational prompt-completion examples from Nectar-format rows.

    ``answers="all"``: one example per answer of each row; ``"best"``: the rank-1 (lowest rank)
    answer only. Each example is ``{"prompt": [messages], "completion": [{"role": "assistant", ...}]}``.
    """
    if answers not in ANSWER_CHOICES:
        raise ValueError(f"answers must be one of {ANSWER_CHOICES}, got {answers!r}")
    examples = []
    for i, row in enumerate(rows[:max_prompts]):
        try:
            prompt = prompt_to_messages(row["prompt"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"row {i}: field 'prompt' is missing or not a Nectar prompt: {exc}") from None
        if prompt[-1]["role"] != "user":
            raise ValueError(f"row {i}: field 'prompt' must end on a Human turn (the generation point)")
        candidates = row.get("answers")
        if not candidates:
            raise ValueError(f"row {i}: field 'answers' is missing or empty")
        for j, a in enumerate(candidates):
            if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
                raise ValueError(f"row {i}: field 'answers[{j}].answer' must be a string")
            if answers == "best" and a.get("rank") is None:
                raise ValueError(f"row {i}: field 'answers[{j}].rank' is missing (needed for answers='best')")
        if answers == "best":
            candidates = [min(candidates, key=lambda a: float(a["rank"]))]
        examples += [{"prompt": prompt, "completion": [{"role": "assistant", "content": a["answer"]}]}
                     for a in candidates]
    return examples


def sft_arguments(preset: Preset, output_dir: Path, **overrides) -> SFTConfig:
    """The TRL ``SFTConfig`` that ``preset.sft`` (and ``preset.runtime``) stand for."""
    cfg, device = preset.sft, resolve_device(preset.runtime)
    kwargs = dict(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs, lr_scheduler_type="linear", max_length=cfg.max_length,
        completion_only_loss=True, save_strategy="no", logging_steps=1, seed=preset.runtime.seed,
        data_seed=preset.runtime.seed, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=device.type == "cpu", **trainer_precision_args(resolve_precision(preset.runtime, device)),
        # TRL turns checkpointing on by default; on a tiny model it only costs time (pass True for 7B).
        # The new name: transformers 5 warns about TRL's default for the old ``gradient_checkpointing``.
        activation_checkpointing=False,
        ddp_backend="gloo" if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


def build_sft_trainer(preset: Preset, examples: list[dict], output_dir: Path, model, tokenizer,
                      callbacks: list | None = None, **training_overrides) -> SFTTrainer:
    """An ``SFTTrainer`` over ``examples``, its dataset already tokenized (``input_ids``, ``labels``)."""
    args = sft_arguments(preset, output_dir, **training_overrides)
    return SFTTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(examples),
                      processing_class=tokenizer, callbacks=callbacks)


@contextlib.contextmanager
def quiet_trainer_logs():
    """:func:`quiet_transformers`, and no ``datasets`` progress bars (SFTTrainer tokenizes with ``map``)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        with quiet_transformers():
            yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


class SftRun(RewardRun):
    """What :func:`train_sft` returns: the fields of a reward-model run (output folder, model,
    tokenizer, metrics, seconds, log path, history)."""


def train_sft(preset: Preset, rows: list[dict], output_dir: str | Path | None = None, *, model=None, tokenizer=None,
              quiet: bool = True, progress: bool | None = None, **training_overrides) -> SftRun:
    """Fine-tune the policy on the answers of ``rows`` (Nectar format) with ``preset.sft``.

    Uses the first ``preset.sft.n_prompts`` rows, ``preset.sft.answers`` of each. ``model`` and
    ``tokenizer`` default to :func:`load_policy`. ``progress``: the Trainer's progress bar (steps,
    loss; ``None``: :func:`starling_lib.progress.progress_enabled`). Extra keyword arguments override
    ``SFTConfig`` fields.
    """
    cfg = preset.sft
    output_dir = Path(output_dir) if output_dir is not None else runs_dir() / "sft" / preset.name
    output_dir.mkdir(parents=True, exist_ok=True)
    examples = sft_examples(rows, cfg.answers, max_prompts=cfg.n_prompts)
    if model is None or tokenizer is None:
        model, tokenizer = load_policy(preset)
    log_path = output_dir / "log.jsonl"
    log_path.unlink(missing_ok=True)
    with quiet_trainer_logs() if quiet else contextlib.nullcontext():
        trainer = build_sft_trainer(preset, examples, output_dir, model, tokenizer,
                                    callbacks=[JsonlLogCallback(log_path, {"stage": "sft"})],
                                    **{"disable_tqdm": not progress_enabled(progress), **training_overrides})
        if quiet:
            trainer.remove_callback(PrinterCallback)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        if trainer.is_world_process_zero():
            trainer.save_model(str(output_dir / "final"))  # the tokenizer too (it is the processing class)
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    losses = [r["loss"] for r in history if "loss" in r]
    eos = tokenizer.eos_token_id
    metrics = {
        "examples": len(examples), "prompts": len(rows[:cfg.n_prompts]), "answers": cfg.answers,
        "steps": trainer.state.global_step, "train_seconds": train_seconds,
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        # Examples cut at max_length lose their final eos and never teach the policy to stop.
        "examples_ending_in_eos": sum(ex["labels"][-1] == eos for ex in trainer.train_dataset),
    }
    if trainer.is_world_process_zero():
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return SftRun(output_dir, plain_forward(trainer.model), tokenizer, metrics, train_seconds, log_path, history)


def plain_forward(model):
    """The model with its class's ``forward`` back: training leaves two instance-level wrappers on it,
    accelerate's bf16 autocast (which would keep later forwards in bf16) and TRL's fused LM head."""
    vars(model).pop("forward", None)
    vars(model).pop("_original_forward", None)
    return model


@torch.no_grad()
def completion_log_likelihood(model, tokenizer, examples: list[dict], batch_size: int = 32,
                              device: str | torch.device = "auto") -> np.ndarray:
    """Mean log-probability per completion token (the closing eos included) of each example, ``(N,)``.

    Tokenized as ``SFTTrainer`` does: the prompt with the generation prompt, then prompt + completion.
    """
    device = resolve_device(device)
    model, was_training = model.to(device), model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for start in range(0, len(examples), batch_size):
        seqs = []
        for ex in examples[start:start + batch_size]:
            prompt = tokenizer.apply_chat_template(ex["prompt"], add_generation_prompt=True, return_dict=True)
            full = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], return_dict=True)
            seqs.append((full["input_ids"], len(prompt["input_ids"])))
        width = max(len(ids) for ids, _ in seqs)
        input_ids = torch.full((len(seqs), width), pad)
        attention_mask = torch.zeros((len(seqs), width), dtype=torch.long)
        target = torch.zeros((len(seqs), width), dtype=torch.bool)
        for row, (ids, n_prompt) in enumerate(seqs):  # right padding: positions line up with the tokens
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
            target[row, n_prompt:len(ids)] = True
        input_ids, attention_mask, target = input_ids.to(device), attention_mask.to(device), target.to(device)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # (B, T, V)
        logp = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        mask = target[:, 1:]
        out.extend(((logp * mask).sum(1) / mask.sum(1)).tolist())
    model.train(was_training)
    return np.array(out)
