"""Level 1 of notebook 02: a linear reward on random features, K-wise MLE vs split-pairs MLE.

What it is for: the cleanest setting in which to ask Starling's design question, "train the
reward model on the whole 7-wise ranking, or on its 21 pairs?", with the answer known exactly.

The model (Zhu, Jordan & Jiao, "Principled Reinforcement Learning with Human Feedback from
Pairwise or K-wise Comparisons", ICML 2023, arXiv 2301.11270, Section 4):

- each prompt has K answers with features ``φ ~ N(0, feature_scale² I_d)``;
- the true reward is linear, ``r(φ) = θ*·φ``;
- the ranking is drawn from Plackett-Luce: the best answer is chosen with probability
  ``softmax(r)``, then the best of the rest, and so on. We sample it with the Gumbel-max trick:
  sorting ``r + Gumbel noise`` in descending order gives exactly a PL ranking (Yellott 1977).

Two estimators of θ* from n ranked prompts:

- **K-wise MLE** (``"kwise"``, their eq. 4): minimise the Plackett-Luce negative log-likelihood
  of each whole ranking, :func:`starling_lib.losses.plackett_luce_loss`.
- **Split-pairs MLE** (``"pairwise"``): split each ranking into its K(K-1)/2 pairs and treat them
  as independent Bradley-Terry comparisons, :func:`starling_lib.losses.pairwise_loss`. The pairs
  of one ranking are *not* independent, so this is a composite (pseudo-)likelihood.

Both are consistent: PL's pairwise marginals are exactly Bradley-Terry
(``P(i ranked above j) = σ(r_i - r_j)``), so the split-pairs score equation is unbiased. But only
the K-wise MLE is the true likelihood, hence asymptotically efficient (it attains the
Cramér-Rao bound), while the split-pairs estimator has a larger sandwich covariance; Zhu et al.
(Section 4) prove both consistent and the split-pairs estimator asymptotically less efficient.
:func:`estimation_errors` measures both on the same data; :func:`summarise_errors` reports the
ratio of their mean squared errors.

``"adjacent"`` (only the K-1 neighbouring pairs, as a loss) is *not* a consistent estimator here:
which pairs end up adjacent depends on the sampled ranking, so they over-represent close calls and
θ̂ shrinks towards 0 (measured at n = 20000, d = 8, K = 7, ‖θ*‖ = 2: ‖θ̂‖ ≈ 0.58 ‖θ*‖, direction
still within 0.5°). Compare it by ``angle_deg``, not ``error``.

:func:`fit_linear_reward` is also notebook 02's level 3: a linear reward head on frozen MiniLM
sentence embeddings (d = 384, with ``l2 > 0``).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pandas as pd
import torch

from starling_lib.losses import ranking_loss
from starling_lib.reward.metrics import mean_ci

DEFAULT_THETA_NORM = 2.0
"""‖θ*‖ of :func:`estimation_errors`: reward sd 2 across answers with unit features, so a ranking
carries real signal (the truly best answer is ranked first about 59% of the time at K = 7) yet is far
from deterministic."""


def draw_theta(dim: int, theta_norm: float = DEFAULT_THETA_NORM, seed: int = 0) -> np.ndarray:
    """``(dim,)`` a uniformly random direction scaled to length ``theta_norm`` (the true θ*)."""
    theta = np.random.default_rng([seed, 0]).standard_normal(dim)
    return theta * (theta_norm / np.linalg.norm(theta))


def sample_rankings(n_prompts: int, k: int, theta, rng, feature_scale: float = 1.0) -> np.ndarray:
    """Features of ``n_prompts`` × ``k`` answers, each row ordered best first by a Plackett-Luce draw.

    Args:
        theta: ``(d,)`` true reward weights θ*.
        rng: ``numpy.random.Generator`` (or an int seed).
        feature_scale: sd of each feature, ``φ ~ N(0, feature_scale² I_d)``.
    Returns:
        ``(n_prompts, k, d)`` float64, column 0 the answer ranked first.
    """
    rng = np.random.default_rng(rng)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 1:
        raise ValueError(f"theta must be (d,), got shape {theta.shape}")
    features = rng.normal(scale=feature_scale, size=(n_prompts, k, theta.shape[0]))  # (n, K, d)
    rewards = features @ theta                                                         # (n, K)
    # Gumbel-max: argsort of r + Gumbel(0, 1) noise, descending, is a Plackett-Luce sample.
    order = np.argsort(-(rewards + rng.gumbel(size=rewards.shape)), axis=1)
    return np.take_along_axis(features, order[:, :, None], axis=1)


@contextlib.contextmanager
def _one_thread():
    """Run torch single-threaded inside, restoring the caller's setting after.

    The tensors of a fit are tiny (thousands of elements), so intra-op threads buy nothing, and on
    a 2-core machine with anything else running, OpenMP workers waiting for a busy core made
    :func:`estimation_errors` 10-40× slower (measured: 3 s single-threaded vs 17-120 s with 2 threads).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _reward_space_derivatives(features: torch.Tensor, theta: torch.Tensor, loss_type: str,
                              mask: torch.Tensor | None, top_k: int | None, hessian: bool):
    """Loss, its gradient ``(n, K)`` and block Hessian ``(n, K, K)`` with respect to the rewards.

    The loss is a sum over prompts (divided by a constant that depends only on the mask), so its
    Hessian in reward space is block diagonal: ``K`` backward passes through the gradient give
    every prompt's ``K × K`` block at once, whatever ``d`` is.
    """
    rewards = (features @ theta).requires_grad_(True)                                  # (n, K)
    loss = ranking_loss(rewards, loss_type, mask, top_k=top_k)
    (grad_r,) = torch.autograd.grad(loss, rewards, create_graph=hessian)
    if not hessian:
        return loss.detach(), grad_r, None
    blocks = []
    for c in range(rewards.shape[1]):
        (row,) = torch.autograd.grad(grad_r[:, c].sum(), rewards, retain_graph=True, allow_unused=True)
        blocks.append(torch.zeros_like(rewards) if row is None else row)
    return loss.detach(), grad_r.detach(), torch.stack(blocks, dim=1)                 # (n, K, K)


