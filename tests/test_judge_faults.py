"""A judge run under heavy faults, SIGKILLed mid-way and restarted, ends exactly like a clean run.

The fake server runs in this process (a thread); each client run is its own process
(``tests/judge_run_script.py``) so it can be killed with SIGKILL at an arbitrary moment, here
once its SQLite cache holds a third of the answers.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from starling_lib.judge import JudgeCache
from starling_lib.judge.server import default_responder

from fake_server import FakeOpenAIServer, FaultConfig

SCRIPT = Path(__file__).with_name("judge_run_script.py")
N = 300
FAULTS = FaultConfig(rate_429=0.20, retry_after_s=0.05, rate_500=0.10, rate_timeout=0.05,
                     timeout_sleep_s=1.0, rate_malformed_body=0.03, rate_malformed_answer=0.10,
                     max_faults_per_key=3, seed=7)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def start_run(server, cache, out, concurrency=8, timeout_s=0.5):
    return subprocess.Popen([sys.executable, str(SCRIPT), server.base_url, str(cache), str(out),
                             "--n", str(N), "--concurrency", str(concurrency), "--timeout", str(timeout_s)])


def finish(process, out) -> dict:
    assert process.wait(timeout=120) == 0
    return json.loads(Path(out).read_text())


def stored_answers(cache: Path) -> int:
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_and_restarted_run_equals_a_clean_run(tmp_path):
    with FakeOpenAIServer(latency_s=0.02, faults=FAULTS) as server:
        cache = tmp_path / "resumed.sqlite"
        victim = start_run(server, cache, tmp_path / "victim.json")
        deadline = time.monotonic() + 60
        while stored_answers(cache) < N // 3:
            assert victim.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        assert not (tmp_path / "victim.json").exists()

        with JudgeCache(cache) as store:
            assert store.integrity_check() == "ok"
            keys_at_restart = store.keys()
        assert N // 3 <= len(keys_at_restart) < N
        time.sleep(0.1)  # let the dead client's last requests land before taking the count
        sent_before = dict(server.stats.per_key)

        resumed = finish(start_run(server, cache, tmp_path / "resumed.json"), tmp_path / "resumed.json")
        sent_after_restart = {k: n - sent_before.get(k, 0) for k, n in server.stats.per_key.items()}
        faults_seen = dict(server.stats.faults)

    # The restarted run re-sent nothing it already had, and asked for everything else.
    assert resumed["n_cached"] == len(keys_at_restart)
    assert all(sent_after_restart.get(k, 0) == 0 for k in keys_at_restart)
    assert sum(n > 0 for n in sent_after_restart.values()) == N - len(keys_at_restart)
    assert resumed["n_sent"] == sum(sent_after_restart.values())

    with FakeOpenAIServer(latency_s=0.02, faults=FAULTS) as clean_server:
        clean = finish(start_run(clean_server, tmp_path / "clean.sqlite", tmp_path / "clean.json", 16),
                       tmp_path / "clean.json")
        clean_faults = dict(clean_server.stats.faults)

    # Both runs met every kind of fault, and all of them were survived.
    for faults in (faults_seen, clean_faults):
        assert set(faults) == {"429", "500", "timeout", "malformed_body", "malformed_answer"}, faults
    for run in (resumed, clean):
        assert run["statuses"] == ["ok"] and run["n_ok"] == N and run["failures"] == {}
        assert sorted(run["ids"]) == sorted(set(run["ids"])) and len(run["ids"]) == N
    assert resumed["texts"] == clean["texts"]
    expected = {f"item-{i:04d}": default_responder(
        {"messages": [{"role": "user", "content": f"rank the answers to prompt {i}"}]}) for i in range(N)}
    assert clean["texts"] == expected

    # Every answer stored exactly once, in a sound file.
    with JudgeCache(cache) as store:
        assert len(store) == N and store.integrity_check() == "ok"
        assert {a.text for a in store.get_many(store.keys()).values()} == set(expected.values())


def test_two_processes_can_share_one_cache(tmp_path):
    """Concurrent writers wait for the lock (busy_timeout); a key is stored once.

    No faults are injected here, so the request timeout is generous: on a loaded machine a 0.3-s
    timeout once made a few requests give up (``None`` answers), which is not what this test is about."""
    cache = tmp_path / "shared.sqlite"
    with FakeOpenAIServer(latency_s=0.005) as server:
        runs = [start_run(server, cache, tmp_path / f"run{i}.json", 16, timeout_s=30) for i in range(2)]
        results = [finish(run, tmp_path / f"run{i}.json") for i, run in enumerate(runs)]
    for result in results:
        assert result["statuses"] == ["ok"] and result["failures"] == {}, result["failures"]
    assert results[0]["texts"] == results[1]["texts"]
    with JudgeCache(cache) as store:
        assert len(store) == N and store.integrity_check() == "ok"
