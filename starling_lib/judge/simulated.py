"""A simulated K-wise judge with a positional bias, for the offline default and power analysis.

The judge ranks answers by Plackett-Luce sampling (Gumbel-max) on a utility per answer:

    u_i = quality(prompt, answer_i) / temperature + bias[strategy][position_i] + Gumbel(0, 1)

``quality`` is the tiny world's gold reward (:func:`starling_lib.data.gold.gold_reward`), so
the judge is right more often than not; ``bias`` is a log-weight per input position. With no
quality differences, the probability that position ``i`` comes first is ``softmax(bias)_i``; so
``bias = log(first-place frequency)`` makes a quality-blind judge reproduce a measured profile.

Default profiles (:data:`REAL_FIRST_PLACE_COUNTS`) are the first-place counts by input position
measured from GPT-4's ``ranking_order`` in the authors' rating logs
(``../shared/data/starling_ratings/<strategy>/rankings.jsonl``, github efrick2002/Starling,
``nectar/ratings/results/``; a test recomputes them from the files). Because quality also decides
who wins, a judge with these log-weights is *less* biased than GPT-4 was; :func:`calibrate_bias`
finds the log-weights that reproduce a target profile on a given set of prompts instead.

:meth:`SimulatedJudge.respond` answers an OpenAI chat request built by
:func:`starling_lib.judge.prompts.build_ranking_request` (plug it into the fake server as its
``responder``); it recognises the strategy from the system prompt. Every draw is seeded by the
judge's seed and the request text, so the same request always gets the same answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.tinyworld import gold_reward, parse_prompt
from ..rng import seeded_rng
from .parse import LETTERS
from .prompts import parse_user_message, strategy_of_system_prompt

# First-place counts by input position (A..G) from GPT-4's recorded ranking_order, 7 answers per
# prompt; n = rows in each log.
REAL_FIRST_PLACE_COUNTS: dict[str, tuple[int, ...]] = {
    "no_pairwise": (61, 60, 34, 19, 9, 6, 6),  # n=195
    "pairwise_no_given_order": (52, 42, 20, 25, 21, 16, 11),  # n=187
    "pairwise_not_random": (54, 25, 18, 31, 25, 18, 28),  # n=199
    "baseline_no_tiebreak": (54, 34, 15, 26, 21, 24, 20),  # n=194
    "tiebreak_order_given": (40, 27, 19, 30, 23, 27, 21),  # n=187
    "tiebreak_order_given_static_2": (38, 35, 11, 31, 13, 29, 24),  # n=181
}


def log_weights(frequencies, k: int | None = None) -> np.ndarray:
    """Centred log first-place frequencies, resampled to ``k`` positions when ``k`` differs."""
    freq = np.asarray(frequencies, dtype=float)
    freq = freq / freq.sum()
    if k is not None and k != len(freq):
        # Same profile over relative position (first .. last), renormalised.
        freq = np.interp(np.linspace(0, 1, k), np.linspace(0, 1, len(freq)), freq)
        freq = freq / freq.sum()
    logw = np.log(np.clip(freq, 1e-6, None))
    return logw - logw.mean()


def default_profiles() -> dict[str, np.ndarray]:
    """Log-weights per strategy from the real logs (see :data:`REAL_FIRST_PLACE_COUNTS`)."""
    return {name: log_weights(counts) for name, counts in REAL_FIRST_PLACE_COUNTS.items()}


@dataclass
class SimulatedJudge:
    """Plackett-Luce judge on ``quality / temperature`` plus a log-weight per input position."""

    profiles: dict[str, np.ndarray] = field(default_factory=default_profiles)
    """Log-weights by input position, per strategy (length K, or resampled to K)."""
    temperature: float = 0.5
    """Plackett-Luce temperature on the quality (lower = more often right)."""
    bias_scale: float = 1.0
    """Multiplies every profile (0 = an unbiased judge)."""
    seed: int = 0
    """Seed mixed into every draw."""
    quality: Callable[[str, str], float] = gold_reward
    """Score of ``(prompt, answer)``; the tiny world's gold reward by default."""

    def bias(self, strategy: str, k: int) -> np.ndarray:
        if strategy not in self.profiles:
            raise KeyError(f"no position-bias profile for strategy {strategy!r}; have {sorted(self.profiles)}")
        profile = np.asarray(self.profiles[strategy], dtype=float)
        if len(profile) != k:
            profile = log_weights(np.exp(profile), k)
        return self.bias_scale * profile

    def utilities(self, prompt: str, answers_in_order: list[str], strategy: str) -> np.ndarray:
        """Deterministic part of the utility of each input position."""
        q = np.array([self.quality(prompt, a) for a in answers_in_order], dtype=float)
        return q / max(self.temperature, 1e-9) + self.bias(strategy, len(answers_in_order))

    def rank(self, prompt: str, answers_in_order: list[str], strategy: str, *, key: str = "") -> list[int]:
        """Input positions best first (a Gumbel-max Plackett-Luce draw, seeded by ``key``)."""
        u = self.utilities(prompt, answers_in_order, strategy)
        rng = seeded_rng(self.seed, key or json.dumps([prompt, answers_in_order, strategy]))
        noisy = u + rng.gumbel(size=len(u))
        return [int(i) for i in np.argsort(-noisy, kind="stable")]

    def respond(self, request: dict) -> str:
        """Answer a ranking request (OpenAI chat JSON) the way GPT-4 did: a verdict, then ``[[...]]``."""
        messages = request.get("messages") or []
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        strategy = strategy_of_system_prompt(system)
        if strategy is None:
            return "I can only rank answers when given one of this project's ranking prompts."
        prompt, answers = parse_user_message(user)
        order = self.rank(prompt, answers, strategy, key=json.dumps(messages, sort_keys=True))
        letters = ", ".join(f"'{LETTERS[i]}'" for i in order)
        nature = "good natured" if parse_prompt(prompt).good_natured else "not good natured"
        return f"This is a {nature} conversation.\n\n[[{letters}]]"


