"""Judge client throughput against a fake server with fixed latency, relative to the ideal bound.

    python benchmarks/judge_throughput.py [--n 2000] [--concurrency 32] [--latency 0.1]

The local OpenAI server runs in its own process (``python -m starling_lib.judge.server``) so
it does not share the client's GIL on a 2-core machine. With ``c`` requests in flight and a
server latency ``L`` no client can exceed ``c / L`` requests/s (320/s at the defaults): ``ratio``
is the measured throughput over that bound (target >= 0.8), with a fresh cache in a temporary
folder so every request is sent and every answer committed to SQLite. Also reported: the speedup
over sequential requests (measured on ``--n-sequential`` requests), client CPU per request, the
cost of one cache commit, a fully cached re-run, and the most requests the server saw at once.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from starling_lib.judge import JudgeCache, JudgeClient, JudgeRequest

TARGET_RATIO = 0.8


def requests_for(n: int, tag: str) -> list[JudgeRequest]:
    return [JudgeRequest(f"{tag}-{i}", [{"role": "system", "content": "Rank the answers."},
                                        {"role": "user", "content": f"{tag} prompt {i}: which answer is best?"}])
            for i in range(n)]


def timed_run(client: JudgeClient, requests: list[JudgeRequest]):
    wall, cpu = time.perf_counter(), time.process_time()
    report = client.run(requests)
    return report, time.perf_counter() - wall, time.process_time() - cpu


def commit_cost_s(folder: Path, n: int = 2000) -> float:
    """Seconds per committed answer (one INSERT + commit in WAL/NORMAL mode)."""
    with JudgeCache(folder / "commit.sqlite") as cache:
        start = time.perf_counter()
        for i in range(n):
            cache.put(f"{i:064x}", model="m", messages=[{"role": "user", "content": f"q {i}"}],
                      params={"temperature": 0}, text=f"answer {i}", raw={"message": {"content": f"answer {i}"}},
                      usage={"prompt_tokens": 3, "completion_tokens": 2})
        return (time.perf_counter() - start) / n


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--n-sequential", type=int, default=50)
    args = parser.parse_args(argv)

    server = subprocess.Popen([sys.executable, "-m", "starling_lib.judge.server", "--port", "0",
                               "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        print(f"fake server at {base_url} (pid {server.pid})", file=sys.stderr)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            common = dict(base_url=base_url, progress=False, log=lambda line: print(line, file=sys.stderr))
            with JudgeClient(cache_path=tmp / "sequential.sqlite", max_concurrency=1, **common) as client:
                _, seq_s, _ = timed_run(client, requests_for(args.n_sequential, "seq"))
            sequential_rps = args.n_sequential / seq_s

            with JudgeClient(cache_path=tmp / "cache.sqlite", max_concurrency=args.concurrency, **common) as client:
                requests = requests_for(args.n, "bench")
                report, wall_s, cpu_s = timed_run(client, requests)
                cached_report, cached_s, _ = timed_run(client, requests)
            assert report.n_ok == args.n and cached_report.n_cached == args.n and cached_report.n_sent == 0
            commit_s = commit_cost_s(tmp)
        stats = json.loads(urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats").read())
    finally:
        server.terminate()
        server.wait(timeout=10)

    bound_rps = args.concurrency / args.latency
    throughput_rps = args.n / wall_s
    result = {
        "benchmark": "judge_throughput",
        "ratio": round(throughput_rps / bound_rps, 3),
        "target_ratio": TARGET_RATIO,
        "throughput_rps": round(throughput_rps, 1),
        "bound_rps": round(bound_rps, 1),
        "n": args.n,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "wall_s": round(wall_s, 3),
        "sequential_rps": round(sequential_rps, 2),
        "speedup_vs_sequential": round(throughput_rps / sequential_rps, 1),
        "client_cpu_ms_per_request": round(1000 * cpu_s / args.n, 3),
        "cache_commit_ms": round(1000 * commit_s, 4),
        "cached_rerun_s": round(cached_s, 3),
        "server_max_in_flight": stats["max_in_flight"],
        "n_sent": report.n_sent,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
