"""The LLM judge: ask an OpenAI-compatible endpoint to rank answers, cheaply and resumably.

- :mod:`~starling_lib.judge.prompts`: the K-wise ranking prompts of the positional-bias study
  (one per strategy), answer shuffling with recorded permutations, the authors' prompt logs.
- :mod:`~starling_lib.judge.parse`: :func:`parse_ranking` reads a ranking out of a judge's reply.
- :mod:`~starling_lib.judge.client`: :class:`JudgeClient` sends many chat requests concurrently
  with retries, a persistent answer cache, validation of answers, and usage / cost accounting.
- :mod:`~starling_lib.judge.records`: :class:`JudgeRequest`, :class:`JudgeResult`, the run report, prices.
- :mod:`~starling_lib.judge.cache`: the SQLite answer cache a killed run resumes from.
- :mod:`~starling_lib.judge.context`: does a run fit the model's context window (checked before sending).
- :mod:`~starling_lib.judge.simulated`: an offline judge with a position-bias profile per strategy.
- :mod:`~starling_lib.judge.rank`: prompts → judge → parsed rankings, for many rows.
- :mod:`~starling_lib.judge.server`: a local OpenAI-compatible server that serves a simulated judge
  over real HTTP (the tests extend it with injectable faults in ``tests/fake_server.py``).
- :mod:`~starling_lib.judge.endpoint`: :func:`open_judge`, the one way to get a client: a real
  endpoint (key from the environment) or a simulated judge behind the local server.

The client names below load on first use, so ``from starling_lib.judge.parse import ...`` does not
import ``openai``.
"""

_CLIENT_NAMES = {
    "DEFAULT_PRICES": "records", "JudgeClient": "client", "JudgeRequest": "records", "JudgeResult": "records",
    "JudgeRunReport": "records", "estimate_cost": "records", "JudgeCache": "cache", "request_key": "cache",
}

__all__ = sorted(_CLIENT_NAMES)


def __getattr__(name: str):
    if name in _CLIENT_NAMES:
        import importlib

        module = importlib.import_module(f"{__name__}.{_CLIENT_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
