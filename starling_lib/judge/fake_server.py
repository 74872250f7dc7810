"""A real OpenAI-compatible HTTP server on 127.0.0.1, with latency and injectable faults.

Tests, notebooks and the throughput benchmark talk to it through the real ``openai`` client, so
the judge client is checked over real HTTP, never by mocking its internals. It serves
``POST /v1/chat/completions`` (the OpenAI response schema: ``id``, ``object``, ``created``,
``model``, ``choices[i].message``, ``finish_reason``, ``logprobs`` when asked, ``usage`` with
whitespace word counts as tokens), ``GET /v1/models``, and ``GET /_stats`` (its counters as JSON).

What it answers comes from a ``responder(request_json) -> str | dict`` (a dict may carry
``text``, ``logprobs`` and ``finish_reason``); the default is deterministic from the messages. A
simulated ranking judge plugs in as ``responder=SimulatedJudge(...).respond``.

Faults (:class:`FaultConfig`) are drawn deterministically from ``(seed, request key, attempt
number on the server)``: HTTP 429 with ``Retry-After``, 500, a stall longer than the client's
timeout, a 200 whose body is not a chat completion, and a well-formed answer whose text is garbage.
After ``max_faults_per_key`` faults for one request the server always answers correctly, so a
client with enough retries always finishes. A responder may raise :class:`HTTPFault` to send any
status (400, 422, ...).

In a test: ``with FakeOpenAIServer(latency_s=0.02) as server: ... server.base_url``. As its own
process (the benchmark, so the client does not share a GIL with it)::

    python -m starling_lib.judge.fake_server --port 0 --latency 0.1

prints its base URL as the first line of stdout and serves until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import inspect
import json
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Collection

from aiohttp import web

from starling_lib.judge.cache import canonical_json, request_key

Responder = Callable[[dict], "str | dict | Awaitable[str | dict]"]

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


class HTTPFault(Exception):
    """Raised by a responder to make the server answer with ``status`` and an OpenAI error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.headers = status, message, type, headers or {}


@dataclass
class ServerStats:
    """What the server saw. Mutated on the server's thread; read anywhere (plain counters)."""

    requests: int = 0
    """Chat-completion requests received (every attempt counts)."""
    answers: int = 0
    """Correct answers served (HTTP 200 with the responder's text)."""
    faults: Counter = field(default_factory=Counter)
    """Faults served, by kind: ``429``, ``500``, ``timeout``, ``malformed_body``,
    ``malformed_answer``, ``401``, ``http_<status>``."""
    per_key: Counter = field(default_factory=Counter)
    """Requests per request key (:func:`starling_lib.judge.cache.request_key`)."""
    answers_per_key: Counter = field(default_factory=Counter)
    """Correct answers served per request key."""
    arrivals: dict = field(default_factory=lambda: defaultdict(list))
    """``time.monotonic()`` of each request's arrival, per request key."""
    in_flight: int = 0
    """Chat requests being handled now."""
    max_in_flight: int = 0
    """Most chat requests handled at once."""
    authorizations: Counter = field(default_factory=Counter)
    """``Authorization`` header values seen (so tests can check the key travels only over HTTP)."""

    def to_dict(self) -> dict:
        return {"requests": self.requests, "answers": self.answers, "faults": dict(self.faults),
                "per_key": dict(self.per_key), "answers_per_key": dict(self.answers_per_key),
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                # Fingerprints, never the header itself: /_stats must not hand out a key it was sent.
                "authorization_sha256": {hashlib.sha256(a.encode()).hexdigest()[:16]: n
                                         for a, n in self.authorizations.items()}}


def default_responder(body: dict) -> str:
    """A deterministic answer from the messages alone: ``answer:<first 8 hex of their sha256>``."""
    digest = hashlib.sha256(canonical_json(body.get("messages")).encode("utf-8")).hexdigest()
    return f"answer:{digest[:8]}"


def _word_count(messages) -> int:
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, list):  # content parts
            content = " ".join(str(part.get("text", "")) if isinstance(part, dict) else str(part)
                               for part in content)
        total += len(str(content or "").split())
    return total


