"""What goes into and comes out of the judge client: requests, results, a run's report, prices.

Plain records with no network code, so callers that only build requests or read reports (the
benchmark modules, the ranking study) need neither ``openai`` nor a client.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

# USD per 1M (input, output) tokens, standard (non-batch) tier, from https://openai.com/api/pricing
# and the model pages (gpt-4o at 2.50/10 since 2024-10; table as of 2025-01, not re-checked
# offline). Prices change: override with JudgeConfig.prices. Local models are free only if listed.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-0613": (30.0, 60.0),  # the paper's judge
    "gpt-4": (30.0, 60.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-3.5-turbo": (0.5, 1.5),
}
_DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # gpt-4o-2024-08-06 is priced as gpt-4o


def estimate_cost(model: str, prompt_tokens: int, completion_tokens: int,
                  prices: dict | None = None) -> float | None:
    """USD for the tokens at ``prices`` (merged over :data:`DEFAULT_PRICES`); ``None`` if unpriced."""
    table = {**DEFAULT_PRICES, **{name: tuple(p) for name, p in (prices or {}).items()}}
    price = table.get(model) or table.get(_DATED_SNAPSHOT.sub("", model))
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


@dataclass
class JudgeRequest:
    """One chat request to the judge."""

    id: str
    """The caller's item id, unique within a run."""
    messages: list[dict]
    """OpenAI chat messages."""
    params: dict = field(default_factory=dict)
    """Sampling parameters merged over the config's (temperature, max_tokens, top_p, seed,
    logprobs, top_logprobs, n, ...); a ``None`` value removes a config default."""


@dataclass
class JudgeResult:
    """What came back for one request."""

    id: str
    key: str
    """Cache key (:func:`~starling_lib.judge.cache.request_key`)."""
    status: str
    """``ok`` or ``failed``."""
    text: str | None
    reason: str | None
    """Why it failed: ``kind: detail``, e.g. ``rate_limited: 429 (gave up after 7 attempts)``."""
    attempts: int
    """HTTP requests sent for it (0: from the cache, or a duplicate of an earlier request)."""
    cached: bool
    usage: dict = field(default_factory=dict)
    """``{"prompt_tokens": .., "completion_tokens": ..}`` of the accepted answer."""
    raw: dict | None = None
    """The response's first choice (message, logprobs, finish_reason; ``other_choices`` if n > 1)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class JudgeRunReport:
    """The outcome of :meth:`JudgeClient.run`: results in request order, plus accounting."""

    results: list[JudgeResult]
    model: str
    n_ok: int
    n_failed: int
    n_cached: int
    n_sent: int
    """HTTP requests actually sent, retries included."""
    usage: dict
    """Tokens billed this run (``prompt_tokens``, ``completion_tokens``; answers the validator
    rejected included) and those of answers read from the cache (``cached_*``)."""
    cost_usd: float | None
    """Cost of this run's tokens; ``None`` when the model has no price."""
    elapsed_s: float
    failures: dict[str, int]
    """Failed items by reason kind (``rate_limited``, ``timeout``, ``invalid_answer``, ...)."""
    notes: list[str] = field(default_factory=list)

    def texts(self) -> dict[str, str | None]:
        return {r.id: r.text for r in self.results}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def format_text(self) -> str:
        n = len(self.results)
        failed = ""
        if self.n_failed:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items(), key=lambda kv: -kv[1]))
            failed = f", {self.n_failed} failed ({kinds})"
        u = self.usage
        cost = (f"cost ${self.cost_usd:,.4f}" if self.cost_usd is not None
                else f"cost unknown (no price for {self.model!r}; set JudgeConfig.prices)")
        rate = n / self.elapsed_s if self.elapsed_s > 0 else float("inf")
        return (f"judge {self.model}: {n} requests, {self.n_ok} ok ({self.n_cached} from cache){failed}; "
                f"{self.n_sent} HTTP requests sent; tokens this run {u['prompt_tokens']:,} prompt + "
                f"{u['completion_tokens']:,} completion (cached answers {u['cached_prompt_tokens']:,} + "
                f"{u['cached_completion_tokens']:,}); {cost}; {self.elapsed_s:.1f} s ({rate:.1f} requests/s).")