def _design(features, mask) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(n, K, d)`` float64 tensor with absent answers zeroed, and the ``(n, K)`` bool mask (or None)."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    if x.dim() != 3:
        raise ValueError(f"features must be (n, K, d), got shape {tuple(x.shape)}")
    if mask is not None:
        mask = torch.as_tensor(np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask), dtype=torch.bool)
        if mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match features (n, K) = {tuple(x.shape[:2])}")
        # Absent answers may hold NaN features; zero them so no NaN reaches a gradient (0 · NaN = NaN).
        x = x.masked_fill(~mask[:, :, None], 0.0)
    if not torch.isfinite(x).all():
        raise ValueError("features must be finite where answers are present")
    return x, mask


def _newton(x: torch.Tensor, loss_type: str, mask: torch.Tensor | None, l2: float, top_k: int | None,
            theta: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, float]:
    """Damped Newton's method on the convex objective; returns θ and its final gradient norm."""
    n, k, d = x.shape

    def objective(theta: torch.Tensor) -> float:
        return float(ranking_loss(x @ theta, loss_type, mask, top_k=top_k)) + 0.5 * l2 * float(theta @ theta)

    eye = torch.eye(d, dtype=torch.float64)
    for _ in range(max_iter):
        loss, grad_r, hess_r = _reward_space_derivatives(x, theta, loss_type, mask, top_k, hessian=True)
        grad = torch.einsum("nkd,nk->d", x, grad_r) + l2 * theta                       # (d,)
        if float(grad.norm()) < tol:
            return theta, float(grad.norm())
        x_h = torch.einsum("nkd,nkl->nld", x, hess_r).reshape(n * k, d)               # (n*K, d)
        hess = x_h.T @ x.reshape(n * k, d) + l2 * eye                                  # (d, d)
        hess = 0.5 * (hess + hess.T)
        chol, info = torch.linalg.cholesky_ex(hess)
        if info == 0:
            step = torch.cholesky_solve(grad[:, None], chol)[:, 0]
        else:  # singular Hessian (features span fewer than d directions, l2 = 0): least-norm step
            step = torch.linalg.lstsq(hess, grad[:, None], driver="gelsd").solution[:, 0]
        # Backtracking (Armijo) line search on the full objective. Once the Newton decrement
        # gᵀH⁻¹g is ~1e-12 the predicted decrease is below float64 resolution of the loss, so
        # the test cannot be trusted; there Newton is in its quadratic phase and takes the full step.
        value = float(loss) + 0.5 * l2 * float(theta @ theta)
        slope = float(grad @ step)
        t = 1.0
        while slope > 1e-12 * max(1.0, abs(value)) and objective(theta - t * step) > value - 1e-4 * t * slope:
            t *= 0.5
            if t < 1e-12:
                break
        if t < 1e-12:
            return theta, float(grad.norm())  # no progress possible in float64
        theta = theta - t * step
    _, grad_r, _ = _reward_space_derivatives(x, theta, loss_type, mask, top_k, hessian=False)
    return theta, float((torch.einsum("nkd,nk->d", x, grad_r) + l2 * theta).norm())


