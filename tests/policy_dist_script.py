"""Helper for tests/test_policy_train.py: the policy loop under ``torchrun --nproc_per_node 2`` (gloo).

    torchrun --nproc_per_node 2 tests/policy_dist_script.py OUT_DIR ROLLOUT.pt

Every process runs, one after the other, sharing nothing but the code and the preset's seeds:

1. :func:`learn_once`: one update on its half (rows ``rank::2``) of the rollout in ``ROLLOUT.pt``,
   through the loop's own pieces (accelerate-prepared model and optimiser, pooled reward statistics
   and whitening, :func:`~starling_lib.policy.train.update`); the first process writes the losses,
   the gradient norm and the step's gradient (Adam's first moment / (1 − β₁)) to ``OUT_DIR/learn.pt``.
   The test computes the same step in one process on all rows (the same function, ``world`` 1).
2. Three :func:`~starling_lib.policy.train.train_policy` runs of ``RUN_SET``: ``whole`` (2 iterations),
   ``stopped`` (stopped by an exception after iteration 1, checkpoint-1 on disk) and its resumption;
   each process writes what its weights add up to (``digest-rank<r>.json``).
"""

import dataclasses
import json
import os
import sys

import torch

from starling_lib.config import get_preset
from starling_lib.losses import gae_advantages
from starling_lib.policy.pipeline import load_policy, policy_prompts
from starling_lib.policy.rollout import Rollout, RunningMoments, forward_tokens
from starling_lib.policy.train import (_optimizer, _whiten_global, build_actor_critic, make_accelerator,
                                       shaped_rewards, train_policy, update)
from starling_lib.reward.train import build_backbone

# One update of the whole rollout: one minibatch of all rows (half per process), no clipping, so the
# gradient itself is compared; the 1-process run splits it in two micro-batches like the two processes.
LEARN_SET = ["runtime.dtype=fp32", "policy.max_grad_norm=null", "policy.epochs_per_rollout=1",
             "policy.critic=separate"]
RUN_SET = ["policy.iterations=2", "policy.save_every=1", "policy.prompts_per_iteration=8", "policy.minibatch_size=2",
           "policy.max_new_tokens=8", "policy.lr_scheduler=cosine", "policy.lr_min=1e-5", "policy.kl_coef=0.02"]


class Stop(Exception):
    pass


def rows(rollout: Rollout, index) -> Rollout:
    """The responses ``index`` of a rollout (every per-response field cut the same way)."""
    n = rollout.response_ids.shape[0]
    out = {}
    for f in dataclasses.fields(rollout):
        value = getattr(rollout, f.name)
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            value = value[index]
        elif isinstance(value, list) and len(value) == n:
            value = [value[i] for i in index.tolist()]
        out[f.name] = value
    return Rollout(**out)


def full_length(rollout: Rollout, model, reference) -> Rollout:
    """The rollout with every response counted to its last token (the no-grad passes redone): equal
    lengths make the mean over all tokens the mean of any equal split's means, as data parallelism
    assumes."""
    mask = torch.ones_like(rollout.mask)
    with torch.no_grad():
        own = forward_tokens(model, rollout.query_ids, rollout.query_mask, rollout.response_ids, mask,
                             with_entropy=True, with_values=True)
        ref = forward_tokens(reference, rollout.query_ids, rollout.query_mask, rollout.response_ids, mask)
    return dataclasses.replace(rollout, mask=mask, logprobs=own.logprobs, ref_logprobs=ref.logprobs,
                               values=own.values, entropy=own.entropy)


def learn_once(rollout: Rollout, overrides: list[str], minibatch: int, grad_accum: int) -> dict:
    """One update on this process's rows of ``rollout`` (all of them in one process); what it did."""
    preset = get_preset("smoke", LEARN_SET + list(overrides) + [f"policy.minibatch_size={minibatch}",
                                                                f"policy.grad_accum={grad_accum}"])
    cfg = preset.policy
    accelerator = make_accelerator(preset.runtime)
    rank, world = accelerator.process_index, accelerator.num_processes
    policy, _ = load_policy(preset)
    torch.manual_seed(preset.runtime.seed)
    model, _ = build_actor_critic(policy, cfg)
    optimizer = _optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    part = rows(rollout, torch.arange(rollout.response_ids.shape[0])[rank::world])
    moments = RunningMoments()
    rewards, _ = shaped_rewards(part, cfg, moments, world)
    advantages, returns = gae_advantages(rewards, part.values, part.mask, cfg.gamma, cfg.gae_lambda)
    advantages = _whiten_global(advantages, part.mask, world)
    losses = update(model, optimizer, part, advantages, returns, cfg, torch.device("cpu"), None, seed=1,
                    accelerator=accelerator)
    beta1 = cfg.adam_beta1
    plain = accelerator.unwrap_model(model)
    grads = {name: optimizer.state[p]["exp_avg"] / (1 - beta1) for name, p in plain.named_parameters()
             if p.requires_grad}
    return {"losses": losses, "grads": grads, "moments": moments.state_dict()}


def run(out: str, overrides: list[str], stop_after: int | None = None, resume: bool = False):
    preset = get_preset("smoke", RUN_SET + overrides)
    policy, tokenizer = load_policy(preset)
    reward, reward_tokenizer = build_backbone(preset)
    prompts, gold = policy_prompts(preset)

    def stop(iteration, record):
        if iteration + 1 == stop_after:
            raise Stop

    try:
        result = train_policy(preset, prompts, policy, tokenizer, reward, reward_tokenizer, out, gold_fn=gold,
                              resume=resume, start_model="smoke-tiny-policy", on_iteration=stop, save_final=False,
                              progress=False)
    except Stop:
        return
    digest = [float(p.detach().double().sum()) for p in result.model.parameters() if p.requires_grad]
    with open(os.path.join(out, f"digest-rank{os.environ.get('RANK', '0')}.json"), "w") as f:
        json.dump(digest, f)


def main() -> None:
    out, rollout_path = sys.argv[1], sys.argv[2]
    rollout = torch.load(rollout_path, weights_only=False)
    learned = learn_once(rollout, [], minibatch=rollout.response_ids.shape[0] // 2, grad_accum=1)
    if os.environ.get("RANK", "0") == "0":
        torch.save(learned, os.path.join(out, "learn.pt"))
    run(os.path.join(out, "whole"), [])
    run(os.path.join(out, "stopped"), [], stop_after=1)
    run(os.path.join(out, "stopped"), [], resume=True)


if __name__ == "__main__":
    main()
