"""A local OpenAI-compatible chat server on 127.0.0.1, for simulated judges and offline runs.

The real ``openai`` client (through :class:`~starling_lib.judge.client.JudgeClient`) talks to it
exactly as to GPT-4, so a simulated judge runs over real HTTP (:mod:`starling_lib.judge.endpoint`
starts one for ``--simulated`` runs and the notebooks). It serves ``POST /v1/chat/completions``
(the OpenAI response schema: ``id``, ``object``, ``created``, ``model``, ``choices[i].message``,
``finish_reason``, ``logprobs`` when asked, ``usage`` with whitespace word counts as tokens),
``GET /v1/models``, and ``GET /_stats`` (its counters as JSON; keys only as sha256 fingerprints).

What it answers comes from a ``responder(request_json) -> str | dict`` (a dict may carry
``text``, ``logprobs`` and ``finish_reason``); the default is deterministic from the messages. A
responder may raise :class:`HTTPFault` to send any status (400, 422, ...); one that crashes gives
a 500. The fault-injecting server the judge client is tested against (429s, stalls, garbage) extends
this one in ``tests/fake_server.py``.

In code: ``with LocalOpenAIServer(judge.respond) as server: ... server.base_url``. As its own
process (the throughput benchmark, the notebook tests)::

    python -m starling_lib.judge.server --port 0 --latency 0.1 [--judge simulated]

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


def _first_token_logprobs(text: str, top_n: int) -> dict:
    token = text.split()[0] if text.split() else text
    top = [{"token": token, "logprob": 0.0, "bytes": list(token.encode())}]
    top += [{"token": f"<alt{i}>", "logprob": -10.0 - i, "bytes": list(f"<alt{i}>".encode())}
            for i in range(1, max(top_n, 1))]
    return {"content": [{"token": token, "logprob": 0.0, "bytes": list(token.encode()),
                         "top_logprobs": top[:top_n]}], "refusal": None}


def error_response(status: int, message: str, type: str, headers: dict | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


class LocalOpenAIServer:
    """OpenAI-compatible chat server in a background thread with its own event loop."""

    def __init__(self, responder: Responder | None = None, *, latency_s: float = 0.0, model: str = "tiny-judge",
                 host: str = "127.0.0.1", port: int = 0, api_keys: Collection[str] | None = None,
                 strict_model: bool = False):
        """``api_keys``: when given, other keys get 401; ``strict_model``: other models get 404."""
        self.responder = responder or default_responder
        self.latency_s = latency_s
        self.model = model
        self.host, self.port = host, port
        self.api_keys = None if api_keys is None else set(api_keys)
        self.strict_model = strict_model
        self.stats = ServerStats()
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
            return error_response(400, "request body is not a JSON object", "invalid_request_error")
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
            return error_response(401, f"Incorrect API key provided: {auth.removeprefix('Bearer ')}",
                          "invalid_request_error")
        if not isinstance(messages, list) or not messages:
            stats.faults["http_400"] += 1
            return error_response(400, "'messages' must be a non-empty array", "invalid_request_error")
        if self.strict_model and model != self.model:
            stats.faults["http_404"] += 1
            return error_response(404, f"The model '{model}' does not exist", "invalid_request_error")

        early, replace = await self._inject(key, attempt)
        if early is not None:
            return early

        try:
            answer = self.responder(body)
            if inspect.isawaitable(answer):
                answer = await answer
        except HTTPFault as exc:
            stats.faults[f"http_{exc.status}"] += 1
            return error_response(exc.status, exc.message, exc.type, exc.headers)
        except Exception as exc:  # a broken responder is a server error, not a crashed server
            stats.faults["http_500"] += 1
            return error_response(500, f"responder failed: {type(exc).__name__}: {exc}", "server_error")
        answer = dict(answer) if isinstance(answer, dict) else {"text": str(answer)}
        if replace is not None:
            answer = replace(answer)
        else:
            stats.answers += 1
            stats.answers_per_key[key] += 1
        return web.json_response(self._completion(body, messages, answer))

    # ---- pieces --------------------------------------------------------------------------------

    async def _inject(self, key: str, attempt: int):
        """``(response, replace)``: a response to send instead of the answer, or a function that
        replaces the answer (then not counted as answered). The local server injects nothing; the
        test server's faults come in here."""
        return None, None

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

    def start(self) -> "LocalOpenAIServer":
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

        self._thread = threading.Thread(target=serve, name="local-openai-server", daemon=True)
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

    def __enter__(self) -> "LocalOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalOpenAIServer({self.base_url!r}, model={self.model!r}, latency_s={self.latency_s})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local OpenAI-compatible chat API on 127.0.0.1.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--model", default="tiny-judge")
    parser.add_argument("--judge", default="echo", choices=["echo", "simulated"],
                        help="echo: a deterministic non-answer; simulated: the position-biased ranking judge "
                             "(starling_lib.judge.simulated) answering this project's ranking prompts")
    parser.add_argument("--seed", type=int, default=0, help="the simulated judge's seed")
    args = parser.parse_args(argv)
    responder = None
    if args.judge == "simulated":
        from starling_lib.judge.simulated import SimulatedJudge

        responder = SimulatedJudge(seed=args.seed).respond
    server = LocalOpenAIServer(responder, latency_s=args.latency, model=args.model, host=args.host,
                               port=args.port).start()
    print(server.base_url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop()


if __name__ == "__main__":
    main()
