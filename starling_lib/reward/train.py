"""Reward-model training on ``transformers.Trainer`` with a K-wise or pairwise loss, and scoring.

What it is for: ``starling rm train`` and notebook 02 train reward models here. One micro-batch
holds ``prompts_per_batch`` prompts with **all** their answers (:mod:`.collate`); the model
encodes each answer once, the rewards are laid out ``(B, K)`` best first, and the loss of
:func:`starling_lib.losses.ranking_loss` is taken on them: ``kwise`` (Plackett-Luce, the
Starling-RM objective), ``pairwise`` (all K(K-1)/2 pairs) or ``adjacent`` (K-1 pairs).

Everything else is the ``Trainer``'s: AdamW and the scheduler, mixed precision (``runtime.dtype``,
resolved by :mod:`starling_lib.precision`: bf16 only where the hardware has it), gradient accumulation, checkpoints every ``save_steps`` with optimizer, scheduler,
RNG and data-order state (so a killed run resumed from its last checkpoint ends with the same
weights as an uninterrupted one), multi-process data parallelism when launched with ``torchrun``
or ``accelerate launch`` (gloo on CPU, NCCL on GPUs), and DeepSpeed / FSDP through config files
(``configs/``, see its README).

Outputs under ``output_dir``: ``checkpoint-*/``, ``final/`` (model + tokenizer), ``log.jsonl``
(one JSON object per logging step, then the evaluation), ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, PrinterCallback, TrainerCallback,
                          TrainingArguments)
from transformers.trainer_utils import get_last_checkpoint

from starling_lib.config import Preset, RewardConfig
from starling_lib.data.chat import LLAMA2_TEMPLATE
from starling_lib.losses import LOSS_TYPES, ranking_loss
from starling_lib.models import (build_tiny_assets, load_reward_model, minilm_reward_model, quiet_transformers,
                                 tiny_causal_lm)
from starling_lib.paths import runs_dir, saved_model_dir
from starling_lib.precision import autocast_context, resolve_device, resolve_precision, runtime_dtype, trainer_precision_args
from starling_lib.progress import progress_enabled
from starling_lib.reward.collate import ListwiseCollator, scatter_rewards
from starling_lib.reward.metrics import ranking_metrics


# ----------------------------------------------------------------------------------------------
# Backbones

def build_backbone(preset: Preset, backbone: str | None = None):
    """(model, tokenizer) for ``preset.reward.backbone`` (see :class:`RewardConfig`), freshly initialised head."""
    backbone = preset.reward.backbone if backbone is None else backbone
    seed = preset.runtime.seed
    if backbone == "minilm":
        return minilm_reward_model(seed=seed)
    if backbone.startswith("starling-rm"):
        from starling_lib.reward.starling_rm import STARLING_RM_TEMPLATE, StarlingRewardModel

        trunk_name = backbone.partition(":")[2] or "tiny"
        if trunk_name == "tiny":
            tokenizer = _tiny_tokenizer(preset)
            trunk = tiny_causal_lm(preset.reward_model, tokenizer, seed=seed + 1)
        else:
            tokenizer = _pretrained_tokenizer(trunk_name)
            trunk = transformers.AutoModelForCausalLM.from_pretrained(trunk_name)
        tokenizer.chat_template = STARLING_RM_TEMPLATE  # the format of the published checkpoint
        return StarlingRewardModel(trunk, pad_token_id=tokenizer.pad_token_id), tokenizer
    if backbone != "tiny":
        raise ValueError(f"reward.backbone must be 'tiny', 'minilm' or 'starling-rm[:TRUNK]', got {backbone!r}")
    if preset.reward_model.name_or_path:
        tokenizer = _pretrained_tokenizer(preset.reward_model.name_or_path)
        return load_reward_model(preset.reward_model, tokenizer, seed=seed), tokenizer
    paths = build_tiny_assets(preset, runs_dir() / "assets" / preset.name)
    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(paths["reward"]), AutoTokenizer.from_pretrained(
            paths["tokenizer"])


def _tiny_tokenizer(preset: Preset):
    return AutoTokenizer.from_pretrained(build_tiny_assets(preset, runs_dir() / "assets" / preset.name)["tokenizer"])


def _pretrained_tokenizer(name: str):
    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = LLAMA2_TEMPLATE  # Starling-RM's format
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token  # Starling-RM pads with unk
    return tokenizer


# ----------------------------------------------------------------------------------------------
# Trainer

def listwise_rewards(model, batch: dict, length_buckets: int = 4) -> torch.Tensor:
    """``(B, K)`` rewards, best first, of the batch's ``(N, T)`` answers.

    A listwise batch pads every answer of every prompt to the longest one (on the tiny world half
    the positions are padding). With right padding, the answers are sorted by length and run in up
    to ``length_buckets`` forwards, each cut to its own longest answer; each answer's reward is the
    same as in one forward up to float rounding (its own tokens, positions and mask are unchanged).
    One forward under DDP (which allows one forward per backward) or with left padding.
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    n = input_ids.shape[0]
    right_padded = bool(attention_mask[:, 0].all())
    if length_buckets <= 1 or n < 2 * length_buckets or not right_padded or isinstance(
            model, torch.nn.parallel.DistributedDataParallel):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (N, 1)
        return scatter_rewards(logits.float(), batch["answer_mask"])
    lengths = attention_mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    flat = []
    for group in order.tensor_split(length_buckets):
        width = int(lengths[group].max())
        flat.append(model(input_ids=input_ids[group, :width], attention_mask=attention_mask[group, :width]).logits.float())
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=order.device)
    return scatter_rewards(torch.cat(flat).reshape(-1)[inverse], batch["answer_mask"])  # back in the batch's order


