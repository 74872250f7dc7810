"""Rollouts: sample responses from the policy, score them, and keep what the update needs.

What it is for: one round of policy tuning starts here. For a batch of prompts it

1. renders each prompt with the **policy's** chat template and samples one response with
   ``model.generate`` (KV cache on, left padding, sampling at ``temperature`` / ``top_p``);
2. computes per-token log-probabilities of the sampled tokens under the policy that sampled them
   and under the frozen initial policy, the critic's values and the policy's entropy, in one
   no-grad pass each (:func:`forward_tokens`);
3. decodes the responses to text and scores them with the reward model, which may have a
   **different tokenizer and chat template**: the text is re-rendered with the reward model's
   own template (:class:`RewardScorer`, through the reward stage's :func:`encode_answer`), and,
   where the world knows it, with the gold reward.

Shapes: ``P`` prompt tokens (left-padded), ``R`` response tokens (right-padded after the first
eos; the eos itself is part of the response and gets a log-probability like any other token).
Positions are counted from each row's first real token (``attention_mask.cumsum − 1``), the
way ``generate`` counts them, so the log-probabilities here match the sampler's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from starling_lib.data.chat import prompt_to_messages
from starling_lib.precision import autocast_context
from starling_lib.reward.collate import ListwiseCollator
from starling_lib.reward.train import listwise_rewards


def _messages(prompt) -> list[dict]:
    return prompt_to_messages(prompt) if isinstance(prompt, str) else list(prompt)


def encode_prompts(tokenizer, prompts: list, max_prompt_length: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded ``(input_ids, attention_mask)`` of the rendered prompts (``(B, P)``), and how many
    prompts were cut. A prompt longer than ``max_prompt_length`` loses its *start* (its leading
    bos is kept): the question the response answers is at the end."""
    rows, cut = [], 0
    bos = tokenizer.bos_token_id
    for prompt in prompts:
        text = tokenizer.apply_chat_template(_messages(prompt), tokenize=False, add_generation_prompt=True)
        adds = not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))
        ids = tokenizer(text, add_special_tokens=adds, verbose=False)["input_ids"]
        if len(ids) > max_prompt_length:
            cut += 1
            head = ids[:1] if ids and ids[0] == bos else []
            ids = head + ids[len(ids) - (max_prompt_length - len(head)):]
        rows.append(ids)
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, length - len(row):] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, length - len(row):] = 1
    return input_ids, attention_mask, cut


def response_mask(response_ids: torch.Tensor, eos_token_ids) -> torch.Tensor:
    """``(B, R)`` bool: True up to and including each row's first eos (all True when none)."""
    eos = torch.tensor(sorted(set(eos_token_ids)), device=response_ids.device)
    is_eos = torch.isin(response_ids, eos).long()
    before = is_eos.cumsum(1) - is_eos  # eos tokens strictly before t
    return before == 0


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (0 on left padding), as ``generate`` does."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@dataclass
class TokenStats:
    """What one pass over prompt+response gives, per response token ``(B, R)``."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None
    values: torch.Tensor | None = None


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``tokens``: ``(B, R, V), (B, R) -> (B, R)`` in float32."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.gather(F.log_softmax(logits, dim=-1), 2, tokens[..., None]).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` per position, ``(B, R, V) -> (B, R)``."""
    logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def forward_tokens(model, query_ids: torch.Tensor, query_mask: torch.Tensor, response_ids: torch.Tensor,
                   resp_mask: torch.Tensor, temperature: float = 1.0, with_entropy: bool = False,
                   with_values: bool = False) -> TokenStats:
    """One forward of ``model`` (a causal LM, or an :class:`~starling_lib.policy.models.ActorCritic`)
    over prompt+response; the log-probabilities of the response tokens, optionally entropy and values.

    The logits at position ``P − 1 + t`` predict response token ``t``; the value of the state before
    token ``t`` is read at the same position.
    """
    input_ids = torch.cat([query_ids, response_ids], dim=1)
    attention_mask = torch.cat([query_mask, resp_mask.long()], dim=1)
    p = query_ids.shape[1]
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask))
    if with_values:
        logits, values = model(**kwargs)
        values = values[:, p - 1:-1].float()
    else:
        logits, values = model(**kwargs).logits, None
    logits = logits[:, p - 1:-1]  # (B, R, V)
    logprobs = token_logprobs(logits, response_ids, temperature)
    entropy = entropy_from_logits(logits / temperature if temperature != 1.0 else logits) if with_entropy else None
    return TokenStats(logprobs, entropy, values)


