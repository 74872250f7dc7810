"""Losses as pure tensor functions: preference losses (Plackett-Luce, Bradley-Terry) for reward
models, and the policy-tuning losses (GAE, APA, PPO, AWR, P3O) for the policy stage.

What it is for: the trainers, the theory experiments of notebook 02 and the tests all call these,
so "the K-wise loss" or "the APA loss" means one piece of code everywhere. No model, no config,
no state: tensors in, a scalar (or per-row) loss out.

Conventions of the preference losses:

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


# ----------------------------------------------------------------------------------------------
# Policy tuning: token-level losses over sampled responses.
#
# Conventions: ``(B, T)`` tensors over the *response* tokens of B sampled responses, right-padded:
# ``mask`` is 1 (True) on a response's real tokens (its eos included), which come first, and 0 on
# padding after them. ``logprobs[b, t] = log π(a_t | s_t)`` of the token actually sampled; values
# ``V(s_t)`` are read at the same positions (the state before token t).

def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is set (over everything, or along ``dim``)."""
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8,
                  stats: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``(values - mean) / std`` over the masked entries (0 where masked out).

    ``stats=(mean, var)`` supplies the moments (e.g. pooled over processes) instead of this batch's.
    ``shift_mean=False`` rescales only (the mean is added back), as trlx does for advantages.
    The variance is the unbiased one when computed here.
    """
    maskf = mask.to(values.dtype)
    if stats is None:
        n = maskf.sum()
        if n < 2:
            raise ValueError(f"whitening needs at least 2 masked entries, got {int(n)}")
        mean = (values * maskf).sum() / n
        var = (((values - mean) ** 2) * maskf).sum() / (n - 1)
    else:
        mean, var = stats
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * maskf


def _check_tokens(mask: torch.Tensor, *tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.shape != mask.shape:
            raise ValueError(f"token tensors must all be (B, T) like mask {tuple(mask.shape)}, got {tuple(t.shape)}")


def _check_prefix_mask(mask: torch.Tensor) -> None:
    m = mask.to(torch.int8)
    if (m[:, 1:] > m[:, :-1]).any():
        raise ValueError("response mask must be right-padded (real tokens first, then padding)")


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Token rewards ``(B, T)``: ``-kl_coef·(log π_old − log π_init)`` on every response token, plus the
    sequence score ``scores (B,)`` on its last token (Ziegler et al. 2019; Ouyang et al. 2022, eq. 2)."""
    _check_tokens(mask, logprobs, ref_logprobs)
    _check_prefix_mask(mask)
    maskf = mask.to(logprobs.dtype)
    rewards = -kl_coef * (logprobs - ref_logprobs) * maskf
    last = (maskf.sum(1).long() - 1).clamp(min=0)  # an empty response gets its score at t = 0
    return rewards.scatter_add(1, last[:, None], scores.to(rewards.dtype)[:, None])


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                   lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), all positions at once.

    ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)`` with ``V = 0`` past a response's last token, and
    ``Â_t = Σ_{s≥t} (γλ)^{s−t} δ_s``: a product with the upper-triangular matrix ``(γλ)^{s−t}``,
    instead of a Python loop over T. Returns ``(advantages, returns = Â + V)``, both ``(B, T)`` and
    0 where ``mask`` is 0. Inputs are detached (targets carry no gradient).
    """
    _check_tokens(mask, rewards, values)
    _check_prefix_mask(mask)
    rewards, values = rewards.detach().float(), values.detach().float()
    maskf = mask.float()
    values = values * maskf
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    deltas = (rewards + gamma * next_values - values) * maskf  # (B, T)
    steps = torch.arange(values.shape[1], device=values.device)
    offset = (steps[None, :] - steps[:, None]).float()  # s − t
    discount = torch.where(offset >= 0, (gamma * lam) ** offset.clamp(min=0), torch.zeros_like(offset))
    advantages = (deltas @ discount.T) * maskf  # Â_t = Σ_s discount[t, s] δ_s
    return advantages, (advantages + values) * maskf


def apa_loss(logprobs: torch.Tensor, anchor_logprobs: torch.Tensor, advantages: torch.Tensor,
             mask: torch.Tensor, adv_coeff: float) -> torch.Tensor:
    """Advantage-Induced Policy Alignment (Zhu et al. 2023, arXiv 2306.02231, eq. 8):

        mean over response tokens of  (log π_θ(a|s) − log π_anchor(a|s) − adv_coeff · Â(s,a))²

    The minimiser is ``π_θ ∝ π_anchor · exp(Â/λ)``, the KL-regularised optimum, with
    ``adv_coeff = 1/λ`` (``adv_coeff_sq`` in microsoft/RLHF-APA). The anchor is the frozen initial
    policy in the paper and the official code; the Starling fork anchors on the rollout policy.
    """
    _check_tokens(mask, logprobs, anchor_logprobs, advantages)
    logratio = logprobs - anchor_logprobs.detach()
    return masked_mean((logratio - adv_coeff * advantages.detach()) ** 2, mask)


def ppo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
             cliprange: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7), negated, masked mean over tokens:
    ``max(−Â·r, −Â·clip(r, 1−ε, 1+ε))`` with ``r = π_θ/π_old``."""
    _check_tokens(mask, logprobs, old_logprobs, advantages)
    ratio = torch.exp(logprobs - old_logprobs.detach())
    advantages = advantages.detach()
    losses = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1.0 - cliprange, 1.0 + cliprange))
    return masked_mean(losses, mask)