def fit_linear_reward(features, loss_type: str, mask=None, l2: float = 0.0, top_k: int | None = None, *,
                      theta0=None, tol: float = 1e-8, max_iter: int = 100) -> np.ndarray:
    """θ̂ minimising ``ranking_loss(features @ θ, loss_type) + l2/2 ‖θ‖²`` (the MLE when ``l2 = 0``).

    ``ranking_loss`` averages (over prompts for ``kwise``, over pairs for ``pairwise`` /
    ``adjacent``), so ``l2`` is a penalty per prompt or per pair. Both losses are convex in θ, so
    damped Newton's method (backtracking line search) reaches the minimum in a handful of
    steps; the Hessian is ``Σ_n X_nᵀ H_n X_n + l2 I`` with ``H_n`` the ``K × K`` reward-space
    block of prompt n.

    Args:
        features: ``(n, K, d)`` answer features, each row **best first**.
        loss_type: ``kwise`` | ``pairwise`` | ``adjacent`` (:data:`starling_lib.losses.LOSS_TYPES`).
        mask: optional ``(n, K)`` bool, ``True`` = present (features of absent answers are ignored).
        l2: ridge penalty; needed when d is large relative to n (or the data are separable).
        top_k: K-wise loss on the first ``top_k`` choices only.
        theta0: ``(d,)`` starting point (default zeros); a nearby θ saves Newton steps.
        tol: converged when the gradient norm is below this.
    Returns:
        ``(d,)`` float64 numpy θ̂.
    Raises:
        RuntimeError: if Newton's method stops before the gradient norm reaches ``tol``.
    Warns:
        RuntimeWarning: with ``l2 = 0``, if the loss at θ̂ is ~0 (separable rankings: no MLE).
    """
    x, mask = _design(features, mask)
    n, k, d = x.shape
    theta = torch.zeros(d, dtype=torch.float64) if theta0 is None else torch.as_tensor(
        np.asarray(theta0, dtype=np.float64)).clone()
    if theta.shape != (d,):
        raise ValueError(f"theta0 must be (d,) = ({d},), got shape {tuple(theta.shape)}")
    with _one_thread():
        theta, grad_norm = _newton(x, loss_type, mask, l2, top_k, theta, tol, max_iter)
        final_loss = float(ranking_loss(x @ theta, loss_type, mask, top_k=top_k))
    if grad_norm >= tol:
        raise RuntimeError(
            f"fit_linear_reward({loss_type!r}) did not converge: gradient norm {grad_norm:.2e} >= tol {tol:.0e} "
            f"after Newton's method (n={n}, K={k}, d={d}, l2={l2}); if the rankings are separable "
            f"the MLE does not exist, so set l2 > 0")
    if l2 == 0 and final_loss < 1e-6:
        warnings.warn(f"fit_linear_reward({loss_type!r}): loss ~0 at θ̂ (‖θ̂‖ = {float(theta.norm()):.3g}); "
                      "the rankings look separable, so the MLE does not exist; set l2 > 0",
                      RuntimeWarning, stacklevel=2)
    return theta.numpy()


def loss_gradient(features, theta, loss_type: str, mask=None, l2: float = 0.0, top_k: int | None = None) -> np.ndarray:
    """``(d,)`` gradient of :func:`fit_linear_reward`'s objective at ``theta`` (≈ 0 at θ̂), by plain autograd."""
    x, mask = _design(features, mask)
    theta = torch.as_tensor(np.asarray(theta, dtype=np.float64)).requires_grad_(True)
    objective = ranking_loss(x @ theta, loss_type, mask, top_k=top_k) + 0.5 * l2 * theta @ theta
    (grad,) = torch.autograd.grad(objective, theta)
    return grad.numpy()


