"""Persistent, resumable store of judge answers, keyed by what was asked.

A judge run over Nectar is ~183k requests and real money, so an answer once received is never paid
for twice: :class:`JudgeCache` keeps every *accepted* answer (HTTP 200, well formed, passed the
caller's validator) under :func:`request_key`, the sha256 of the canonical JSON of the model, the
messages and the full effective sampling parameters. The API key and the base URL are not part of
the key (the same question to the same model is the same question wherever it is sent) and are
never stored. Failed items are not stored, so the next run asks again.

Why SQLite in WAL mode rather than an append-only JSONL file:

- **Crash safety for free.** Each answer is one committed transaction. With ``journal_mode=WAL``
  and ``synchronous=NORMAL`` a commit is a ``write()`` of the WAL frame into the OS page cache: a
  process killed at any instant (SIGKILL included) loses at most the answer it had not yet
  committed, and SQLite never exposes a half-written row (``PRAGMA integrity_check`` stays
  ``ok``). Only an OS crash or power cut can roll back the last few commits, which costs a few
  re-sent requests, never a corrupt file. JSONL needs its own torn-last-line handling and an
  ``fsync`` per line to say as much.
- **Fast commits.** NORMAL does not ``fsync`` per commit (only at checkpoints), so a commit costs
  tens of microseconds and can run on the event-loop thread without stalling the client
  (``benchmarks/judge_throughput.py`` measures it).
- **Many writers.** Several processes may share one cache (``busy_timeout`` makes them wait for
  the write lock instead of failing); ``INSERT OR REPLACE`` on the primary key means a key is
  stored once, whoever answers it.
- **Lookups by key** without loading the whole file: a resumed run asks only for its own keys.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key      TEXT PRIMARY KEY,   -- request_key(model, messages, params)
    model    TEXT NOT NULL,
    request  TEXT NOT NULL,      -- JSON {"messages": [...], "params": {...}}; never the API key
    text     TEXT NOT NULL,      -- the accepted answer
    raw      TEXT,               -- JSON of the response's choice (message, logprobs, finish_reason)
    usage    TEXT,               -- JSON {"prompt_tokens": .., "completion_tokens": ..}
    created  REAL NOT NULL       -- unix time the answer was stored
)
"""
_BUSY_TIMEOUT_MS = 60_000
_SQLITE_MAX_VARS = 500  # stay well under SQLite's bound-variable limit in IN (...) lookups


def canonical_json(value) -> str:
    """Deterministic JSON: sorted keys, no spaces, unicode kept (the bytes that get hashed)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(model: str, messages: list[dict], params: dict) -> str:
    """sha256 (hex) of what is asked: model, messages and the full effective sampling parameters.

    ``params`` is the dict sent with the request (config defaults merged with per-request
    overrides, ``None`` values dropped by the caller), so changing the temperature, ``max_tokens``,
    ``logprobs`` etc. changes the key, while the API key and endpoint never enter it.
    """
    payload = {"model": model, "messages": messages, "params": params}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass
class CachedAnswer:
    """One stored answer."""

    key: str
    model: str
    text: str
    raw: dict | None
    usage: dict
    created: float


class JudgeCache:
    """SQLite store of accepted judge answers; safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        in_memory = str(path) == ":memory:"  # a throwaway cache, e.g. for a quick notebook check
        if not in_memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so each put is exactly one short transaction.
        # check_same_thread=False: JudgeClient.run may drive the loop from a worker thread;
        # the lock below serialises use of the one connection.
        self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                     isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            mode = self._setup(lambda: self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if mode.lower() != ("memory" if in_memory else "wal"):
                raise RuntimeError(f"could not put judge cache {self.path} in WAL mode (got {mode!r})")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._setup(lambda: self._conn.execute(_SCHEMA))

    def _setup(self, step):
        """Run a set-up statement, retrying while another process holds the lock.

        Switching a new file to WAL needs an exclusive lock, and SQLite may answer "database is
        locked" at once instead of waiting in the busy handler when two processes open the same
        new cache together; so wait here, up to the busy timeout.
        """
        deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
        delay = 0.005
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer for ``key``, or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        """Stored answers for those of ``keys`` that have one."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, CachedAnswer] = {}
        with self._lock:
            for start in range(0, len(keys), _SQLITE_MAX_VARS):
                chunk = keys[start:start + _SQLITE_MAX_VARS]
                rows = self._conn.execute(
                    "SELECT key, model, text, raw, usage, created FROM answers "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, model, text, raw, usage, created in rows:
                    found[key] = CachedAnswer(key, model, text, json.loads(raw) if raw else None,
                                              json.loads(usage) if usage else {}, created)
        return found

    def put(self, key: str, *, model: str, messages: list[dict], params: dict, text: str,
            raw: dict | None = None, usage: dict | None = None) -> None:
        """Store an accepted answer (one committed transaction; replaces an older answer for key)."""
        row = (key, model, canonical_json({"messages": messages, "params": params}), text,
               None if raw is None else json.dumps(raw, ensure_ascii=False),
               json.dumps(usage or {}), time.time())
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    def keys(self) -> set[str]:
        """All stored keys."""
        with self._lock:
            return {k for (k,) in self._conn.execute("SELECT key FROM answers")}

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` verdict (``'ok'`` when the file is sound)."""
        with self._lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "JudgeCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JudgeCache({str(self.path)!r})"
