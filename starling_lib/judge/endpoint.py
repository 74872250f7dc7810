"""Which judge answers: a real OpenAI-compatible endpoint, or a simulated judge behind a local server.

Every place that judges (the ``starling mt-bench`` / ``alpaca-eval`` commands, notebooks 01 and
04) opens its client here, so the choice is made one way:

- **a real endpoint**: ``base_url`` if given, else ``judge.base_url`` of the preset, else
  ``$STARLING_JUDGE_BASE_URL`` / ``$OPENAI_BASE_URL``, else OpenAI (resolved by
  :class:`~starling_lib.judge.client.JudgeClient`); the API key comes from the environment only
  (``judge.api_key_env``, ``$OPENAI_API_KEY`` by default), never from a file or an argument;
- **a simulated judge** (``simulated=responder``, e.g. ``SimulatedMTBenchJudge().respond``): the
  responder behind a :class:`~starling_lib.judge.server.LocalOpenAIServer` on 127.0.0.1, reached
  over real HTTP with a placeholder key (the user's key is never sent to it), stopped when the
  client closes.

:func:`open_judge` returns the :class:`JudgeClient`; use it in a ``with`` block, or call
``close()`` (which also stops the local server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from starling_lib.config import JudgeConfig
from starling_lib.judge.client import JudgeClient
from starling_lib.judge.server import LocalOpenAIServer
from starling_lib.paths import runs_dir

SIMULATED_API_KEY = "sk-simulated"
"""The key sent to the local server: a placeholder, so a real key never leaves for a simulation."""


def default_cache_path(bench: str, *, simulated: bool = False) -> Path:
    """``runs/judge/<bench>-cache.sqlite``; simulated answers get their own file
    (``<bench>-simulated-cache.sqlite``), so they are never mistaken for a real judge's."""
    return runs_dir() / "judge" / f"{bench}{'-simulated' if simulated else ''}-cache.sqlite"


def open_judge(config: JudgeConfig | None = None, *, simulated: Callable[[dict], object] | None = None,
               base_url: str | None = None, latency_s: float = 0.0, **client_kwargs) -> JudgeClient:
    """A judge client for ``config``: the real endpoint, or the ``simulated`` responder behind a local
    server. ``client_kwargs`` go to :class:`JudgeClient` (``cache_path``, ``validate``, ``progress``,
    ``log``, :class:`JudgeConfig` overrides such as ``model=``); ``latency_s`` slows the local server."""
    if simulated is None:
        return JudgeClient(config, base_url=base_url, **client_kwargs)
    if base_url is not None:
        raise ValueError("a simulated judge runs on its own local server; pass base_url or simulated, not both")
    config = config or JudgeConfig()
    server = LocalOpenAIServer(simulated, latency_s=latency_s, model=client_kwargs.get("model", config.model))
    server.start()
    try:
        client = JudgeClient(config, api_key=SIMULATED_API_KEY, base_url=server.base_url, **client_kwargs)
    except BaseException:
        server.stop()
        raise
    client.on_close.append(server.stop)
    return client