def estimation_errors(n_grid, seeds=20, dim: int = 8, k: int = 7, theta_norm: float = DEFAULT_THETA_NORM,
                      l2: float = 0.0, estimators=("kwise", "pairwise"), base_seed: int = 0,
                      feature_scale: float = 1.0) -> pd.DataFrame:
    """Estimation error of each estimator on the same simulated rankings, per ``(n, seed)``.

    θ* = :func:`draw_theta` ``(dim, theta_norm, base_seed)``, fixed for the call. Each seed draws
    ``max(n_grid)`` rankings once and every n uses its first n prompts, so within a seed the
    learning curve adds data rather than redrawing it, and at one ``(n, seed)`` all estimators see
    identical data (their differences are paired).

    Args:
        n_grid: numbers of ranked prompts.
        seeds: number of seeds (``0 … seeds-1``) or an iterable of seeds.
        estimators: loss types passed to :func:`fit_linear_reward`.
    Returns:
        one row per ``(n, seed, estimator)`` with columns ``n``, ``seed``, ``estimator``,
        ``error`` (‖θ̂ - θ*‖₂) and ``angle_deg`` (angle between θ̂ and θ*, degrees: what ranking
        quality depends on). ``df.attrs["theta_star"]`` holds θ*.
    """
    theta_star = draw_theta(dim, theta_norm, base_seed)
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    n_grid = sorted(int(n) for n in n_grid)
    rows = []
    for seed in seed_list:
        rng = np.random.default_rng([base_seed, 1, seed])
        features = sample_rankings(n_grid[-1], k, theta_star, rng, feature_scale)               # (max n, K, d)
        previous = {}
        for n in n_grid:
            for estimator in estimators:
                # Warm start from the same estimator at the previous n: same minimum, fewer Newton steps.
                theta_hat = fit_linear_reward(features[:n], estimator, l2=l2, theta0=previous.get(estimator))
                previous[estimator] = theta_hat
                cosine = theta_hat @ theta_star / max(np.linalg.norm(theta_hat) * theta_norm, 1e-300)
                rows.append({"n": n, "seed": seed, "estimator": estimator,
                             "error": float(np.linalg.norm(theta_hat - theta_star)),
                             "angle_deg": float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))})
    df = pd.DataFrame(rows, columns=["n", "seed", "estimator", "error", "angle_deg"])
    df.attrs["theta_star"] = theta_star
    return df


def summarise_errors(df: pd.DataFrame, confidence: float = 0.95, reference: str = "kwise",
                     n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per ``(n, estimator)``: mean error with a t-interval across seeds, MSE, and the MSE ratio.

    Columns: ``n``, ``estimator``, ``n_seeds``, ``mean_error``, ``error_low``, ``error_high``
    (t-interval of the mean error across seeds), ``mse`` (mean of error²), ``mse_ratio``
    (``mse / mse of the reference`` on the same seeds: for ``pairwise`` with the default
    ``reference="kwise"`` this is the efficiency of the K-wise MLE relative to split pairs,
    > 1 when K-wise is better; 1 for the reference itself) and ``mse_ratio_low`` /
    ``mse_ratio_high`` (percentile bootstrap over seeds, resampled jointly for both estimators so
    the pairing is kept). Ratios are NaN when ``reference`` is absent from ``df``.
    """
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    out = []
    for n, at_n in df.groupby("n", sort=True):
        squared = at_n.pivot_table(index="seed", columns="estimator", values="error", aggfunc="first") ** 2
        # Seeds drawn once per n and shared by all estimators: the bootstrap keeps the pairing.
        boot_idx = rng.integers(0, len(squared), size=(n_boot, len(squared)))
        for estimator in at_n["estimator"].unique():
            errors = at_n.loc[at_n["estimator"] == estimator, "error"].to_numpy()
            mean, low, high = mean_ci(errors, confidence)
            ratio = ratio_low = ratio_high = float("nan")
            if reference in squared.columns:
                paired = squared[[estimator, reference]].dropna().to_numpy()
                ratio = paired[:, 0].mean() / paired[:, 1].mean()
                if len(paired) == len(squared):
                    boot = paired[boot_idx]                                           # (n_boot, seeds, 2)
                    ratios = boot[:, :, 0].mean(1) / boot[:, :, 1].mean(1)
                    ratio_low, ratio_high = np.quantile(ratios, [alpha, 1 - alpha])
            out.append({"n": n, "estimator": estimator, "n_seeds": len(errors), "mean_error": mean,
                        "error_low": low, "error_high": high, "mse": float(np.mean(errors ** 2)),
                        "mse_ratio": float(ratio), "mse_ratio_low": float(ratio_low),
                        "mse_ratio_high": float(ratio_high)})
    return pd.DataFrame(out)


def efficiency_headlines(df: pd.DataFrame, summary: pd.DataFrame, reference: str = "kwise",
                         other: str = "pairwise") -> dict:
    """What notebook 02's level 1 claims, from :func:`estimation_errors` (``df``) and
    :func:`summarise_errors` (``summary``): ``slopes`` (per estimator, the log-log slope of mean error
    against n; -1/2 at the parametric rate), ``pooled_mse_ratio`` (``other``'s squared errors summed
    over every n and seed, over ``reference``'s: the stable efficiency number) and ``mse_ratio_range``
    (the smallest and largest per-n ratio)."""
    slopes = {name: np.polyfit(np.log(part.n), np.log(part.mean_error), 1)[0] for name, part in summary.groupby("estimator")}
    pooled = float((df[df.estimator == other].error.values ** 2).sum() / (df[df.estimator == reference].error.values ** 2).sum())
    ratios = summary[summary.estimator == other].mse_ratio
    return {"slopes": slopes, "pooled_mse_ratio": pooled, "mse_ratio_range": (float(ratios.min()), float(ratios.max()))}