def first_place_probabilities(utilities: np.ndarray) -> np.ndarray:
    """``P(position i ranked first)`` under Plackett-Luce: ``softmax(utilities)`` over the last axis."""
    u = np.asarray(utilities, dtype=float)
    e = np.exp(u - u.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def expected_first_place(qualities: np.ndarray, bias: np.ndarray, temperature: float, n_perm: int = 32,
                         seed: int = 0) -> np.ndarray:
    """Expected first-place frequency by position when each prompt's answers are shuffled at random.

    ``qualities``: ``(N, K)`` quality of each prompt's answers; ``bias``: ``(K,)`` log-weights.
    Averages the exact Plackett-Luce first-place probabilities over ``n_perm`` shuffles per prompt.
    """
    q = np.asarray(qualities, dtype=float) / max(temperature, 1e-9)
    rng = np.random.default_rng(seed)
    n, k = q.shape
    perms = np.argsort(rng.random((n, n_perm, k)), axis=-1)  # (N, P, K) random shuffles
    shuffled = np.take_along_axis(np.broadcast_to(q[:, None, :], perms.shape), perms, axis=-1)
    return first_place_probabilities(shuffled + bias).mean(axis=(0, 1))


def calibrate_bias(target_frequencies, qualities: np.ndarray, temperature: float, *, iters: int = 60,
                   n_perm: int = 32, seed: int = 0) -> np.ndarray:
    """Log-weights that make a judge on these ``qualities`` reproduce ``target_frequencies``.

    Fixed-point iteration ``bias += log(target / expected)``: the expected first-place frequency
    is increasing in each position's own weight, so this converges for reachable targets (a target
    too extreme for the quality spread saturates at large weights; the result says so by its
    residual, which the caller can check with :func:`expected_first_place`).
    """
    target = np.asarray(target_frequencies, dtype=float)
    target = target / target.sum()
    bias = log_weights(target)
    for _ in range(iters):
        got = expected_first_place(qualities, bias, temperature, n_perm=n_perm, seed=seed)
        bias = bias + np.log(target / got)
        bias = bias - bias.mean()
    return bias
