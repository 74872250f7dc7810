"""Preference losses as pure tensor functions: Plackett-Luce (K-wise) and Bradley-Terry (pairwise).

What it is for: the reward-model trainer, the theory experiments of notebook 02 and the tests all
call these, so "the K-wise loss" means one piece of code everywhere. No model, no config, no
state: tensors in, a scalar (or per-row) loss out.

Conventions shared by every function here:

- ``rewards``: ``(B, K)`` float tensor, one row per prompt, its K answers **ordered best first**
  (column 0 is the answer ranked first).
- ``mask``: optional ``(B, K)`` bool tensor, ``True`` where an answer is present. Rows may have
  different numbers of answers (variable K, or a judge that ranked only some answers); the
  present answers must keep their best-first order, and absent ones may sit anywhere.
- ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one value per row).

References: Plackett (1975), Luce (1959); the K-wise maximum-likelihood estimator of
Zhu, Jordan & Jiao, "Principled RLHF from pairwise or K-wise comparisons" (ICML 2023,
arXiv 2301.11270), eq. (4) (K-wise) and the split-pairs estimator of its Section 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")
PAIR_MODES = ("all", "adjacent")
LOSS_TYPES = ("kwise", "pairwise", "adjacent")
"""Loss names the reward-model trainer accepts (:func:`ranking_loss`)."""


def _check(rewards: torch.Tensor, mask: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (B, K), got shape {tuple(rewards.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if mask is None:
        return torch.ones_like(rewards, dtype=torch.bool)
    if mask.shape != rewards.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match rewards {tuple(rewards.shape)}")
    return mask.to(torch.bool)


def _reduce(per_row: torch.Tensor, weight: torch.Tensor, reduction: str) -> torch.Tensor:
    """``per_row`` summed loss, ``weight`` its number of terms; "mean" divides total by total terms."""
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / weight.sum().clamp(min=1)


def plackett_luce_loss(rewards: torch.Tensor, mask: torch.Tensor | None = None, top_k: int | None = None,
                       reduction: str = "mean") -> torch.Tensor:
    """Negative Plackett-Luce log-likelihood of the best-first order: the K-wise MLE loss.

    Per row: ``-Σ_{j<K'} [r_j - logsumexp(r_j, …, r_K)]`` over the present answers
    (Zhu et al. 2023, eq. 4), where ``K' = min(top_k, K-1)``: with ``top_k`` only the first
    ``top_k`` choices count (a partial, top-k ranking). The last choice is certain and adds 0.
    ``reduction="mean"`` averages over rows (rows with fewer than two answers add nothing and
    do not count).

    Args:
        rewards: ``(B, K)``, best first.
        mask: ``(B, K)`` bool, ``True`` = present.
        top_k: number of leading choices to score (``None``: all).
    Returns:
        scalar, or ``(B,)`` with ``reduction="none"``.
    """
    mask = _check(rewards, mask, reduction)
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    # Absent answers get a very negative finite score: out of every logsumexp, and (unlike -inf)
    # no inf - inf = nan in the backward pass.
    very_negative = torch.finfo(rewards.dtype).min / 4
    scores = rewards.masked_fill(~mask, very_negative)
    # logsumexp over each suffix r_j..r_K: the normaliser of the j-th choice.
    suffix_lse = torch.logcumsumexp(scores.flip(-1), dim=-1).flip(-1)  # (B, K)
    log_choice = scores - suffix_lse
    # Which present answers are "chosen" in the ranking: the first K'-many present ones, never the last.
    present_before = torch.cumsum(mask.long(), dim=-1) - 1      # index among present answers
    n_present = mask.sum(-1, keepdim=True)
    n_choices = (n_present - 1).clamp(min=0)
    if top_k is not None:
        n_choices = n_choices.clamp(max=top_k)
    scored = mask & (present_before < n_choices)
    per_row = -torch.where(scored, log_choice, torch.zeros_like(log_choice)).sum(-1)
    return _reduce(per_row, (n_present.squeeze(-1) >= 2).to(rewards.dtype), reduction)


def _pair_mask(mask: torch.Tensor, pairs: str) -> torch.Tensor:
    """``(B, K, K)`` bool: ``[b, i, j]`` is a scored pair with answer i ranked above answer j."""
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}")
    k = mask.shape[-1]
    upper = torch.ones(k, k, dtype=torch.bool, device=mask.device).triu(diagonal=1)
    both = mask[:, :, None] & mask[:, None, :] & upper
    if pairs == "all":
        return both
    # Adjacent: j is the next *present* answer after i.
    position = torch.cumsum(mask.long(), dim=-1)  # 1-based index among present answers
    return both & (position[:, None, :] - position[:, :, None] == 1)


def pairwise_loss(rewards: torch.Tensor, mask: torch.Tensor | None = None, margin: float | torch.Tensor = 0.0,
                  pairs: str = "all", reduction: str = "mean") -> torch.Tensor:
    """Bradley-Terry loss ``-log σ(r_i - r_j - margin)`` over pairs of each best-first row.

    ``pairs="all"``: the K(K-1)/2 pairs of each row, every i ranked above j (the split-pairs
    estimator; what expanding a 7-wise ranking into 21 chosen/rejected pairs trains on).
    ``pairs="adjacent"``: the K-1 neighbouring pairs only. ``reduction="mean"`` averages over
    all scored pairs of the batch, so it equals TRL's ``RewardTrainer`` loss on the expanded
    pairs; ``"none"`` gives each row's **sum** over its pairs.

    Args:
        rewards: ``(B, K)``, best first.
        mask: ``(B, K)`` bool, ``True`` = present.
        margin: scalar, or a tensor broadcastable to ``(B, K, K)`` (``[b, i, j]`` for pair i > j).
    """
    mask = _check(rewards, mask, reduction)
    scored = _pair_mask(mask, pairs)                              # (B, K, K)
    logits = rewards[:, :, None] - rewards[:, None, :] - margin  # (B, K, K): r_i - r_j - m
    terms = -F.logsigmoid(logits)
    per_row = torch.where(scored, terms, torch.zeros_like(terms)).sum(dim=(1, 2))
    return _reduce(per_row, scored.sum(dim=(1, 2)).to(rewards.dtype), reduction)


def ranking_loss(rewards: torch.Tensor, loss_type: str, mask: torch.Tensor | None = None, *,
                 top_k: int | None = None, margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """The trainer's switch: ``kwise`` (Plackett-Luce), ``pairwise`` (all pairs), ``adjacent``."""
    if loss_type == "kwise":
        return plackett_luce_loss(rewards, mask, top_k=top_k)
    if loss_type == "pairwise":
        return pairwise_loss(rewards, mask, margin=margin, pairs="all")
    if loss_type == "adjacent":
        return pairwise_loss(rewards, mask, margin=margin, pairs="adjacent")
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