def awr_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, beta: float = 1.0,
             max_weight: float = 20.0) -> torch.Tensor:
    """Advantage-weighted regression (Peng et al. 2019): ``−min(exp(Â/β), max_weight) · log π_θ``,
    masked mean (the "log" loss of microsoft/RLHF-APA, which compares it with APA)."""
    _check_tokens(mask, logprobs, advantages)
    weights = torch.exp(advantages.detach() / beta).clamp(max=max_weight)
    return masked_mean(-weights * logprobs, mask)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float | None = 0.2) -> torch.Tensor:
    """``½ (V − R)²`` masked mean; with ``cliprange_value`` the pessimistic max of the clipped and
    unclipped errors, ``V`` clipped to ``old_values ± cliprange_value`` (PPO2; Huang et al. 2022)."""
    _check_tokens(mask, values, old_values, returns)
    returns, old_values = returns.detach(), old_values.detach()
    errors = (values - returns) ** 2
    if cliprange_value is not None:
        clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
        errors = torch.maximum(errors, (clipped - returns) ** 2)
    return 0.5 * masked_mean(errors, mask)


def sequence_logprobs(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log π(y|x) = Σ_t log π(a_t|s_t)`` over each response's real tokens: ``(B, T) -> (B,)``."""
    _check_tokens(mask, logprobs)
    return (logprobs * mask.to(logprobs.dtype)).sum(1)


P3O_CLIPPING = ("joint", "separate")
"""P3O's two clipping variants (Wu et al. 2023, Sec. 4.2): P3O-V2 and P3O-V1."""


def p3o_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, rewards: torch.Tensor, cliprange: float = 0.2,
             clipping: str = "joint", weight_clip: float | None = None) -> torch.Tensor:
    """Pairwise Proximal Policy Optimization (Wu et al. 2023, arXiv 2310.00212), negated, mean over pairs.

    Trajectory level, no critic: two responses ``y1, y2`` per prompt, sampled from ``π_old``, and
    only their reward difference ``Δ = r̂(y1|x) − r̂(y2|x)`` as the signal, where ``r̂`` is the
    KL-penalised sequence reward ``r(y|x) − β·log π_old(y|x)/π_init(y|x)`` (the paper's Algorithm 1).
    With importance weights ``ρ_i = π_θ(y_i|x)/π_old(y_i|x)`` over whole responses, the pairwise
    policy gradient (Theorem 1) is ``E_{π_old}[ρ1·ρ2 · Δ · ∇(log π_θ(y1|x) − log π_θ(y2|x)) / 2]``;
    both variants below have exactly this gradient inside their trust region (so at ``θ = θ_old``
    the gradient of the loss is ``−½Δ·∇(log π(y1) − log π(y2))``), and it is invariant to adding any
    ``δ(x)`` to both rewards of a prompt.

    - ``clipping="joint"`` (P3O-V2): one trust region for the pair, on ``log(ρ1/ρ2)``:
      ``½ · sg(ρ1ρ2) · max(−Δ·d, −Δ·clip(d, d_old − ε, d_old + ε))``, ``d = log π_θ(y1) − log π_θ(y2)``,
      ``d_old`` the same under ``π_old``: the form of the first author's released code
      (thwu1/trlx, ``P3OConfig.loss``).
    - ``clipping="separate"`` (P3O-V1): PPO's clip on each response's own ratio, weighted by the
      other's: ``½ · [sg(ρ2)·max(−Δ·ρ1, −Δ·clip(ρ1, 1±ε)) + sg(ρ1)·max(Δ·ρ2, Δ·clip(ρ2, 1±ε))]``.

    Outside the trust region the gradient is zero only in the direction that would improve the
    surrogate further (as in PPO): a pair already moved towards its better response keeps no pull.
    ``weight_clip`` clamps the stop-gradient weights to ``[1/c, c]`` (the released code's
    ``cliprange_ratio``, 10 in its OpenChat-3.5 configs); ``None``: no clamp.

    Args:
        logprobs: ``(B, 2)`` ``log π_θ(y_i|x_b)``, whole responses (:func:`sequence_logprobs`).
        old_logprobs: ``(B, 2)`` the same under the policy that sampled them.
        rewards: ``(B, 2)`` ``r̂(y_i|x_b)`` (targets: no gradient).
    Returns:
        scalar.
    """
    if logprobs.dim() != 2 or logprobs.shape[1] != 2:
        raise ValueError(f"logprobs must be (B, 2), one pair of responses per row, got {tuple(logprobs.shape)}")
    for name, t in (("old_logprobs", old_logprobs), ("rewards", rewards)):
        if t.shape != logprobs.shape:
            raise ValueError(f"{name} must be (B, 2) like logprobs {tuple(logprobs.shape)}, got {tuple(t.shape)}")
    if clipping not in P3O_CLIPPING:
        raise ValueError(f"clipping must be one of {P3O_CLIPPING}, got {clipping!r}")
    if weight_clip is not None and weight_clip < 1:
        raise ValueError(f"weight_clip must be >= 1 or None, got {weight_clip}")
    old_logprobs, rewards = old_logprobs.detach(), rewards.detach()
    delta = rewards[:, 0] - rewards[:, 1]                                  # (B,) Δ = r̂(y1) − r̂(y2)
    log_ratio = logprobs - old_logprobs                                    # (B, 2) log ρ_i

    def weight(log_w: torch.Tensor) -> torch.Tensor:
        w = log_w.detach().exp()
        return w if weight_clip is None else w.clamp(1.0 / weight_clip, weight_clip)

    if clipping == "joint":
        d = logprobs[:, 0] - logprobs[:, 1]
        d_old = old_logprobs[:, 0] - old_logprobs[:, 1]
        w = weight(log_ratio.sum(1))                                       # sg(ρ1·ρ2)
        losses = torch.maximum(-delta * w * d, -delta * w * torch.clamp(d, d_old - cliprange, d_old + cliprange))
    else:
        ratio = log_ratio.exp()                                            # (B, 2) ρ_i
        clipped = ratio.clamp(1.0 - cliprange, 1.0 + cliprange)
        signed = torch.stack([delta, -delta], dim=1)                       # y1's "advantage" Δ, y2's −Δ
        per_response = torch.maximum(-signed * ratio, -signed * clipped)  # PPO's surrogate per response
        losses = (weight(log_ratio.flip(1)) * per_response).sum(1)         # each weighted by sg(ρ_other)
    return 0.5 * losses.mean()


POLICY_ALGOS = ("apa", "ppo", "awr", "p3o")
"""Policy losses the policy trainer accepts (``p3o``: :func:`p3o_loss`, two responses per prompt)."""
