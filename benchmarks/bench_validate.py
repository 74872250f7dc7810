"""Cost of validating Nectar rows, relative to only parsing their JSON.

    python benchmarks/bench_validate.py [--repeat 5] [FILES...]

Default input: the six published rating logs (``../shared/data/starling_ratings``, 1,143 rows),
or a generated tiny world of 2,000 prompts when they are absent. Every row is checked field by
field (ranks, answers, prompt turns, types), so validation costs more than ``json.loads``; the
target is that it stays within 10x of it, so validating all of Nectar (183k rows) is a matter of
seconds, not minutes. The last line is JSON; ``ratio`` = validate time / json.loads time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from starling_lib.config import TinyWorldConfig
from starling_lib.data import tinyworld
from starling_lib.data.nectar import validate_nectar
from starling_lib.paths import shared_data

TARGET_RATIO = 10.0


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        files = args.files
        if not files:
            ratings = shared_data("starling_ratings")
            if ratings is not None:
                files = sorted(ratings.glob("*/rankings.jsonl"))
            else:
                print("rating logs absent: using a generated tiny world", file=sys.stderr)
                files = [tinyworld.write_world_jsonl(tinyworld.generate_world(TinyWorldConfig(n_prompts=2000)),
                                                     Path(tmp) / "world.jsonl")]

        def parse_only():
            for path in files:
                with open(path, "rb") as f:
                    [json.loads(line) for line in f if line.strip()]

        reports = []

        def validate():
            reports.clear()
            reports.extend(validate_nectar(path) for path in files)

        parse_s = best_of(args.repeat, parse_only)
        validate_s = best_of(args.repeat, validate)
    n_rows = sum(r.n_rows for r in reports)
    result = {
        "benchmark": "validate",
        "files": len(files),
        "rows": n_rows,
        "valid": sum(r.n_valid for r in reports),
        "json_loads_s": round(parse_s, 4),
        "validate_s": round(validate_s, 4),
        "rows_per_s": round(n_rows / validate_s),
        "target_ratio": TARGET_RATIO,
        "ratio": round(validate_s / parse_s, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
