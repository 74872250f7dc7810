"""Time and peak memory of every numbered notebook on a preset, against the preset's budget.

    python benchmarks/bench_reproduce.py [--preset tiny|smoke]

Budgets (issue 2): ``smoke`` <= 60 s per notebook (CI); ``tiny`` <= 15 min for all notebooks together
and <= 4 GiB peak memory, on 2 CPU cores. Runs into a temporary folder, so committed figures stay
untouched. The last line is JSON; ``ratio`` = budget / measured (>= 1 means within budget).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from starling_lib.reproduce import reproduce

BUDGETS = {  # seconds: per notebook for smoke, all notebooks together for tiny
    "smoke": {"seconds": 60.0, "per": "notebook"},
    "tiny": {"seconds": 15 * 60.0, "per": "run", "peak_gib": 4.0},
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(BUDGETS))
    parser.add_argument("--only", default=None, help="notebook numbers, e.g. 00,01")
    args = parser.parse_args(argv)

    budget = BUDGETS[args.preset]
    with tempfile.TemporaryDirectory(prefix="starling-bench-") as tmp:
        start = time.perf_counter()
        runs = reproduce(args.preset, only=args.only, figures_dir=Path(tmp) / "figures",
                         runs_dir=Path(tmp) / "runs", log=lambda line: print(line, file=sys.stderr))
        total = time.perf_counter() - start
    # ru_maxrss of children: the largest kernel process (KiB on Linux).
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    per_notebook = {run.notebook: round(run.seconds, 1) for run in runs}
    measured = max(per_notebook.values()) if budget["per"] == "notebook" else total
    result = {
        "benchmark": "reproduce",
        "preset": args.preset,
        "notebooks": per_notebook,
        "total_s": round(total, 1),
        "budget_s": budget["seconds"],
        "budget_per": budget["per"],
        "peak_kernel_rss_gib": round(peak_gib, 2),
        "ratio": round(budget["seconds"] / measured, 2),
    }
    if "peak_gib" in budget:
        result["memory_ratio"] = round(budget["peak_gib"] / peak_gib, 2)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
