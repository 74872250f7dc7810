"""The policy-tuning loop: rollout, reward, advantages, update; APA, PPO, AWR or P3O in one harness.

What it is for: ``starling apa train`` and notebook 03 call :func:`train_policy`. One iteration:

1. **Rollout** (:mod:`starling_lib.policy.rollout`): ``prompts_per_iteration`` prompts, one sampled
   response each; log-probabilities under the sampling policy and the frozen initial policy,
   critic values, entropy.
2. **Reward**: the reward model's score of each response, optionally centred and scaled by the
   running statistics of all scores seen, and clipped; a per-token KL penalty
   ``−β (log π_old − log π_init)`` when ``kl_coef > 0``; the score lands on the last token.
3. **Advantages**: GAE(γ, λ) against the critic's values, whitened over the batch (pooled over
   processes).
4. **Update**: ``epochs_per_rollout`` passes over the batch in minibatches (split into
   ``grad_accum`` micro-batches): the policy loss of ``algo`` plus ``vf_coef ×`` the clipped value
   loss; gradients clipped; one AdamW step per minibatch (learning rate ``constant`` or ``cosine``
   down to ``lr_min`` over the run's steps, :func:`scheduled_lr`).

The policy losses (:mod:`starling_lib.losses`):

- ``apa`` with ``apa_anchor="init"``: ``(log π_θ − log π_init − Â/λ)²``, the paper's and the
  official code's (microsoft/RLHF-APA) form; the anchor itself keeps the policy near its start, so
  ``kl_coef`` is usually 0.
- ``apa`` with ``apa_anchor="rollout"``: ``(log π_θ − log π_old − Â)²`` with ``apa_lambda=1``, the
  Starling fork's form; staying near the start is then the job of the KL penalty in the reward
  (set ``kl_coef``).
- ``ppo``: clipped surrogate against ``π_old`` with the KL penalty in the reward.
- ``awr``: advantage-weighted log-likelihood.
- ``p3o`` (Wu et al. 2023): two responses per prompt (rows ``2k``, ``2k+1`` of the rollout, kept
  in one micro-batch), no critic and no GAE: each response's KL-penalised sequence reward
  ``r̂ = score − β Σ_t log π_old/π_init`` goes to :func:`starling_lib.losses.p3o_loss`, whose signal
  is the pair's difference ``r̂(y1) − r̂(y2)``, with trajectory-level clipped ratios.

The KL coefficient β is fixed (``kl_coef``) or, with ``kl_target``, Ziegler et al.'s adaptive
controller (:mod:`starling_lib.policy.kl_control`), updated after each iteration from its mean KL
and logged as ``kl_coef``.

Determinism and resume: iteration ``i`` draws its prompts and its sampling noise from seeds
derived from ``(runtime.seed, i)``, so a run stopped and resumed from a checkpoint repeats the
uninterrupted run exactly. A checkpoint holds the trainable parameters, the optimiser, the running
reward statistics and the iteration, and the KL controller's β (``kl_controller.json``); the frozen
rest is rebuilt from the start model.

Processes (:mod:`accelerate`): one process without a launcher, as a notebook runs it. Under
``torchrun`` or ``accelerate launch`` each process samples and scores its share of the prompts with
its own models (the unwrapped policy generates), and an :class:`accelerate.Accelerator` prepares the
trainable network and its optimiser: DDP by default (gloo on CPU, NCCL on GPU), FSDP2 or DeepSpeed
ZeRO with an ``accelerate`` config file (``configs/policy_*.yaml``). The reference and the reward
model stay outside it (forward only, bf16 in a bf16 run), and so do the frozen blocks outside the
optimiser. A minibatch's micro-batches accumulate under ``no_sync`` and its last backward averages
the gradients over the processes; reward statistics, whitening and the log are pooled with
accelerate's ``gather`` / ``reduce``. ``prompts_per_iteration`` must split evenly over the
processes. Checkpoints: our own format under one process and DDP (all weights and optimiser state
are on every process: small, exact, readable without accelerate); ``accelerator.save_state`` under
FSDP / DeepSpeed, whose state is sharded (untested here: no GPU).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, gather, reduce

from starling_lib.config import PolicyConfig, Preset
from starling_lib.losses import (P3O_CLIPPING, POLICY_ALGOS, apa_loss, awr_loss, gae_advantages, kl_penalized_rewards,
                                 masked_mean, masked_whiten, p3o_loss, ppo_loss, sequence_logprobs, value_loss)
from starling_lib.policy.kl_control import KLController
from starling_lib.policy.models import (ActorCritic, add_lora, freeze_all_but_last, frozen_reference, is_lora,
                                        reference_context)
from starling_lib.policy.rollout import (Rollout, RewardScorer, RunningMoments, decode_responses, encode_prompts,
                                         forward_tokens, gold_scores, sample_responses)
from starling_lib.precision import autocast_context, resolve_device, resolve_precision
from starling_lib.progress import progress_bar

CHECKPOINT_FORMAT = 1
LR_SCHEDULERS = ("constant", "cosine")


def check_config(cfg: PolicyConfig) -> None:
    """Raise ``ValueError`` naming the field for settings the loop cannot run with."""
    problems = []
    if cfg.algo not in POLICY_ALGOS:
        problems.append(f"policy.algo must be one of {POLICY_ALGOS}, got {cfg.algo!r}")
    if cfg.apa_anchor not in ("init", "rollout"):
        problems.append(f"policy.apa_anchor must be 'init' or 'rollout', got {cfg.apa_anchor!r}")
    if cfg.critic not in ("separate", "shared"):
        problems.append(f"policy.critic must be 'separate' or 'shared', got {cfg.critic!r}")
    if cfg.apa_lambda <= 0:
        problems.append(f"policy.apa_lambda must be > 0, got {cfg.apa_lambda}")
    if cfg.minibatch_size % cfg.grad_accum:
        problems.append(f"policy.minibatch_size ({cfg.minibatch_size}) must be a multiple of policy.grad_accum "
                        f"({cfg.grad_accum})")
    for name in ("iterations", "prompts_per_iteration", "minibatch_size", "grad_accum", "epochs_per_rollout",
                 "max_new_tokens", "max_prompt_length", "save_every"):
        if getattr(cfg, name) < 1:
            problems.append(f"policy.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.lora_r and cfg.unfreeze_last_n:
        problems.append("policy.lora_r and policy.unfreeze_last_n are alternatives; set one of them")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            problems.append(f"policy.{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.adam_eps <= 0:
        problems.append(f"policy.adam_eps must be > 0, got {cfg.adam_eps}")
    if cfg.weight_decay < 0:
        problems.append(f"policy.weight_decay must be >= 0, got {cfg.weight_decay}")
    if cfg.lr_scheduler not in LR_SCHEDULERS:
        problems.append(f"policy.lr_scheduler must be one of {LR_SCHEDULERS}, got {cfg.lr_scheduler!r}")
    if cfg.lr_min < 0 or cfg.lr_min > min(cfg.learning_rate, cfg.critic_learning_rate or cfg.learning_rate):
        problems.append(f"policy.lr_min must be >= 0 and at most the learning rates, got {cfg.lr_min}")
    if cfg.kl_target is not None:
        if not cfg.kl_target > 0:
            problems.append(f"policy.kl_target must be > 0 (or None: a fixed kl_coef), got {cfg.kl_target}")
        if cfg.kl_coef <= 0:
            problems.append(f"policy.kl_target needs policy.kl_coef > 0 as the initial β (β = 0 never moves), "
                            f"got {cfg.kl_coef}")
    if cfg.kl_horizon < 1:
        problems.append(f"policy.kl_horizon must be >= 1 (responses), got {cfg.kl_horizon}")
    if cfg.algo == "p3o":
        if cfg.p3o_clipping not in P3O_CLIPPING:
            problems.append(f"policy.p3o_clipping must be one of {P3O_CLIPPING}, got {cfg.p3o_clipping!r}")
        if cfg.p3o_weight_clip is not None and cfg.p3o_weight_clip < 1:
            problems.append(f"policy.p3o_weight_clip must be >= 1 or None, got {cfg.p3o_weight_clip}")
        if cfg.grad_accum >= 1 and (cfg.minibatch_size // cfg.grad_accum) % 2:
            problems.append(f"policy.algo=p3o keeps a prompt's two responses in one micro-batch: policy.minibatch_size "
                            f"/ policy.grad_accum ({cfg.minibatch_size} / {cfg.grad_accum}) must be even")
    if problems:
        raise ValueError("; ".join(problems))


# ----------------------------------------------------------------------------------------------
# Processes

SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def make_accelerator(runtime) -> Accelerator:
    """The run's :class:`accelerate.Accelerator`: one process without a launcher; DDP under
    ``torchrun`` / ``accelerate launch`` (gloo on CPU, NCCL on GPU); FSDP or DeepSpeed when an
    ``accelerate`` config file says so. ``runtime.device="cpu"`` keeps every process on the CPU.

    Gradient accumulation is the loop's own (``gradient_accumulation_steps`` stays 1; see :func:`update`),
    and mixed precision is :mod:`starling_lib.precision`'s autocast, so a launcher that asks for none
    changes nothing in one process."""
    cpu = resolve_device(runtime).type == "cpu"
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # One process: forget the state an earlier Trainer or Accelerator of this interpreter left
        # (its mixed precision, its device), as transformers.TrainingArguments does itself.
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, device_placement=False)


def _all_sum(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """``tensor`` summed over processes (through accelerate; on the collective's device and back)."""
    if world == 1:
        return tensor
    return reduce(tensor.to(_collective_device()), "sum").to(tensor.device)


def _all_gather_1d(tensor: torch.Tensor, world: int) -> torch.Tensor:
    """Every process's ``tensor`` concatenated, in rank order (through accelerate)."""
    if world == 1:
        return tensor
    return gather(tensor.contiguous().to(_collective_device())).to(tensor.device)


def _collective_device() -> torch.device:
    return PartialState().device  # NCCL reduces CUDA tensors only; gloo CPU ones


# ----------------------------------------------------------------------------------------------
# Setup

def build_actor_critic(policy, cfg: PolicyConfig) -> tuple[ActorCritic, torch.nn.Module | None]:
    """(actor-critic with only the configured parts trainable, frozen reference or None for LoRA)."""
    if cfg.lora_r:
        policy = add_lora(policy, cfg.lora_r, cfg.lora_alpha, cfg.lora_target_modules)
    reference = frozen_reference(policy)
    if cfg.unfreeze_last_n:
        freeze_all_but_last(policy, cfg.unfreeze_last_n)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    # P3O has no critic: no trunk copy, only the shared head, zero-initialised and never trained.
    model = ActorCritic(policy, critic="shared" if cfg.algo == "p3o" else cfg.critic)
    return model, reference


def store_dtypes(model: ActorCritic, reference: torch.nn.Module | None, reward_model: torch.nn.Module,
                 dtype: torch.dtype | None) -> None:
    """Storage dtypes, in place: what trains in fp32 (Adam's master weights: at a learning rate of
    1e-6 a step is below bf16's resolution and would round away), and, in a bf16 run only, what never
    trains in bf16: the reward model and the frozen parameters of policy and critic (the blocks below
    ``unfreeze_last_n``, a LoRA base). Each reference parameter takes the dtype of the policy's
    parameter of the same name, so the reference computes exactly what the start policy computes.
    Under bf16 autocast a matmul reads its weights in bf16 either way: this halves their memory. In an
    fp32 run (every CPU by default) nothing changes."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
            elif not p.requires_grad and dtype == torch.bfloat16:
                p.data = p.data.to(dtype)
        if reference is not None:
            own = dict(model.policy.named_parameters())
            for name, p in reference.named_parameters():
                if name in own and p.dtype != own[name].dtype:
                    p.data = p.data.to(own[name].dtype)
        if dtype == torch.bfloat16:
            reward_model.to(dtype)


@contextlib.contextmanager
def full_weights(accelerator: Accelerator, model):
    """The unwrapped actor-critic with all its weights present, for a rollout (sampling, the no-grad
    passes, a LoRA reference): DDP and ZeRO-2 hold them anyway; ZeRO-3 gathers them (as TRL's
    ``unwrap_model_for_generation`` does); FSDP1 summons them; FSDP2 unshards the root module (its
    inner units unshard themselves on each forward)."""
    plain = accelerator.unwrap_model(model)
    kind = accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield plain
    elif kind == DistributedType.FSDP and not accelerator.is_fsdp2:
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, writeback=False):
            yield plain
    elif kind == DistributedType.FSDP:
        plain.unshard()
        try:
            yield plain
        finally:
            plain.reshard()
    else:
        yield plain


def _settle_deepspeed_config(accelerator: Accelerator, cfg: PolicyConfig) -> None:
    """Under DeepSpeed: the values its config leaves to the loop (``"auto"``) from ``cfg``, and a clear
    error where it contradicts ``cfg``. There is no dataloader for accelerate to read a batch size
    from, and DeepSpeed clips the gradients itself (the loop's clipping is then only its norm)."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    micro = cfg.minibatch_size // cfg.grad_accum
    if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":  # accelerate derives train_batch_size
        config["train_micro_batch_size_per_gpu"] = micro
    clipping = config.get("gradient_clipping", "auto")
    if clipping == "auto":
        config["gradient_clipping"] = cfg.max_grad_norm or 0.0
    elif float(clipping) != float(cfg.max_grad_norm or 0.0):
        raise ValueError(f"the DeepSpeed config clips gradients at gradient_clipping={clipping} but "
                         f"policy.max_grad_norm={cfg.max_grad_norm}; make them agree (DeepSpeed does the clipping)")


def _optimizer(model: ActorCritic, cfg: PolicyConfig) -> torch.optim.Optimizer:
    critic_ids = {id(p) for p in model.critic_parameters()}
    actor = [p for p in model.parameters() if p.requires_grad and id(p) not in critic_ids]
    critic = [p for p in model.critic_parameters() if p.requires_grad]
    groups = [{"params": actor, "lr": cfg.learning_rate, "base_lr": cfg.learning_rate},
              {"params": critic, "lr": cfg.critic_learning_rate or cfg.learning_rate,
               "base_lr": cfg.critic_learning_rate or cfg.learning_rate}]
    # AdamW: at weight_decay 0 torch's Adam and AdamW take the same branch (no decay term), the same steps.
    return torch.optim.AdamW([g for g in groups if g["params"]], betas=(cfg.adam_beta1, cfg.adam_beta2),
                             eps=cfg.adam_eps, weight_decay=cfg.weight_decay)


def scheduled_lr(cfg: PolicyConfig, base_lr: float, step: int, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``total_steps``: ``base_lr`` for
    ``constant``; for ``cosine``, ``lr_min + (base_lr − lr_min)·(1 + cos(π·step/total_steps))/2``
    (``torch.optim.lr_scheduler.CosineAnnealingLR``'s closed form, as the authors' trlx run used):
    ``base_lr`` at the first step, approaching ``lr_min`` at the last. A function of the step alone,
    so a resumed run needs no scheduler state to continue exactly."""
    if cfg.lr_scheduler == "constant" or total_steps <= 0:
        return base_lr
    return cfg.lr_min + (base_lr - cfg.lr_min) * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)) / 2


def _iteration_seed(seed: int, iteration: int, rank: int = 0) -> int:
    return (seed * 1_000_003 + iteration * 7919 + rank) % (2 ** 31)


def iteration_prompts(n_prompts: int, k: int, seed: int, iteration: int) -> np.ndarray:
    """Indices of the prompts of ``iteration`` (without replacement within an iteration)."""
    rng = np.random.default_rng([seed, iteration])
    return rng.choice(n_prompts, size=min(k, n_prompts), replace=False)


# ----------------------------------------------------------------------------------------------
# One iteration

@torch.no_grad()
def collect_rollout(model: ActorCritic, reference, tokenizer, scorer: RewardScorer, prompts: list, cfg: PolicyConfig,
                    device, dtype: torch.dtype | None, gold_fn: Callable | None = None) -> Rollout:
    """Sample, score and annotate one batch of responses (see the module docstring)."""
    timings = {}
    t0 = time.perf_counter()
    query_ids, query_mask, cut = encode_prompts(tokenizer, prompts, cfg.max_prompt_length)
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    was_training = model.training
    model.eval()
    response_ids, mask = sample_responses(model.policy, tokenizer, query_ids, query_mask, cfg.max_new_tokens,
                                          cfg.temperature, cfg.top_p, dtype)
    timings["generate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    temperature = cfg.temperature if cfg.temperature > 0 else 1.0
    with autocast_context(device, dtype):
        own = forward_tokens(model, query_ids, query_mask, response_ids, mask, temperature,
                             with_entropy=True, with_values=True)
        ref_model, context = reference_context(model.policy, reference)
        with context:
            ref = forward_tokens(ref_model, query_ids, query_mask, response_ids, mask, temperature)
    model.train(was_training)
    timings["forward_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    texts = decode_responses(tokenizer, response_ids, mask)
    scores = scorer(prompts, texts)
    gold = gold_scores(gold_fn, prompts, texts)
    timings["score_s"] = time.perf_counter() - t0
    maskf = mask.float()
    return Rollout(prompts, query_ids, query_mask, response_ids, mask, own.logprobs * maskf, ref.logprobs * maskf,
                   own.values * maskf, own.entropy * maskf, scores, texts, gold, timings, cut)


def shaped_rewards(rollout: Rollout, cfg: PolicyConfig, moments: RunningMoments, world: int = 1,
                   kl_coef: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(token rewards ``(B, R)``, the processed sequence scores ``(B,)``): normalised by the running
    statistics (updated with every process's scores first), clipped, KL-penalised with ``kl_coef``
    (``None``: ``cfg.kl_coef``; the loop passes its controller's current β)."""
    scores = rollout.scores.to(rollout.logprobs.device).float()
    if cfg.normalize_reward:
        moments.update(_all_gather_1d(scores, world).cpu())
        scores = (scores - moments.mean) / max(moments.std, 1e-8)
    if cfg.reward_clip is not None:
        scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)
    beta = cfg.kl_coef if kl_coef is None else kl_coef
    rewards = kl_penalized_rewards(scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask, beta)
    return rewards, scores


def _whiten_global(advantages: torch.Tensor, mask: torch.Tensor, world: int) -> torch.Tensor:
    maskf = mask.float()
    sums = _all_sum(torch.stack([(advantages * maskf).sum(), (advantages ** 2 * maskf).sum(), maskf.sum()]), world)
    total, total_sq, n = sums.tolist()
    mean = total / n
    var = (total_sq - n * mean ** 2) / max(n - 1, 1)
    return masked_whiten(advantages, mask, stats=(torch.tensor(mean), torch.tensor(var)))


def policy_loss(cfg: PolicyConfig, logprobs, rollout_logprobs, ref_logprobs, advantages, mask) -> torch.Tensor:
    """The configured algorithm's loss on one micro-batch (``(B, R)`` tensors)."""
    if cfg.algo == "apa":
        anchor = ref_logprobs if cfg.apa_anchor == "init" else rollout_logprobs
        return apa_loss(logprobs, anchor, advantages, mask, adv_coeff=1.0 / cfg.apa_lambda)
    if cfg.algo == "ppo":
        return ppo_loss(logprobs, rollout_logprobs, advantages, mask, cfg.cliprange)
    if cfg.algo == "p3o":
        # Rows 2k, 2k+1 are one prompt's pair; ``advantages`` holds each response's r̂ on every token.
        def pairs(token_logprobs):
            return sequence_logprobs(token_logprobs, mask).view(-1, 2)  # (B/2, 2) log π(y|x)

        return p3o_loss(pairs(logprobs), pairs(rollout_logprobs), advantages[:, 0].reshape(-1, 2), cfg.cliprange,
                        cfg.p3o_clipping, cfg.p3o_weight_clip)
    return awr_loss(logprobs, advantages, mask, cfg.awr_beta, cfg.awr_max_weight)


def minibatch_order(n: int, cfg: PolicyConfig, generator: torch.Generator) -> torch.Tensor:
    """A random order of the rollout's ``n`` responses for one epoch; for ``p3o`` a random order of
    its pairs ``(2k, 2k+1)``, each kept adjacent, so every (even) minibatch and micro-batch holds
    whole pairs."""
    if cfg.algo != "p3o":
        return torch.randperm(n, generator=generator)
    pairs = torch.randperm(n // 2, generator=generator)
    return torch.stack([2 * pairs, 2 * pairs + 1], dim=1).flatten()


def update(model: ActorCritic, optimizer, rollout: Rollout, advantages, returns, cfg: PolicyConfig, device,
           dtype: torch.dtype | None, seed: int, accelerator: Accelerator | None = None, first_step: int = 0,
           total_steps: int = 0) -> dict:
    """``epochs_per_rollout`` passes of minibatch steps; returns mean losses and PPO diagnostics
    (averaged over processes), the learning rate of the last step and the mean gradient norm before
    clipping.

    ``model`` and ``optimizer`` as ``accelerator.prepare`` returned them (``None``: plain torch, one
    process). Each optimiser step averages the gradient of its minibatch: micro-batch ``j`` of a
    minibatch adds ``len(micro_j) / len(minibatch)`` of its mean loss; all but the last micro-batch
    run under ``accelerator.no_sync`` and the last one's backward averages the gradients over the
    processes (DDP's bucketed all-reduce; FSDP's reduce-scatter; DeepSpeed's ZeRO reduction).
    ``first_step`` / ``total_steps``: where this update's steps sit in the run, for the schedule
    (:func:`scheduled_lr`)."""
    model.train()
    n = rollout.response_ids.shape[0]
    micro = cfg.minibatch_size // cfg.grad_accum
    temperature = cfg.temperature if cfg.temperature > 0 else 1.0
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
    n_micro, step, norms = 0, first_step, []
    # accelerate (and DeepSpeed) divide each backward's loss by their gradient_accumulation_steps (1
    # unless a DeepSpeed config sets it); undo that, the weights below already average.
    accumulation = accelerator.gradient_accumulation_steps if accelerator is not None else 1
    generator = torch.Generator().manual_seed(seed)
    for _ in range(cfg.epochs_per_rollout):
        order = minibatch_order(n, cfg, generator)
        for start in range(0, n, cfg.minibatch_size):
            minibatch = order[start:start + cfg.minibatch_size]
            if accelerator is not None:
                accelerator.sync_gradients = True  # the accelerated optimiser's zero_grad/step act only then
            optimizer.zero_grad(set_to_none=True)
            for group in optimizer.param_groups:
                group["lr"] = scheduled_lr(cfg, group["base_lr"], step, total_steps)
            parts = [minibatch[i:i + micro] for i in range(0, len(minibatch), micro)]
            for j, idx in enumerate(parts):
                last = j + 1 == len(parts)
                sync = contextlib.nullcontext()
                if accelerator is not None:
                    accelerator.sync_gradients = last  # DeepSpeed steps inside the last backward
                    sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                mask = rollout.mask[idx]
                # Trim right padding shared by the whole micro-batch: fewer positions to run.
                width = int(mask.sum(1).max())
                mask = mask[:, :width]
                with sync:
                    with autocast_context(device, dtype):
                        stats = forward_tokens(model, rollout.query_ids[idx], rollout.query_mask[idx],
                                               rollout.response_ids[idx, :width], mask, temperature, with_values=True)
                    old_lp, ref_lp = rollout.logprobs[idx, :width], rollout.ref_logprobs[idx, :width]
                    adv, ret = advantages[idx, :width], returns[idx, :width]
                    pl = policy_loss(cfg, stats.logprobs, old_lp, ref_lp, adv, mask)
                    if cfg.algo == "p3o":  # no critic: a zero gradient reaches its head (DDP wants every parameter used)
                        vl = 0.0 * stats.values.sum()
                    else:
                        vl = value_loss(stats.values, rollout.values[idx, :width], ret, mask, cfg.cliprange_value)
                    loss = (pl + cfg.vf_coef * vl) * len(idx) / len(minibatch)
                    if accelerator is None:
                        loss.backward()
                    else:
                        accelerator.backward(loss * accumulation if accumulation != 1 else loss)
                with torch.no_grad():
                    logratio = stats.logprobs - old_lp
                    totals["policy_loss"] += pl.item()
                    totals["value_loss"] += vl.item()
                    totals["approx_kl"] += masked_mean(0.5 * logratio ** 2, mask).item()
                    totals["clipfrac"] += masked_mean(((logratio.exp() - 1).abs() > cfg.cliprange).float(), mask).item()
                    n_micro += 1
            # Every parameter (frozen ones have no gradient): FSDP clips through its own method only then.
            # Without clipping, max_norm=inf only measures the norm (the gradients are multiplied by 1).
            params, max_norm = list(model.parameters()), cfg.max_grad_norm or math.inf
            if accelerator is None:
                norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            else:
                norm = accelerator.clip_grad_norm_(params, max_norm)
            if norm is not None:
                norms.append(float(norm))
            optimizer.step()
            step += 1
    world = accelerator.num_processes if accelerator is not None else 1
    means = _all_sum(torch.tensor([v / max(n_micro, 1) for v in totals.values()], dtype=torch.float64), world) / world
    out = dict(zip(totals, means.tolist()))
    out["lr"] = optimizer.param_groups[0]["lr"]
    if norms:
        out["grad_norm"] = sum(norms) / len(norms)
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints and logs

def save_checkpoint(path: Path, model: ActorCritic, optimizer, moments: RunningMoments, iteration: int,
                    meta: dict, accelerator: Accelerator | None = None) -> None:
    """Write ``path/state.pt`` (every process calls this; the first one writes).

    One process and DDP: the trainable parameters of the unwrapped model and the optimiser's state
    (every process holds all of both, identical), our own format, which resumes bit for bit and
    stays small (no frozen weights). FSDP and DeepSpeed shard the optimiser state (and FSDP / ZeRO-3 the
    weights) over the processes, so only the engine can write them: ``accelerator.save_state`` into
    ``path/engine/``, every process its shard, and ``state.pt`` names it."""
    sharded = accelerator is not None and accelerator.distributed_type in SHARDED
    main = accelerator is None or accelerator.is_main_process
    path.mkdir(parents=True, exist_ok=True)
    if sharded:
        accelerator.save_state(str(path / "engine"))
        accelerator.wait_for_everyone()
    if main:
        plain = accelerator.unwrap_model(model) if accelerator is not None else model
        state = {"format": CHECKPOINT_FORMAT, "iteration": iteration, "moments": moments.state_dict(), "meta": meta}
        if sharded:
            state["engine"] = "engine"
        else:
            state.update(model=plain.trainable_state_dict(), optimizer=optimizer.state_dict())
        tmp = path / "state.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path / "state.pt")  # a run killed while saving leaves the previous checkpoint whole


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = [p for p in output_dir.glob("checkpoint-*") if (p / "state.pt").is_file()]
    return max(found, key=lambda p: int(p.name.rsplit("-", 1)[1])) if found else None


def load_checkpoint(path: Path, model: ActorCritic, optimizer, moments: RunningMoments, meta: dict,
                    accelerator: Accelerator | None = None) -> int:
    """Restore ``path`` into the live (prepared) objects; the iteration to continue from."""
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')}, this code reads {CHECKPOINT_FORMAT}")
    for key in ("algo", "start_model", "trainable"):
        if state["meta"].get(key) != meta.get(key):
            raise ValueError(f"{path}: checkpoint was written with {key}={state['meta'].get(key)!r}, "
                             f"this run has {meta.get(key)!r}; resume with the same settings or a new output dir")
    if "engine" in state:
        if accelerator is None or accelerator.distributed_type not in SHARDED:
            raise ValueError(f"{path}: written by FSDP/DeepSpeed (engine state in {state['engine']}/); resume it "
                             "with the same accelerate config")
        accelerator.load_state(str(path / state["engine"]))
    else:
        if accelerator is not None and accelerator.distributed_type in SHARDED:
            raise ValueError(f"{path}: written without FSDP/DeepSpeed; resume it without them")
        plain = accelerator.unwrap_model(model) if accelerator is not None else model
        params = dict(plain.named_parameters())
        with torch.no_grad():
            for name, value in state["model"].items():
                params[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
    moments.load_state_dict(state["moments"])
    return state["iteration"]


def _trim_log(path: Path, iteration: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text().splitlines()
                if line.strip() and json.loads(line).get("iteration", math.inf) < iteration]
        path.write_text("".join(line + "\n" for line in kept))


# ----------------------------------------------------------------------------------------------
# The loop

@dataclass
class PolicyRun:
    """What :func:`train_policy` returns."""

    output_dir: Path
    model: ActorCritic
    tokenizer: object
    history: list[dict]
    log_path: Path
    train_seconds: float
    metrics: dict = field(default_factory=dict)

    @property
    def policy(self):
        return self.model.policy


def train_policy(preset: Preset, prompts: list, policy, tokenizer, reward_model, reward_tokenizer,
                 output_dir: str | Path, *, gold_fn: Callable | None = None, resume: bool = False,
                 start_model: str = "", on_iteration: Callable[[int, dict], None] | None = None,
                 save_final: bool = True, progress: bool | None = None) -> PolicyRun:
    """Tune ``policy`` on ``prompts`` against ``reward_model`` with ``preset.policy`` (see module docstring).

    ``prompts``: Nectar prompt strings or message lists. ``gold_fn(prompt, text)`` adds the gold
    reward to the log. ``start_model`` names where ``policy`` came from: a resumed run checks that it
    matches the checkpoint's. ``on_iteration(i, record)`` is called after each logged iteration.
    ``progress``: a bar over iterations with proxy / gold reward and KL (``None``:
    :func:`starling_lib.progress.progress_enabled`; only the first process shows one).
    Writes ``log.jsonl`` (one record per iteration), ``checkpoint-<i>/`` and ``final/``.
    """
    cfg = preset.policy
    check_config(cfg)
    if not prompts:
        raise ValueError("no prompts to train on")
    accelerator = make_accelerator(preset.runtime)
    rank, world = accelerator.process_index, accelerator.num_processes
    # One process: the runtime's device, as always; several: each its own (cuda:LOCAL_RANK, or cpu).
    device = accelerator.device if world > 1 else resolve_device(preset.runtime)
    precision = resolve_precision(preset.runtime, device)
    if precision.name == "fp16":
        raise ValueError("runtime.dtype=fp16: the policy loop has no loss scaling; use bf16 or fp32")
    if accelerator.mixed_precision not in ("no", precision.name):
        raise ValueError(f"the accelerate config asks for mixed_precision={accelerator.mixed_precision} but this run "
                         f"computes in {precision.name} ({precision.reason}); set runtime.dtype={accelerator.mixed_precision} "
                         "or mixed_precision: 'no' in the accelerate config")
    dtype = precision.torch_dtype
    per_iteration = min(cfg.prompts_per_iteration, len(prompts))
    if per_iteration % world:
        raise ValueError(f"policy.prompts_per_iteration: {per_iteration} prompts per iteration do not split evenly over "
                         f"{world} processes; use a multiple of {world}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / "log.jsonl"

    torch.manual_seed(preset.runtime.seed)
    model, reference = build_actor_critic(policy, cfg)
    store_dtypes(model, reference, reward_model, dtype)
    model.to(device)
    if reference is not None:
        reference.to(device)
    reward_model.to(device)
    optimizer = _optimizer(model, cfg)
    # DDP (or FSDP / DeepSpeed) around the trainable network only: the reference and the reward
    # model only ever run forward, each process its own copy.
    _settle_deepspeed_config(accelerator, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    moments = RunningMoments()
    kl_ctl = KLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)  # β: fixed, or adaptive with kl_target
    scorer = RewardScorer(reward_model, reward_tokenizer, cfg.rm_max_length, dtype=dtype)
    trainable = sorted(name for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad)
    meta = {"algo": cfg.algo, "start_model": start_model, "trainable": trainable, "world_size": world}

    start = 0
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if checkpoint is not None:
        start = load_checkpoint(checkpoint, model, optimizer, moments, meta, accelerator)
        kl_ctl.restore(checkpoint)
    if rank == 0:
        if checkpoint is None:
            log_path.unlink(missing_ok=True)
        else:
            _trim_log(log_path, start)

    seed = preset.runtime.seed
    started = time.perf_counter()
    bar = progress_bar(total=cfg.iterations, initial=start, desc=f"{cfg.algo} iterations", unit="it",
                       progress=progress if rank == 0 else False)
    for iteration in range(start, cfg.iterations):
        t_iter = time.perf_counter()
        chosen = iteration_prompts(len(prompts), cfg.prompts_per_iteration, seed, iteration)[rank::world]
        batch_prompts = [prompts[i] for i in chosen]
        if cfg.algo == "p3o":  # two responses per prompt, side by side: rows 2k and 2k+1 are a pair
            batch_prompts = [p for p in batch_prompts for _ in range(2)]
        torch.manual_seed(_iteration_seed(seed, iteration, rank))  # the sampling noise of this iteration
        with full_weights(accelerator, model) as plain:  # sampling and scoring: each process on its own
            rollout = collect_rollout(plain, reference, tokenizer, scorer, batch_prompts, cfg, device, dtype, gold_fn)

        t0 = time.perf_counter()
        beta = kl_ctl.value  # this iteration's KL coefficient
        rewards, shaped = shaped_rewards(rollout, cfg, moments, world, kl_coef=beta)
        if cfg.algo == "p3o":
            # Trajectory level, no critic, no GAE: each response's r̂ = score − β Σ_t log π_old/π_init
            # (the sum of its token rewards) on every one of its tokens, for policy_loss to pair up.
            advantages = rewards.sum(1, keepdim=True).expand_as(rewards).contiguous()
            returns = torch.zeros_like(rewards)
        else:
            advantages, returns = gae_advantages(rewards, rollout.values, rollout.mask, cfg.gamma, cfg.gae_lambda)
            if cfg.whiten_advantages:
                advantages = _whiten_global(advantages, rollout.mask, world)
        steps = cfg.epochs_per_rollout * math.ceil(rollout.response_ids.shape[0] / cfg.minibatch_size)
        losses = update(model, optimizer, rollout, advantages, returns, cfg, device, dtype,
                        _iteration_seed(seed, iteration, rank) + 1, accelerator, first_step=iteration * steps,
                        total_steps=cfg.iterations * steps)
        update_s = time.perf_counter() - t0

        record = _iteration_record(iteration, rollout, shaped, losses, world)
        record.update({k: round(v, 4) for k, v in rollout.timings.items()}, update_s=round(update_s, 4),
                      iteration_s=round(time.perf_counter() - t_iter, 4), algo=cfg.algo)
        record["kl_coef"] = beta
        kl_ctl.update(record["kl"], record["responses"])  # β of the next iteration (from every process's KL)
        last = iteration + 1 == cfg.iterations
        if rank == 0:
            with log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        if (iteration + 1) % cfg.save_every == 0 or last:
            if rank == 0:  # before state.pt: a checkpoint with state.pt has its β
                kl_ctl.save(output_dir / f"checkpoint-{iteration + 1}")
            save_checkpoint(output_dir / f"checkpoint-{iteration + 1}", model, optimizer, moments, iteration + 1, meta,
                            accelerator)
        if on_iteration is not None:
            on_iteration(iteration, record)
        bar.set_postfix({k.removesuffix("_reward"): f"{record[k]:.3f}" for k in ("proxy_reward", "gold_reward", "kl")
                         if k in record}, refresh=False)
        bar.update(1)
    bar.close()
    train_seconds = time.perf_counter() - started

    accelerator.wait_for_everyone()  # the first process has written the log
    history = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    full_state = accelerator.get_state_dict(model) if save_final and accelerator.distributed_type in SHARDED else None
    model = accelerator.unwrap_model(model)
    if rank == 0 and save_final:
        save_policy(model, tokenizer, output_dir / "final", full_state)
    metrics = {"algo": cfg.algo, "iterations": cfg.iterations, "train_seconds": train_seconds}
    if history:
        metrics.update({k: history[-1][k] for k in ("proxy_reward", "gold_reward", "kl") if k in history[-1]})
    return PolicyRun(output_dir, model, tokenizer, history, log_path, train_seconds, metrics)


def _iteration_record(iteration: int, rollout: Rollout, shaped: torch.Tensor, losses: dict, world: int) -> dict:
    """Per-iteration means over every process's responses."""
    maskf = rollout.mask.float()
    kl_seq = ((rollout.logprobs - rollout.ref_logprobs) * maskf).sum(1)  # (B,) Σ_t log π_old/π_init
    columns = [rollout.scores.float().cpu(), shaped.float().cpu(), kl_seq.cpu(), maskf.sum(1).cpu(),
               (rollout.entropy * maskf).sum(1).cpu()]
    if rollout.gold is not None:
        columns.append(rollout.gold.float())
    sums = _all_sum(torch.stack([c.sum() for c in columns] + [torch.tensor(float(len(rollout.texts)))]), world)
    n = sums[-1].item()
    tokens = sums[3].item()
    record = {"iteration": iteration, "step": iteration + 1, "proxy_reward": sums[0].item() / n,
              "shaped_reward": sums[1].item() / n, "kl": sums[2].item() / n, "response_length": tokens / n,
              "entropy": sums[4].item() / max(tokens, 1), "responses": int(n), "prompts_cut": rollout.prompts_cut}
    if rollout.gold is not None:
        record["gold_reward"] = sums[5].item() / n
    record.update({k: v for k, v in losses.items()})
    return record


def save_policy(model: ActorCritic, tokenizer, path: Path, state_dict: dict | None = None) -> Path:
    """The tuned policy as a plain causal LM folder (LoRA adapters merged) plus ``critic.pt``.
    ``state_dict``: the actor-critic's full weights gathered from FSDP / ZeRO-3 shards
    (``accelerator.get_state_dict``), written instead of the module's own (sharded) ones."""
    path.mkdir(parents=True, exist_ok=True)
    policy = model.policy
    part = lambda prefix: None if state_dict is None else {k[len(prefix):]: v for k, v in state_dict.items()  # noqa: E731
                                                           if k.startswith(prefix)}
    if is_lora(policy):
        import copy

        policy = copy.deepcopy(policy).merge_and_unload()
    policy.save_pretrained(path, state_dict=part("policy."))
    tokenizer.save_pretrained(path)
    critic = {"critic": model.critic, "v_head": part("v_head.") or model.v_head.state_dict()}
    if model.critic_trunk is not None:
        critic["trunk"] = part("critic_trunk.") or model.critic_trunk.state_dict()
    torch.save(critic, path / "critic.pt")
    return path
