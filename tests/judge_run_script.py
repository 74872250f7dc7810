"""Helper for tests/test_judge_faults.py: one judge run in its own process (so it can be SIGKILLed).

    python tests/judge_run_script.py BASE_URL CACHE_PATH OUT_JSON [--n 300] [--concurrency 8] [--timeout 0.5]

Asks ``--n`` deterministic questions through :class:`JudgeClient` with a validator and small
backoffs, then writes ``{"texts": {id: text}, "n_cached": .., "n_sent": .., ...}`` to OUT_JSON.
"""

import argparse
import json

from starling_lib.judge import JudgeClient, JudgeRequest


def questions(n: int) -> list[JudgeRequest]:
    return [JudgeRequest(f"item-{i:04d}", [{"role": "user", "content": f"rank the answers to prompt {i}"}])
            for i in range(n)]


def must_be_an_answer(text: str) -> None:
    if not text.startswith("answer:"):
        raise ValueError(f"not an answer: {text[:30]!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("cache_path")
    parser.add_argument("out")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=0.5,
                        help="per-request timeout (s); under the fault test's 1-s stalls it must be shorter")
    args = parser.parse_args()
    with JudgeClient(base_url=args.base_url, api_key="sk-fault-test", cache_path=args.cache_path,
                     validate=must_be_an_answer, progress=False, log=lambda line: None,
                     max_concurrency=args.concurrency, max_retries=8, timeout_s=args.timeout,
                     backoff_base_s=0.01, backoff_max_s=0.1) as client:
        report = client.run(questions(args.n))
    with open(args.out, "w") as f:
        json.dump({"texts": report.texts(), "ids": [r.id for r in report.results],
                   "statuses": sorted({r.status for r in report.results}), "n_ok": report.n_ok,
                   "n_cached": report.n_cached, "n_sent": report.n_sent, "failures": report.failures}, f)


if __name__ == "__main__":
    main()