class ListwiseRewardTrainer(transformers.Trainer):
    """``Trainer`` whose loss is :func:`ranking_loss` of the listwise rewards of a batch."""

    def __init__(self, *args, loss_type: str = "kwise", top_k: int | None = None, margin: float = 0.0, **kwargs):
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        super().__init__(*args, **kwargs)
        self.loss_type, self.top_k, self.margin = loss_type, top_k, margin
        # Our loss is a mean per micro-batch: let the Trainer divide it by the accumulation steps.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = listwise_rewards(model, inputs)
        loss = ranking_loss(rewards, self.loss_type, inputs["answer_mask"], top_k=self.top_k, margin=self.margin)
        return (loss, {"rewards": rewards}) if return_outputs else loss


class JsonlLogCallback(TrainerCallback):
    """Appends every Trainer log (loss, learning rate, grad norm, epoch) to ``path`` as JSON lines."""

    def __init__(self, path: Path, extra: dict | None = None):
        self.path, self.extra, self.started = Path(path), extra or {}, time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"event": "train", "step": state.global_step, "epoch": state.epoch,
                      "elapsed_s": round(time.perf_counter() - self.started, 3), **self.extra, **logs}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def _trim_log(path: Path, step: int) -> None:
    """Drop training-log lines past ``step``: a resumed run logs those steps again."""
    if not path.is_file():
        return
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [r for r in records if r.get("event") == "train" and r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def training_arguments(cfg: RewardConfig, output_dir: Path, preset: Preset, **overrides) -> TrainingArguments:
    """The ``TrainingArguments`` a :class:`RewardConfig` stands for."""
    device = resolve_device(preset.runtime)
    kwargs = dict(
        output_dir=str(output_dir), per_device_train_batch_size=cfg.prompts_per_batch,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio, lr_scheduler_type=cfg.lr_scheduler,
        num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, logging_steps=cfg.logging_steps,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit,
        seed=preset.runtime.seed, data_seed=preset.runtime.seed, report_to="none",
        disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=device.type == "cpu", **trainer_precision_args(resolve_precision(preset.runtime, device)),
        deepspeed=cfg.deepspeed,
        # Under torchrun (WORLD_SIZE > 1) CPU processes talk through gloo; alone, no process group.
        ddp_backend="gloo" if device.type == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
    )
    if cfg.gradient_checkpointing:
        kwargs["gradient_checkpointing"] = True
    if cfg.optim is not None:
        kwargs["optim"] = cfg.optim
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


@dataclass
class RewardRun:
    """What :func:`train_reward_model` returns."""

    output_dir: Path
    model: torch.nn.Module
    tokenizer: object
    metrics: dict
    train_seconds: float
    log_path: Path
    history: list[dict] = field(default_factory=list)


def train_reward_model(preset: Preset, train_examples: list[dict], eval_examples: list[dict] | None = None,
                       output_dir: str | Path | None = None, *, model=None, tokenizer=None, resume: bool = False,
                       callbacks: list | None = None, save_final: bool = True, quiet: bool = True,
                       progress: bool | None = None, **training_overrides) -> RewardRun:
    """Train a reward model on listwise examples with ``preset.reward`` and evaluate it.

    ``model``/``tokenizer`` default to :func:`build_backbone`. ``resume=True`` continues from the
    latest ``checkpoint-*`` in ``output_dir`` (a fresh run when there is none). ``quiet`` keeps
    the Trainer's own printing off (the log file has everything); ``progress`` shows the Trainer's
    progress bar (steps, loss; :func:`starling_lib.progress.progress_enabled` decides ``None``). Extra
    keyword arguments override ``TrainingArguments`` fields.
    """
    cfg = preset.reward
    output_dir = Path(output_dir) if output_dir is not None else runs_dir() / "rm" / f"{preset.name}-{cfg.loss_type}"
    output_dir.mkdir(parents=True, exist_ok=True)
    # Arguments first: under DeepSpeed ZeRO-3 / FSDP they decide how a large trunk is loaded.
    args = training_arguments(cfg, output_dir, preset,
                              **{"disable_tqdm": not progress_enabled(progress), **training_overrides})
    if model is None or tokenizer is None:
        model, tokenizer = build_backbone(preset)
    if not isinstance(model, transformers.PreTrainedModel) and "ddp_find_unused_parameters" not in training_overrides:
        args.ddp_find_unused_parameters = False  # every parameter of our wrappers gets a gradient
    log_path = output_dir / "log.jsonl"
    checkpoint = get_last_checkpoint(str(output_dir)) if resume and output_dir.is_dir() else None
    if args.process_index == 0:
        if checkpoint is None:
            log_path.unlink(missing_ok=True)
        else:
            _trim_log(log_path, int(Path(checkpoint).name.rsplit("-", 1)[1]))
    collator = ListwiseCollator(tokenizer, max_length=cfg.max_length)
    trainer = ListwiseRewardTrainer(
        model=model, args=args, train_dataset=list(train_examples), data_collator=collator,
        processing_class=tokenizer, loss_type=cfg.loss_type, top_k=cfg.top_k, margin=cfg.margin,
        callbacks=[JsonlLogCallback(log_path, {"loss_type": cfg.loss_type})] + list(callbacks or []))
    if quiet:
        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with quiet_transformers() if quiet else contextlib.nullcontext():
        trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    model = trainer.model
    metrics = {"loss_type": cfg.loss_type, "train_prompts": len(train_examples), "train_seconds": train_seconds,
               "steps": trainer.state.global_step, "truncated": summed_over_processes(collator.truncated)}
    if eval_examples:
        metrics.update(evaluate_reward_model(model, tokenizer, eval_examples, preset))
    if trainer.is_world_process_zero():
        with log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"event": "eval", "step": trainer.state.global_step, **_jsonable(metrics)}) + "\n")
        (output_dir / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2) + "\n")
        if save_final:
            with quiet_transformers() if quiet else contextlib.nullcontext():
                trainer.save_model(str(output_dir / "final"))
            if not isinstance(model, transformers.PreTrainedModel):
                from starling_lib.reward.starling_rm import StarlingRewardModel, save_starling_rm

                if isinstance(model, StarlingRewardModel):  # the record load_trained needs to rebuild it
                    save_starling_rm(model, output_dir / "final", weights=False)
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    return RewardRun(output_dir, model, tokenizer, metrics, train_seconds, log_path, history)