@torch.no_grad()
def sample_responses(model, tokenizer, query_ids: torch.Tensor, query_mask: torch.Tensor, max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(response_ids, mask)``, both ``(B, R)``: sampled continuations (KV cache on), padding after eos;
    under ``dtype`` autocast (``None``: fp32)."""
    eos_ids = _eos_ids(tokenizer, model)
    do_sample = temperature > 0
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample else dict(do_sample=False)
    with autocast_context(query_ids.device, dtype):
        out = model.generate(input_ids=query_ids, attention_mask=query_mask, max_new_tokens=max_new_tokens,
                             use_cache=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids, **sampling)
    response = out[:, query_ids.shape[1]:]
    mask = response_mask(response, eos_ids)
    return response.masked_fill(~mask, tokenizer.pad_token_id), mask


def _eos_ids(tokenizer, model=None) -> list[int]:
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(config_eos if isinstance(config_eos, (list, tuple)) else [config_eos])
    return sorted(i for i in ids if i is not None)


def decode_responses(tokenizer, response_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """The responses as text, special tokens (eos) dropped."""
    return [tokenizer.decode(row[m].tolist(), skip_special_tokens=True) for row, m in zip(response_ids, mask)]


class RewardScorer:
    """Scores ``(prompt, response text)`` with a reward model in the reward model's own format.

    The response is put back into the conversation and rendered with the reward model's tokenizer
    and chat template (:class:`~starling_lib.reward.collate.ListwiseCollator`, one answer per
    prompt), so a policy and a reward model with different vocabularies and templates work
    together, as OpenChat 3.5 and Starling-RM (Llama-2 template) do.
    """

    def __init__(self, model, tokenizer, max_length: int = 256, batch_size: int = 32,
                 dtype: torch.dtype | None = None):
        self.model, self.tokenizer, self.batch_size, self.dtype = model, tokenizer, batch_size, dtype
        self.collator = ListwiseCollator(tokenizer, max_length=max_length)

    @torch.no_grad()
    def __call__(self, prompts: list, responses: list[str]) -> torch.Tensor:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            examples = [{"prompt": p, "answers": [r]} for p, r in
                        zip(prompts[start:start + self.batch_size], responses[start:start + self.batch_size])]
            batch = self.collator(examples)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast_context(device, self.dtype):
                scores.append(listwise_rewards(self.model, batch)[:, 0].float().cpu())
        self.model.train(was_training)
        return torch.cat(scores)


class RunningMoments:
    """Running mean and standard deviation of all scores seen (Chan et al.'s parallel update), for
    reward normalisation; its state goes into checkpoints."""

    def __init__(self):
        self.mean, self.var, self.count = 0.0, 1.0, 0

    def update(self, values: torch.Tensor) -> None:
        values = values.double().flatten()
        n = values.numel()
        if n == 0:
            return
        batch_mean = values.mean().item()
        batch_var = values.var(unbiased=False).item() if n > 1 else 0.0
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta ** 2 * self.count * n / total
        self.mean += delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.var) if self.count > 1 else 1.0

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


@dataclass
class Rollout:
    """One batch of sampled responses and everything the update reads (token tensors ``(B, R)``)."""

    prompts: list
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    entropy: torch.Tensor
    scores: torch.Tensor
    """(B,) raw reward-model scores."""
    texts: list[str]
    gold: torch.Tensor | None = None
    """(B,) gold rewards where the world defines them."""
    timings: dict = field(default_factory=dict)
    prompts_cut: int = 0


def gold_scores(gold_fn: Callable | None, prompts: list, texts: list[str]) -> torch.Tensor | None:
    """``gold_fn(prompt, text)`` per response as a tensor, or None without a gold function."""
    if gold_fn is None:
        return None
    return torch.tensor([float(gold_fn(p, t)) for p, t in zip(prompts, texts)])
