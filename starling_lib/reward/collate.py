"""Listwise batches for reward models: all K answers of a prompt in one batch, each encoded once.

What it is for: the K-wise loss needs the rewards of all K answers of a prompt together, and the
split-pairs loss needs all K(K-1)/2 differences; both come from **one** forward pass over the K
answers, instead of the 2·K(K-1)/2 = 42 sequences a chosen/rejected pair collator encodes for
K=7. This module turns listwise examples into that batch.

A listwise example (what :func:`starling_lib.data.convert.to_listwise` and
:mod:`starling_lib.reward.data` produce)::

    {"prompt": [{"role": "user", "content": ...}, ...],   # or a Nectar prompt string
     "answers": [str, ...],                                # K answers, any order
     "ranks": [1.0, 3.0, 2.0, ...],                        # optional; 1 = best (default: given order)
     "gold_rewards": [...]}                                # optional (tiny world)

Each answer is rendered as ``prompt + [assistant: answer]`` with the reward model's chat template
(``tokenizer.chat_template``), tokenized with offsets to find where the answer starts, and, when
too long, cut on the **left of the prompt** (the leading bos/[CLS] is kept) so the answer and the
token the reward is read at survive. Only an answer longer than the budget by itself loses its end.

The batch (``B`` prompts, ``K`` = most answers in a row, ``N`` = answers present, ``T`` = longest)::

    input_ids       (N, T)  present answers, row-major, sorted best first within each prompt
    attention_mask  (N, T)
    answer_mask     (B, K)  True where an answer is present; ``rewards[answer_mask] = logits``
    ranks           (B, K)  the given ranks, sorted ascending (NaN where absent)
    gold_rewards    (B, K)  when every example has them

Padding is dynamic (to the longest sequence of the batch, optionally a multiple of
``pad_to_multiple_of``) on the right by default, the side the Starling-RM format requires;
``AutoModelForSequenceClassification`` decoders find the last non-pad token on either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from starling_lib.data.chat import prompt_to_messages

SENTINEL = "\x00"
"""Stands in for the answer to find where the template puts it; never occurs in real text."""


def _messages(prompt) -> list[dict]:
    return prompt_to_messages(prompt) if isinstance(prompt, str) else list(prompt)


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def render_answer(tokenizer, prompt, answer: str) -> tuple[str, int]:
    """(text, answer_start): the conversation with ``answer`` as the assistant's last turn, and the
    character offset where the answer begins (where a sentinel answer's rendering first differs)."""
    messages = _messages(prompt)
    if tokenizer.chat_template is None:
        raise ValueError("the reward model's tokenizer has no chat_template; set one "
                         "(starling_lib.data.chat: OPENCHAT_TEMPLATE, LLAMA2_TEMPLATE)")
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
    marked = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": SENTINEL}], tokenize=False)
    return full, _common_prefix_length(full, marked)


def _adds_special_tokens(tokenizer, text: str) -> bool:
    # Decoder templates write their own <s>; encoders (BERT: [CLS] … [SEP]) need the tokenizer's.
    return not (tokenizer.bos_token and text.startswith(tokenizer.bos_token))


@dataclass
class Encoded:
    """One answer's token ids and what truncation did to it."""

    input_ids: list[int]
    prompt_tokens_dropped: int
    answer_tokens_dropped: int


def encode_answer(tokenizer, prompt, answer: str, max_length: int) -> Encoded:
    """Token ids of one prompt+answer, at most ``max_length``, cut as the module docstring says."""
    text, answer_start = render_answer(tokenizer, prompt, answer)
    enc = tokenizer(text, add_special_tokens=_adds_special_tokens(tokenizer, text), return_offsets_mapping=True,
                    truncation=False, verbose=False)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if len(ids) <= max_length:
        return Encoded(list(ids), 0, 0)
    special = set(tokenizer.all_special_ids)
    # Leading special tokens (<s>, [CLS]) stay: the model was trained to see them first.
    n_head = 1 if ids and ids[0] in special and offsets[0][1] <= answer_start else 0
    # First token that reaches into the answer (special tokens inside the prompt have empty spans).
    first_answer = next((i for i, (s, e) in enumerate(offsets) if i >= n_head and e > answer_start), len(ids))
    tail = ids[first_answer:]
    budget = max_length - n_head
    if len(tail) >= budget:
        return Encoded(ids[:n_head] + tail[:budget], first_answer - n_head, len(tail) - budget)
    keep_prompt = budget - len(tail)
    prompt_ids = ids[n_head:first_answer]
    return Encoded(ids[:n_head] + prompt_ids[len(prompt_ids) - keep_prompt:] + tail,
                   len(prompt_ids) - keep_prompt, 0)


def best_first_order(example: dict) -> list[int]:
    """Indices of the example's answers, best first (stable for equal ranks; given order if no ranks)."""
    n = len(example["answers"])
    ranks = example.get("ranks")
    if ranks is None:
        return list(range(n))
    if len(ranks) != n:
        raise ValueError(f"example has {n} answers but {len(ranks)} ranks")
    return sorted(range(n), key=lambda i: (math.inf if ranks[i] is None or ranks[i] != ranks[i] else ranks[i], i))


class ListwiseCollator:
    """Callable for a ``DataLoader``: listwise examples -> the batch described in the module docstring.

    Args:
        tokenizer: the reward model's tokenizer, with a ``chat_template`` and a pad token.
        max_length: tokens per prompt+answer.
        pad_to_multiple_of: round the padded length up to this multiple (``None``: longest).
        padding_side: ``"right"`` (default) or ``"left"``.
    """

    def __init__(self, tokenizer, max_length: int = 256, pad_to_multiple_of: int | None = None,
                 padding_side: str = "right"):
        if tokenizer.pad_token_id is None:
            raise ValueError("the reward model's tokenizer has no pad token; set tokenizer.pad_token")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_side = padding_side
        self.truncated = {"prompt_tokens": 0, "answer_tokens": 0, "answers": 0}
        """Running totals of what truncation removed, for the training log."""

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("empty batch")
        orders = [best_first_order(example) for example in examples]
        k = max(len(order) for order in orders)
        rows, mask = [], torch.zeros(len(examples), k, dtype=torch.bool)
        ranks = torch.full((len(examples), k), math.nan, dtype=torch.float32)
        has_gold = all("gold_rewards" in example for example in examples)
        gold = torch.full((len(examples), k), math.nan, dtype=torch.float32) if has_gold else None
        for b, (example, order) in enumerate(zip(examples, orders)):
            for j, i in enumerate(order):
                enc = encode_answer(self.tokenizer, example["prompt"], example["answers"][i], self.max_length)
                self.truncated["prompt_tokens"] += enc.prompt_tokens_dropped
                self.truncated["answer_tokens"] += enc.answer_tokens_dropped
                self.truncated["answers"] += bool(enc.prompt_tokens_dropped or enc.answer_tokens_dropped)
                rows.append(enc.input_ids)
                mask[b, j] = True
                ranks[b, j] = float(example["ranks"][i]) if example.get("ranks") is not None else j + 1.0
                if gold is not None:
                    gold[b, j] = float(example["gold_rewards"][i])
        input_ids, attention_mask = self.pad(rows)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "answer_mask": mask, "ranks": ranks}
        if gold is not None:
            batch["gold_rewards"] = gold
        return batch

    def pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), both ``(N, T)``, padded dynamically."""
        length = max(len(row) for row in rows)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for n, row in enumerate(rows):
            span = slice(0, len(row)) if self.padding_side == "right" else slice(length - len(row), length)
            input_ids[n, span] = torch.tensor(row, dtype=torch.long)
            attention_mask[n, span] = 1
        return input_ids, attention_mask


def scatter_rewards(flat: torch.Tensor, answer_mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``(N,)`` or ``(N, 1)`` rewards of the present answers -> ``(B, K)`` best first, ``fill`` elsewhere."""
    flat = flat.reshape(-1)
    if flat.numel() != int(answer_mask.sum()):
        raise ValueError(f"{flat.numel()} rewards for {int(answer_mask.sum())} present answers")
    out = torch.full(answer_mask.shape, fill, dtype=flat.dtype, device=flat.device)
    return out.masked_scatter(answer_mask.to(flat.device), flat)
