"""Time and peak memory of every numbered notebook on a preset, against the preset's budget.

    python benchmarks/bench_reproduce.py [--preset tiny|smoke] [--only 02] [--dtype auto|fp32|bf16] [--cells 10]

Budgets (issue 2): ``smoke`` <= 60 s per notebook (CI); ``tiny`` <= 15 min for all notebooks together
and <= 4 GiB peak memory, on 2 CPU cores. Runs into a temporary folder, so committed figures stay
untouched. The last line is JSON; ``ratio`` = budget / measured (>= 1 means within budget). It records
the compute dtype each notebook ran in, the CPU and its bf16 support (:mod:`starling_lib.precision`),
the slowest cells (papermill's per-cell durations), so a profile comes with every timing, and the
share of CPU time the hypervisor took for other guests while it ran (``cpu_steal_fraction``, from
``/proc/stat``): on a shared cloud VM that share moved the same notebook's time by up to 1.4x here.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from starling_lib.precision import DTYPE_NAMES, auto_dtype, precision_record
from starling_lib.reproduce import reproduce

BUDGETS = {  # seconds: per notebook for smoke, all notebooks together for tiny
    "smoke": {"seconds": 60.0, "per": "notebook"},
    "tiny": {"seconds": 15 * 60.0, "per": "run", "peak_gib": 4.0},
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(BUDGETS))
    parser.add_argument("--only", default=None, help="notebook numbers, e.g. 00,01")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="runtime.dtype for every notebook")
    parser.add_argument("--cells", type=int, default=10, help="how many of the slowest cells to list")
    args = parser.parse_args(argv)

    budget = BUDGETS[args.preset]
    ticks_before = cpu_ticks()
    with tempfile.TemporaryDirectory(prefix="starling-bench-") as tmp:
        start = time.perf_counter()
        runs = reproduce(args.preset, only=args.only, figures_dir=Path(tmp) / "figures",
                         runs_dir=Path(tmp) / "runs", log=lambda line: print(line, file=sys.stderr),
                         overrides=[f"runtime.dtype={args.dtype}"])
        total = time.perf_counter() - start
        cells = slowest_cells([Path(run.output) for run in runs], args.cells)
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
        "dtype": args.dtype if args.dtype != "auto" else f"auto ({auto_dtype('cpu')[0]}: {auto_dtype('cpu')[1]})",
        "cpu": {k: v for k, v in precision_record().items() if k != "resolved"},
        "slowest_cells": cells,
        "cpu_steal_fraction": steal_fraction(ticks_before, cpu_ticks()),
        "ratio": round(budget["seconds"] / measured, 2),
    }
    if "peak_gib" in budget:
        result["memory_ratio"] = round(budget["peak_gib"] / peak_gib, 2)
    print(json.dumps(result))
    return result


def slowest_cells(executed: list[Path], n: int) -> list[dict]:
    """The ``n`` slowest code cells of executed notebooks (papermill's ``duration``), with their first line."""
    cells = []
    for path in executed:
        if not path.is_file():
            continue
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if cell["cell_type"] == "code" and duration:
                first = next((line for line in "".join(cell["source"]).splitlines() if line.strip()), "")
                cells.append({"notebook": path.stem, "cell": index, "seconds": round(duration, 1), "first_line": first[:80]})
    return sorted(cells, key=lambda c: -c["seconds"])[:n]


def cpu_ticks() -> list[int] | None:
    """The aggregate ``cpu`` line of ``/proc/stat`` (user nice system idle iowait irq softirq steal ...),
    or ``None`` where there is no such file."""
    try:
        with open("/proc/stat") as handle:
            return [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """Stolen ticks over all ticks between two :func:`cpu_ticks` readings (``None`` where unknown)."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before, after)]
    return round(delta[7] / max(sum(delta[:8]), 1), 3)


if __name__ == "__main__":
    main()
