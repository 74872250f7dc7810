"""The library's local OpenAI server with injectable faults: what the judge client is tested against.

:class:`FakeOpenAIServer` is :class:`starling_lib.judge.server.LocalOpenAIServer` plus faults
(:class:`FaultConfig`), drawn deterministically from ``(seed, request key, attempt number on the
server)``: HTTP 429 with ``Retry-After``, 500, a stall longer than the client's timeout, a 200
whose body is not a chat completion, and a well-formed answer whose text is garbage. After
``max_faults_per_key`` faults for one request the server always answers correctly, so a client
with enough retries always finishes. Only tests use it, so it lives here, not in the library.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from starling_lib.judge.server import LocalOpenAIServer, error_response
from starling_lib.rng import hash_seed

def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now, for a test server started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GARBAGE_ANSWERS = ("I cannot rank these.", "As an AI language model, I have no preference.", "")


@dataclass
class FaultConfig:
    """Probabilities of each fault per request (drawn in this order from one uniform number)."""

    rate_429: float = 0.0
    """HTTP 429 with ``Retry-After`` (and/or ``retry-after-ms``, see ``retry_after_header``)."""
    retry_after_s: float = 0.05
    """The wait the 429 asks for."""
    retry_after_header: str = "seconds"
    """How the wait is sent: ``seconds`` (``Retry-After: 0.05``), ``ms`` (``retry-after-ms``),
    ``both``, or ``none``."""
    rate_500: float = 0.0
    """HTTP 500 with an OpenAI-style error body."""
    rate_timeout: float = 0.0
    """Stall ``timeout_sleep_s`` before answering (longer than the client's timeout)."""
    timeout_sleep_s: float = 5.0
    """How long a stalled request sleeps."""
    rate_malformed_body: float = 0.0
    """HTTP 200 whose body is not valid JSON, or JSON without ``choices``."""
    rate_malformed_answer: float = 0.0
    """A valid response whose text is garbage (e.g. ``"I cannot rank these."``); the client's
    ``validate`` must reject it."""
    max_faults_per_key: int = 3
    """After this many faults for one request key, always answer correctly."""
    seed: int = 0
    """Fault draws are deterministic from (seed, request key, attempt number on the server)."""


def _uniform(*parts) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    return hash_seed(*parts, sep=":", byteorder="big") / 2**64


class FakeOpenAIServer(LocalOpenAIServer):
    """:class:`LocalOpenAIServer` that serves faults per :class:`FaultConfig`."""

    def __init__(self, responder=None, *, faults: FaultConfig | None = None, **kwargs):
        super().__init__(responder, **kwargs)
        self.faults = faults or FaultConfig()
        self._fault_count: Counter = Counter()

    async def _inject(self, key: str, attempt: int):
        fault = self._draw_fault(key, attempt)
        if fault is None:
            return None, None
        self._fault_count[key] += 1
        self.stats.faults[fault] += 1
        if fault == "429":
            return error_response(429, "Rate limit reached (fake server)", "requests", self._retry_after()), None
        if fault == "500":
            return error_response(500, "The server had an error while processing your request.", "server_error"), None
        if fault == "timeout":
            await asyncio.sleep(self.faults.timeout_sleep_s)  # then answer late, if anyone listens
            return None, None
        if fault == "malformed_body":
            return self._malformed_body(key, attempt), None
        garbage = GARBAGE_ANSWERS[int(_uniform("garbage", key, attempt) * len(GARBAGE_ANSWERS))]
        return None, lambda answer: {"text": garbage}

    def _draw_fault(self, key: str, attempt: int) -> str | None:
        f = self.faults
        if self._fault_count[key] >= f.max_faults_per_key:
            return None
        u = _uniform(f.seed, key, attempt)
        for kind, rate in (("429", f.rate_429), ("500", f.rate_500), ("timeout", f.rate_timeout),
                           ("malformed_body", f.rate_malformed_body),
                           ("malformed_answer", f.rate_malformed_answer)):
            if u < rate:
                return kind
            u -= rate
        return None

    def _retry_after(self) -> dict:
        seconds, how = self.faults.retry_after_s, self.faults.retry_after_header
        headers = {}
        if how in ("seconds", "both"):
            headers["Retry-After"] = f"{seconds:g}"
        if how in ("ms", "both"):
            headers["retry-after-ms"] = f"{seconds * 1000:g}"
        return headers

    def _malformed_body(self, key: str, attempt: int) -> web.Response:
        variant = int(_uniform("body", key, attempt) * 3)
        if variant == 0:
            return web.Response(status=200, text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        if variant == 1:
            return web.Response(status=200, text='{"id": "chatcmpl-trunc', content_type="application/json")
        return web.json_response({"id": "chatcmpl-nochoices", "object": "chat.completion", "created": 0})

    def __repr__(self) -> str:
        return f"FakeOpenAIServer({self.base_url!r}, model={self.model!r}, latency_s={self.latency_s})"
