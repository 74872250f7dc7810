"""Send many chat requests to an OpenAI-compatible judge: concurrently, retried, cached, costed.

The paper's rankings came from GPT-4 (``gpt-4-0613``) ranking 7 answers for each of 183k
prompts. At that scale every failure mode of a remote API shows up: 429s with ``Retry-After``,
5xx, stalls, truncated bodies, answers that do not parse. :class:`JudgeClient` turns a list of
:class:`JudgeRequest` into one :class:`JudgeResult` per request, in order, and never drops one:

- ``max_concurrency`` requests in flight (an ``asyncio.Semaphore`` around each HTTP request;
  items waiting out a backoff do not hold a slot);
- our own retries (the ``openai`` client runs with ``max_retries=0``) on 429, 408/409, 5xx,
  timeouts, connection errors, malformed bodies and answers the caller's ``validate`` rejects:
  exponential backoff with full jitter, or exactly the server's ``Retry-After`` /
  ``retry-after-ms`` (capped at ``backoff_max_s``); 400/401/403/404/422 fail at once;
- an item that runs out of retries is a ``failed`` result with its reason, not an exception;
- accepted answers go to a :class:`~starling_lib.judge.cache.JudgeCache` as they arrive, so a
  killed run resumes where it stopped and a repeated run costs nothing; duplicate requests within
  a run are sent once;
- a :class:`~starling_lib.judge.records.JudgeRunReport` with token usage, cost from
  :data:`~starling_lib.judge.records.DEFAULT_PRICES` and failures by kind, logged as one
  paragraph at the end; a progress bar over the requests meanwhile
  (:func:`~starling_lib.progress.progress_bar`);
- before the first request, a run that cannot fit the model's context window (prompt +
  ``max_tokens``, when the window is known: :mod:`~starling_lib.judge.context`) raises
  :class:`~starling_lib.judge.context.ContextError` naming the setting, instead of sending
  requests that would each generate for minutes.

The API key comes from ``api_key=`` or ``$OPENAI_API_KEY`` (``JudgeConfig.api_key_env``) and
travels only in the ``Authorization`` header: it is not in the cache, the logs, the report, the
client's ``repr`` or any failure reason (server error text is scrubbed of it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import email.utils
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlparse

import openai

from starling_lib.config import JudgeConfig
from starling_lib.judge.cache import JudgeCache, request_key
from starling_lib.judge.context import check_context, lookup_window
from starling_lib.judge.records import JudgeRequest, JudgeResult, JudgeRunReport, estimate_cost
from starling_lib.paths import runs_dir
from starling_lib.progress import progress_bar

_RETRYABLE_STATUS = {408, 409, 429}
_STATUS_KIND = {400: "bad_request", 401: "auth_error", 403: "forbidden", 404: "not_found",
                422: "unprocessable", 429: "rate_limited"}
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_RESERVED_PARAMS = {"model", "messages", "stream"}


def retry_after_seconds(headers) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` (seconds or HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class _Outcome:
    """One HTTP attempt: accepted (``kind == 'ok'``) or why not."""

    kind: str
    detail: str = ""
    retryable: bool = False
    wait_s: float | None = None
    text: str | None = None
    raw: dict | None = None
    usage: dict = field(default_factory=dict)


class _Secret:
    """Holds the API key; its repr never shows it."""

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "_Secret('***')"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class JudgeClient:
    """Concurrent, retrying, caching client for an OpenAI-compatible chat endpoint."""

    def __init__(self, config: JudgeConfig | None = None, *, api_key: str | None = None,
                 base_url: str | None = None, cache_path: str | Path | None = None,
                 validate: Callable[[str], object] | None = None, progress: bool | None = None,
                 log: Callable[[str], None] | None = None, **overrides):
        """``validate(text)`` raising any exception marks an answer invalid (retried, not cached);
        ``progress``: the bar over a run's requests (``None``: on unless ``$STARLING_PROGRESS`` is 0);
        ``overrides`` set :class:`~starling_lib.config.JudgeConfig` fields (``max_concurrency=8``)."""
        config = config or JudgeConfig()
        unknown = set(overrides) - {f.name for f in dataclasses.fields(JudgeConfig)}
        if unknown:
            raise TypeError(f"JudgeClient got unknown JudgeConfig fields {sorted(unknown)}")
        self.config = dataclasses.replace(config, **overrides)
        self.base_url = (base_url or self.config.base_url or os.environ.get("STARLING_JUDGE_BASE_URL")
                         or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1")
        key = api_key or os.environ.get(self.config.api_key_env)
        self._key_source = "api_key=" if api_key else f"${self.config.api_key_env}"
        if not key:
            if urlparse(self.base_url).hostname not in _LOCAL_HOSTS:
                raise ValueError(f"no API key for {self.base_url}: set the environment variable "
                                 f"{self.config.api_key_env} (or pass api_key=...)")
            key, self._key_source = "sk-local", "placeholder for a local server"
        self._api_key = _Secret(key)
        self.cache = JudgeCache(cache_path or self.config.cache_path or runs_dir() / "judge" / "cache.sqlite")
        self.validate = validate
        self.progress = progress
        self.log = log or _stderr
        self._rng = random.Random()
        self._sync_client: openai.OpenAI | None = None
        self._window_looked_up, self._window = False, None  # the context window, asked once per client
        self.on_close: list[Callable[[], None]] = []
        """Run by :meth:`close`, last added first (e.g. stopping the local server behind the client)."""

    # ---- requests and keys ---------------------------------------------------------------------

    def effective_params(self, params: dict | None = None) -> dict:
        """Config defaults merged with ``params``; ``None`` values dropped. Sent, and hashed."""
        bad = _RESERVED_PARAMS & set(params or {})
        if bad:
            raise ValueError(f"params may not set {sorted(bad)} (the model comes from the config; no streaming)")
        merged = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens, **(params or {})}
        return {k: v for k, v in merged.items() if v is not None}

    def request_key(self, request: JudgeRequest) -> str:
        return request_key(self.config.model, request.messages, self.effective_params(request.params))

    # ---- one attempt ---------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        key = self._api_key.value
        return text.replace(key, "***") if len(key) >= 4 else text

    def _accept(self, content: bytes) -> _Outcome:
        """Read a 200 body: JSON with a text choice that passes ``validate``."""
        try:
            body = json.loads(content)
        except ValueError:
            return _Outcome("malformed_response", f"body is not JSON: {content[:60]!r}", retryable=True)
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return _Outcome("malformed_response", "no choices in the response", retryable=True)
        message = choices[0].get("message")
        text = message.get("content") if isinstance(message, dict) else None
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        usage = {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                 "completion_tokens": int(usage.get("completion_tokens") or 0)}
        if not isinstance(text, str):
            return _Outcome("malformed_response", "the first choice has no text content",
                            retryable=True, usage=usage)
        raw = dict(choices[0])
        if len(choices) > 1:
            raw["other_choices"] = choices[1:]
        if self.validate is not None:
            try:
                self.validate(text)
            except Exception as exc:
                message = self._redact(str(exc) or type(exc).__name__)[:300]
                return _Outcome("invalid_answer", message, retryable=True, usage=usage)
        return _Outcome("ok", text=text, raw=raw, usage=usage)

    def _from_exception(self, exc: Exception) -> _Outcome:
        if isinstance(exc, openai.APITimeoutError):
            return _Outcome("timeout", f"no answer within {self.config.timeout_s:g} s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return _Outcome("connection_error", self._redact(f"{type(cause).__name__}: {cause}")[:300],
                            retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            wait = retry_after_seconds(exc.response.headers)
            if status == 401:
                return _Outcome("auth_error", f"401: the server rejected the API key (from {self._key_source})")
            retryable = status in _RETRYABLE_STATUS or status >= 500
            kind = _STATUS_KIND.get(status) or ("server_error" if status >= 500 else "http_error")
            message = exc.body.get("message") if isinstance(exc.body, dict) else None
            detail = str(status) if retryable else self._redact(f"{status}: {message or exc.message}")[:300]
            return _Outcome(kind, detail, retryable=retryable, wait_s=wait)
        if isinstance(exc, openai.APIResponseValidationError):
            return _Outcome("malformed_response", self._redact(str(exc))[:300], retryable=True)
        return _Outcome("client_error", self._redact(f"{type(exc).__name__}: {exc}")[:300])

    def _delay(self, retry: int, wait_s: float | None) -> float:
        cfg = self.config
        if wait_s is not None:  # the server said how long; don't guess
            return min(cfg.backoff_max_s, wait_s)
        return self._rng.uniform(0, min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** retry))

    def _result(self, request_id: str, key: str, outcome: _Outcome, attempts: int) -> JudgeResult:
        if outcome.kind == "ok":
            return JudgeResult(request_id, key, "ok", outcome.text, None, attempts, False,
                               outcome.usage, outcome.raw)
        reason = f"{outcome.kind}: {outcome.detail}" if outcome.detail else outcome.kind
        if outcome.retryable:
            reason += f" (gave up after {attempts} attempts)"
        return JudgeResult(request_id, key, "failed", None, reason, attempts, False, {}, None)

    # ---- async run -----------------------------------------------------------------------------

    def _async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self._api_key.value, base_url=self.base_url, max_retries=0,
                                  timeout=self.config.timeout_s)

    async def _ask(self, aclient, semaphore, run, request_id, key, messages, params) -> JudgeResult:
        attempts = 0
        for retry in range(self.config.max_retries + 1):
            async with semaphore:
                attempts += 1
                run["n_sent"] += 1
                try:
                    response = await aclient.chat.completions.with_raw_response.create(
                        model=self.config.model, messages=messages, extra_body=params)
                    outcome = self._accept(response.http_response.content)
                except Exception as exc:
                    outcome = self._from_exception(exc)
            run["prompt_tokens"] += outcome.usage.get("prompt_tokens", 0)
            run["completion_tokens"] += outcome.usage.get("completion_tokens", 0)
            if outcome.kind == "auth_error" and not run["auth_logged"]:
                run["auth_logged"] = True
                self.log(f"judge: {self.base_url} rejected the API key (401); check {self._key_source}")
            if outcome.kind == "ok" or not outcome.retryable or retry == self.config.max_retries:
                break
            await asyncio.sleep(self._delay(retry, outcome.wait_s))
        return self._result(request_id, key, outcome, attempts)

    async def arun(self, requests: Iterable[JudgeRequest], *, desc: str = "judge") -> JudgeRunReport:
        """Answer every request (cache first), in order; see the module docstring."""
        start = time.perf_counter()
        requests = list(requests)
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"request ids must be unique within a run; repeated: {dupes}")
        prepared = [(r, self.effective_params(r.params)) for r in requests]
        keys = [request_key(self.config.model, r.messages, p) for r, p in prepared]
        found = {k: a for k, a in self.cache.get_many(keys).items() if self._still_valid(a.text)}

        results: list[JudgeResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key in found:
                a = found[key]
                results[i] = JudgeResult(ids[i], key, "ok", a.text, None, 0, True, a.usage, a.raw)
            else:
                todo.setdefault(key, []).append(i)

        run = {"n_sent": 0, "prompt_tokens": 0, "completion_tokens": 0, "auth_logged": False}
        bar = progress_bar(total=len(requests), initial=len(requests) - sum(map(len, todo.values())),
                           desc=desc, unit="req", progress=self.progress)
        semaphore = asyncio.Semaphore(self.config.max_concurrency)
        queue = iter(todo.items())

        async def worker(aclient):
            for key, indices in queue:  # a shared iterator: each item goes to exactly one worker
                request, params = prepared[indices[0]]
                result = await self._ask(aclient, semaphore, run, request.id, key, request.messages, params)
                if result.ok:
                    self.cache.put(key, model=self.config.model, messages=request.messages, params=params,
                                   text=result.text, raw=result.raw, usage=result.usage)
                for n, i in enumerate(indices):  # duplicates share the answer; only the first paid
                    results[i] = dataclasses.replace(result, id=ids[i], attempts=result.attempts if n == 0 else 0)
                bar.update(len(indices))

        try:
            if todo:
                # Twice as many workers as slots, so items sleeping in a backoff leave slots busy.
                n_workers = min(len(todo), 2 * self.config.max_concurrency)
                async with self._async_client() as aclient:
                    await self._check_context(aclient, [prepared[indices[0]] for indices in todo.values()], desc, run)
                    await asyncio.gather(*(worker(aclient) for _ in range(n_workers)))
        finally:
            bar.close()
        report = self._report(results, run, time.perf_counter() - start)
        self.log(report.format_text())
        return report

    async def _check_context(self, aclient, todo: list, desc: str, run: dict) -> None:
        """:func:`~starling_lib.judge.context.check_context` on the requests about to be sent."""
        if not self._window_looked_up:
            self._window = await lookup_window(aclient, self.config.model, configured=self.config.context_tokens,
                                               local_server=urlparse(self.base_url).hostname in _LOCAL_HOSTS)
            self._window_looked_up = True
        checked = await check_context(aclient, self.config.model, self._window, todo, desc=desc,
                                      where=self.base_url, usage=run)
        if checked is not None:
            self.log(f"{desc}: {checked.describe()}")

    def _still_valid(self, text: str) -> bool:
        """Cached answers are re-checked, so a stricter validator re-asks what it now rejects."""
        if self.validate is None:
            return True
        try:
            self.validate(text)
        except Exception:
            return False
        return True

    def _report(self, results: list[JudgeResult], run: dict, elapsed_s: float) -> JudgeRunReport:
        failures: dict[str, int] = {}
        for r in results:
            if not r.ok:
                kind = r.reason.split(":", 1)[0].split(" ", 1)[0]
                failures[kind] = failures.get(kind, 0) + 1
        cached = [r for r in results if r.cached]
        usage = {"prompt_tokens": run["prompt_tokens"], "completion_tokens": run["completion_tokens"],
                 "cached_prompt_tokens": sum(r.usage.get("prompt_tokens", 0) for r in cached),
                 "cached_completion_tokens": sum(r.usage.get("completion_tokens", 0) for r in cached)}
        cost = estimate_cost(self.config.model, usage["prompt_tokens"], usage["completion_tokens"],
                             self.config.prices)
        notes = [] if cost is not None else [
            f"no price for model {self.config.model!r}: cost unknown (set JudgeConfig.prices)"]
        n_ok = sum(r.ok for r in results)
        return JudgeRunReport(results, self.config.model, n_ok, len(results) - n_ok, len(cached),
                              run["n_sent"], usage, cost, round(elapsed_s, 3), failures, notes)

    # ---- sync entry points ---------------------------------------------------------------------

    def run(self, requests: Iterable[JudgeRequest], *, desc: str = "judge") -> JudgeRunReport:
        """Blocking :meth:`arun`; inside a running event loop (Jupyter) it runs in a worker thread."""
        requests = list(requests)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(requests, desc=desc))
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="judge") as pool:
            return pool.submit(asyncio.run, self.arun(requests, desc=desc)).result()

    def complete(self, messages: list[dict], **params) -> JudgeResult:
        """One blocking request through the cache (``openai.OpenAI``), with the same retries."""
        params = self.effective_params(params)
        key = request_key(self.config.model, messages, params)
        hit = self.cache.get(key)
        if hit is not None and self._still_valid(hit.text):
            return JudgeResult("complete", key, "ok", hit.text, None, 0, True, hit.usage, hit.raw)
        if self._sync_client is None:
            self._sync_client = openai.OpenAI(api_key=self._api_key.value, base_url=self.base_url,
                                              max_retries=0, timeout=self.config.timeout_s)
        attempts = 0
        for retry in range(self.config.max_retries + 1):
            attempts += 1
            try:
                response = self._sync_client.chat.completions.with_raw_response.create(
                    model=self.config.model, messages=messages, extra_body=params)
                outcome = self._accept(response.http_response.content)
            except Exception as exc:
                outcome = self._from_exception(exc)
            if outcome.kind == "ok" or not outcome.retryable or retry == self.config.max_retries:
                break
            time.sleep(self._delay(retry, outcome.wait_s))
        result = self._result("complete", key, outcome, attempts)
        if result.ok:
            self.cache.put(key, model=self.config.model, messages=messages, params=params,
                           text=result.text, raw=result.raw, usage=result.usage)
        return result

    def close(self) -> None:
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None
        self.cache.close()
        while self.on_close:
            self.on_close.pop()()

    def __enter__(self) -> "JudgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"JudgeClient(model={self.config.model!r}, base_url={self.base_url!r}, "
                f"cache={str(self.cache.path)!r}, max_concurrency={self.config.max_concurrency})")