def _uniform(*parts) -> float:
    """A deterministic number in [0, 1) from ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _first_token_logprobs(text: str, top_n: int) -> dict:
    token = text.split()[0] if text.split() else text
    top = [{"token": token, "logprob": 0.0, "bytes": list(token.encode())}]
    top += [{"token": f"<alt{i}>", "logprob": -10.0 - i, "bytes": list(f"<alt{i}>".encode())}
            for i in range(1, max(top_n, 1))]
    return {"content": [{"token": token, "logprob": 0.0, "bytes": list(token.encode()),
                         "top_logprobs": top[:top_n]}], "refusal": None}


def _error(status: int, message: str, type: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


class FakeOpenAIServer:
    """OpenAI-compatible chat server in a background thread with its own event loop."""

    def __init__(self, responder: Responder | None = None, *, latency_s: float = 0.0,
                 faults: FaultConfig | None = None, model: str = "tiny-judge", host: str = "127.0.0.1",
                 port: int = 0, api_keys: Collection[str] | None = None, strict_model: bool = False):
        """``api_keys``: when given, other keys get 401; ``strict_model``: other models get 404."""
        self.responder = responder or default_responder
        self.latency_s = latency_s
        self.faults = faults or FaultConfig()
        self.model = model
        self.host, self.port = host, port
        self.api_keys = None if api_keys is None else set(api_keys)
        self.strict_model = strict_model
        self.stats = ServerStats()
        self._fault_count: Counter = Counter()
        self._completion_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ---- HTTP handlers -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_stats", self._stats)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "starling-fake"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_dict())

    async def _chat(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            return await self._answer(request)
        finally:
            stats.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        stats = self.stats
        auth = request.headers.get("Authorization", "")
        stats.authorizations[auth] += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            stats.faults["http_400"] += 1
            return _error(400, "request body is not a JSON object", "invalid_request_error")
        messages = body.get("messages")
        model = body.get("model")
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        key = request_key(model, messages, params)
        attempt = stats.per_key[key]
        stats.per_key[key] += 1
        stats.arrivals[key].append(time.monotonic())
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

        if self.api_keys is not None and auth.removeprefix("Bearer ") not in self.api_keys:
            stats.faults["401"] += 1
            # Echoes the key, as a careless proxy might: the client must not repeat server text.
            return _error(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                          "invalid_request_error")
        if not isinstance(messages, list) or not messages:
            stats.faults["http_400"] += 1
            return _error(400, "'messages' must be a non-empty array", "invalid_request_error")
        if self.strict_model and model != self.model:
            stats.faults["http_404"] += 1
            return _error(404, f"The model '{model}' does not exist", "invalid_request_error")

        fault = self._draw_fault(key, attempt)
        if fault is not None:
            self._fault_count[key] += 1
            stats.faults[fault] += 1
            if fault == "429":
                return _error(429, "Rate limit reached (fake server)", "requests", self._retry_after())
            if fault == "500":
                return _error(500, "The server had an error while processing your request.", "server_error")
            if fault == "timeout":
                await asyncio.sleep(self.faults.timeout_sleep_s)  # then answer late, if anyone listens
            if fault == "malformed_body":
                return self._malformed_body(key, attempt)

        try:
            answer = self.responder(body)
            if inspect.isawaitable(answer):
                answer = await answer
        except HTTPFault as exc:
            stats.faults[f"http_{exc.status}"] += 1
            return _error(exc.status, exc.message, exc.type, exc.headers)
        except Exception as exc:  # a broken responder is a server error, not a crashed server
            stats.faults["http_500"] += 1
            return _error(500, f"responder failed: {type(exc).__name__}: {exc}", "server_error")
        answer = dict(answer) if isinstance(answer, dict) else {"text": str(answer)}
        if fault == "malformed_answer":
            answer = {"text": GARBAGE_ANSWERS[int(_uniform("garbage", key, attempt) * len(GARBAGE_ANSWERS))]}
        else:
            stats.answers += 1
            stats.answers_per_key[key] += 1
        return web.json_response(self._completion(body, messages, answer))

    # ---- pieces --------------------------------------------------------------------------------

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

    def _completion(self, body: dict, messages: list, answer: dict) -> dict:
        text = answer.get("text") or ""
        n = int(body.get("n") or 1)
        logprobs = None
        if body.get("logprobs"):
            logprobs = answer.get("logprobs") or _first_token_logprobs(text, int(body.get("top_logprobs") or 0))
        choice = {"message": {"role": "assistant", "content": text, "refusal": None},
                  "logprobs": logprobs, "finish_reason": answer.get("finish_reason", "stop")}
        self._completion_id += 1
        prompt_tokens, completion_tokens = _word_count(messages), len(text.split()) * n
        return {"id": f"chatcmpl-fake{self._completion_id}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model") or self.model,
                "system_fingerprint": "fp_starling_fake",
                "choices": [{"index": i, **choice} for i in range(n)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> "FakeOpenAIServer":
        """Start serving in a daemon thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        ready, failure = threading.Event(), []

        async def bind():
            self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True,
                                         shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def serve():
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(bind())
            except BaseException as exc:  # report to start(), e.g. port already in use
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        if self._thread is None:
            return
        loop = self._loop
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._thread = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"FakeOpenAIServer({self.base_url!r}, model={self.model!r}, latency_s={self.latency_s})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible chat API on 127.0.0.1.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--model", default="tiny-judge")
    parser.add_argument("--judge", default="echo", choices=["echo", "simulated"],
                        help="echo: a deterministic non-answer; simulated: the position-biased ranking judge "
                             "(starling_lib.judge.simulated) answering this project's ranking prompts")
    defaults = FaultConfig()
    for name in ("rate_429", "retry_after_s", "retry_after_header", "rate_500", "rate_timeout", "timeout_sleep_s",
                 "rate_malformed_body", "rate_malformed_answer", "max_faults_per_key", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=type(getattr(defaults, name)),
                            default=getattr(defaults, name))
    args = parser.parse_args(argv)
    faults = FaultConfig(**{k: getattr(args, k) for k in vars(defaults) if hasattr(args, k)})
    responder = None
    if args.judge == "simulated":
        from starling_lib.judge.simulated import SimulatedJudge

        responder = SimulatedJudge(seed=args.seed).respond
    server = FakeOpenAIServer(responder, latency_s=args.latency, faults=faults, model=args.model,
                              host=args.host, port=args.port).start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