def summed_over_processes(counts: dict[str, int]) -> dict[str, int]:
    """``counts`` added up over all processes of a torchrun job (each collator sees its own share of
    the batches); the counts themselves when there is no process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(counts)
    total = torch.tensor(list(counts.values()), dtype=torch.long)
    dist.all_reduce(total)
    return dict(zip(counts, total.tolist()))


def _jsonable(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()
            if not isinstance(v, (np.ndarray, dict)) or k == "truncated"}


# ----------------------------------------------------------------------------------------------
# Scoring and evaluation

@torch.no_grad()
def score_examples(model, tokenizer, examples: list[dict], max_length: int = 256, prompts_per_batch: int = 16,
                   device: str | torch.device = "auto", dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """Rewards of every answer: ``scores``, ``ranks`` (and ``gold_rewards``) as ``(N, K)`` arrays,
    answers best first by the given ranks, NaN where absent."""
    device = resolve_device(device)
    model = model.to(device)
    was_training = model.training
    model.eval()
    collator = ListwiseCollator(tokenizer, max_length=max_length)
    k = max(len(e["answers"]) for e in examples)
    out = {name: np.full((len(examples), k), np.nan) for name in ("scores", "ranks")}
    if all("gold_rewards" in e for e in examples):
        out["gold_rewards"] = np.full((len(examples), k), np.nan)
    for start in range(0, len(examples), prompts_per_batch):
        batch = collator(examples[start:start + prompts_per_batch])
        batch = {name: value.to(device) for name, value in batch.items()}
        with autocast_context(device, dtype):
            rewards = listwise_rewards(model, batch)
        rows = slice(start, start + rewards.shape[0])
        width = rewards.shape[1]
        mask = batch["answer_mask"].cpu().numpy()
        out["scores"][rows, :width] = np.where(mask, rewards.float().cpu().numpy(), np.nan)
        out["ranks"][rows, :width] = batch["ranks"].cpu().numpy()
        if "gold_rewards" in out:
            out["gold_rewards"][rows, :width] = batch["gold_rewards"].cpu().numpy()
    model.train(was_training)
    return out


def evaluate_reward_model(model, tokenizer, examples: list[dict], preset: Preset, per_prompt: bool = False) -> dict:
    """:func:`ranking_metrics` of the model's rewards on ``examples`` (held-out prompts)."""
    scored = score_examples(model, tokenizer, examples, max_length=preset.reward.max_length,
                            prompts_per_batch=max(preset.reward.prompts_per_batch, 8),
                            device=preset.runtime.device, dtype=runtime_dtype(preset.runtime))
    metrics = ranking_metrics(scored["scores"], scored["ranks"], scored.get("gold_rewards"), per_prompt=per_prompt)
    return {f"eval_{k}" if not k.startswith("eval_") and k != "per_prompt" else k: v for k, v in metrics.items()}


def load_trained(model_dir: str | Path):
    """(model, tokenizer) saved by :func:`train_reward_model` (its ``final/`` or a checkpoint folder)."""
    model_dir = saved_model_dir(model_dir)
    if not (model_dir / "config.json").is_file() and not any(model_dir.glob("*.bin")):
        raise FileNotFoundError(f"{model_dir}: no saved reward model (config.json / weights) here")
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if (model_dir / "starling_rm.json").is_file():
            from starling_lib.reward.starling_rm import load_saved_starling_rm

            return load_saved_starling_rm(model_dir), tokenizer
        return AutoModelForSequenceClassification.from_pretrained(model_dir), tokenizer
