"""Does a run fit the served model's context window? Checked before the first request is sent.

Why: a model with a short context behind a server that does not enforce it (a tiny policy behind
``transformers serve``, asked FastChat's ``max_tokens`` 2048 on judge prompts longer than its 256
positions) generates for minutes per request and then answers nonsense. :func:`check_context`
fails at once instead, with a :class:`ContextError` that names the numbers and the setting to change.

The window, first found:

1. ``judge.context_tokens`` (``--set judge.context_tokens=N``; 0 turns the check off);
2. the server's ``GET /v1/models`` entry for the model: ``max_model_len`` (vLLM), else
   ``context_length`` / ``context_window`` / ``max_position_embeddings``;
3. a model named by a folder on this machine and served from this machine (``transformers serve
   DIR``, whose ``/v1/models`` lists only the hub cache): ``DIR/config.json``'s
   ``max_position_embeddings`` (``n_positions``, ``max_sequence_length``).

None found (OpenAI's API reports none): nothing is checked and nothing extra is sent.

What must fit: ``prompt tokens + max_tokens <= window``. ``max_tokens >= window`` fails without
sending anything. Otherwise the run's longest prompt (by characters) is sent once with
``max_tokens=1``, and the server's own ``usage.prompt_tokens`` (its tokenizer and chat template)
is its length; shorter prompts are taken to have fewer tokens. Only requests that are not in the
answer cache are checked, so a resumed run sends nothing extra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from starling_lib.judge.records import JudgeRequest

SERVER_FIELDS = ("max_model_len", "context_length", "context_window", "max_position_embeddings")
"""``/v1/models`` fields read as the context window, in this order (vLLM's first)."""
CONFIG_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length")
"""``config.json`` fields read as the context window of a served model folder."""
LOOKUP_TIMEOUT_S = 10.0
"""How long ``GET /v1/models`` may take before the window counts as unknown."""


class ContextError(ValueError):
    """A run that cannot fit the model's context window; the message names the setting to change."""


@dataclass(frozen=True)
class ContextWindow:
    tokens: int
    source: str
    """Where the number came from, for messages (``judge.context_tokens``, ``max_model_len in GET
    /v1/models``, ``max_position_embeddings in DIR/config.json``)."""


def window_from_models_list(body, model: str) -> ContextWindow | None:
    """The window in a ``/v1/models`` body for ``model`` (its entry, or the only entry)."""
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return None
    entries = [e for e in entries if isinstance(e, dict)]
    mine = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    return _first_window(mine, SERVER_FIELDS, "GET /v1/models")


def window_from_model_folder(model: str) -> ContextWindow | None:
    """The window in ``<model>/config.json`` when ``model`` names a folder on this machine."""
    config_path = Path(model) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    configs = [config, config.get("text_config")] if isinstance(config, dict) else []
    return _first_window([c for c in configs if isinstance(c, dict)], CONFIG_FIELDS, str(config_path))


def _first_window(mappings: list[dict], fields: tuple[str, ...], where: str) -> ContextWindow | None:
    """The first positive integer among ``fields`` of ``mappings`` (in order), named with ``where``."""
    for mapping in mappings:
        for name in fields:
            value = mapping.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return ContextWindow(value, f"{name} in {where}")
    return None


async def lookup_window(aclient, model: str, *, configured: int | None, local_server: bool) -> ContextWindow | None:
    """The window of ``model`` (see the module docstring); ``None`` when unknown or the check is off."""
    if configured is not None:
        return ContextWindow(configured, "judge.context_tokens") if configured > 0 else None
    try:
        response = await aclient.models.with_raw_response.list(timeout=LOOKUP_TIMEOUT_S)
        window = window_from_models_list(json.loads(response.http_response.content), model)
    except Exception:  # no /v1/models (404), a server error, a timeout, not JSON: unknown
        window = None
    if window is None and local_server:
        window = window_from_model_folder(model)
    return window


@dataclass(frozen=True)
class ContextCheck:
    """A check that passed: the window and the longest prompt measured against it."""

    window: ContextWindow
    max_tokens: int
    prompt_tokens: int | None
    """The longest prompt's tokens as the server counted them (``None``: the probe failed)."""
    request_id: str

    def describe(self) -> str:
        prompt = (f"longest prompt {self.prompt_tokens} tokens (request {self.request_id!r})"
                  if self.prompt_tokens is not None else "the longest prompt could not be measured")
        return (f"context {self.window.tokens} tokens ({self.window.source}): {prompt} + "
                f"max_tokens {self.max_tokens} fits")


def _max_tokens_setting(request: JudgeRequest, desc: str) -> str:
    return "judge.max_tokens" if "max_tokens" not in request.params else f"the {desc!r} requests' own max_tokens"


async def check_context(aclient, model: str, window: ContextWindow | None,
                        requests: list[tuple[JudgeRequest, dict]], *, desc: str, where: str,
                        usage: dict) -> ContextCheck | None:
    """Raise :class:`ContextError` when ``requests`` (each with its effective params) cannot fit
    ``window``; ``None`` when there is nothing to check. The probe's tokens are added to ``usage``
    (``prompt_tokens``, ``completion_tokens``, ``n_sent``)."""
    if window is None or not requests:
        return None
    limit = window.tokens
    request, params = max(requests, key=lambda rp: rp[1].get("max_tokens") or 0)
    max_tokens = params.get("max_tokens")
    if max_tokens is None:  # the server's own default applies; nothing of ours to check
        return None
    setting = _max_tokens_setting(request, desc)
    if max_tokens >= limit:
        raise ContextError(
            f"model {model!r} at {where}: max_tokens {max_tokens} ({setting}) leaves no room for a prompt in "
            f"its context of {limit} tokens ({window.source}); lower {setting} below {limit} minus the "
            f"prompt, use a model with a longer context, or set judge.context_tokens if {limit} is wrong")
    longest, _ = max(requests, key=lambda rp: len(json.dumps(rp[0].messages, ensure_ascii=False)))
    prompt_tokens = await _probe_prompt_tokens(aclient, model, longest.messages, usage)
    if prompt_tokens is not None and prompt_tokens >= limit:
        raise ContextError(
            f"model {model!r} at {where}: the longest prompt (request {longest.id!r}) is {prompt_tokens} "
            f"tokens as the server counts them, more than its context of {limit} tokens ({window.source}); "
            f"it cannot read these prompts: use a model with a longer context (judge.model, --judge-model), "
            f"or set judge.context_tokens if {limit} is wrong")
    if prompt_tokens is not None and prompt_tokens + max_tokens > limit:
        raise ContextError(
            f"model {model!r} at {where}: the longest prompt (request {longest.id!r}) is {prompt_tokens} "
            f"tokens and max_tokens {max_tokens} ({setting}) asks for more, {prompt_tokens + max_tokens} > its "
            f"context of {limit} tokens ({window.source}); lower {setting} to at most "
            f"{limit - prompt_tokens}, use a model with a longer context, or set judge.context_tokens if "
            f"{limit} is wrong")
    return ContextCheck(window, max_tokens, prompt_tokens, longest.id)


async def _probe_prompt_tokens(aclient, model: str, messages: list[dict], usage: dict) -> int | None:
    """``usage.prompt_tokens`` of one request for ``messages`` with ``max_tokens=1`` (``None`` if it fails)."""
    usage["n_sent"] += 1
    try:
        response = await aclient.chat.completions.with_raw_response.create(
            model=model, messages=messages, extra_body={"max_tokens": 1, "temperature": 0})
        counted = json.loads(response.http_response.content).get("usage") or {}
        prompt_tokens = int(counted["prompt_tokens"])
    except Exception:  # the server refused or does not count: unknown, the run goes on
        return None
    usage["prompt_tokens"] += prompt_tokens
    usage["completion_tokens"] += int(counted.get("completion_tokens") or 0)
    return prompt_tokens if prompt_tokens > 0 else None
