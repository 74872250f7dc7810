"""Notebook 05's bookkeeping: its own reward models scored under the names it shows, and the tables
and words its cells print, so each cell is one call.

- :func:`minilm_scores`: the MiniLM heads per loss (and, with ``rm_bench.finetune_epochs > 0``, the
  fine-tuned encoders) on the benchmark items, named by :func:`model_name`;
- :func:`metric_table`: models x benchmarks of one metric;
- :func:`format_interval`, :func:`format_differences`: the verdict's numbers in words;
  :func:`differences_record`: paired differences as the results file stores them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from starling_lib.reward.bench import (BENCHMARK_FILES, Benchmark, finetuned_minilm_scores, fit_minilm_heads,
                                       minilm_head_scores)


def model_name(key: str) -> str:
    """The name notebook 05 shows for a score set: ``kwise`` -> ``MiniLM K-wise head``, ``pairwise`` ->
    ``MiniLM pairwise head``, ``minilm-ft-kwise`` -> ``MiniLM fine-tuned K-wise``."""
    if key.startswith("minilm-ft-"):
        return key.replace("minilm-ft-", "MiniLM fine-tuned ").replace("kwise", "K-wise")
    return f"MiniLM {'K-wise' if key == 'kwise' else key} head"


def minilm_scores(preset, examples: list[dict], benchmarks: dict[str, Benchmark], workdir: str | Path,
                  log=None) -> dict[str, dict[str, np.ndarray]]:
    """Notebook 05's own reward models, scored on ``benchmarks`` under :func:`model_name`'s names: a
    linear head on frozen MiniLM per loss of ``preset.rm_bench`` (fitted to all ``examples``) and, when
    ``rm_bench.finetune_epochs > 0``, the whole encoder fine-tuned with each loss."""
    study, bc = preset.rm_study, preset.rm_bench
    kw = {"max_length": study.real_max_length, "dtype": preset.runtime.dtype, "log": log}
    heads = fit_minilm_heads(examples, bc.losses, l2=study.real_l2, **kw)
    scores = {model_name(loss): s for loss, s in minilm_head_scores(benchmarks, heads, **kw).items()}
    if bc.finetune_epochs > 0:
        tuned = finetuned_minilm_scores(preset, examples, benchmarks, workdir, log=log)
        scores.update({model_name(key): s for key, s in tuned.items()})
    return scores


def metric_table(metrics: dict[str, dict[str, dict]], metric: str = "accuracy", benchmarks=None):
    """A DataFrame, models x benchmarks, of one metric (``metrics``: model -> :func:`.bench.bench_metrics`'s
    dict); rows in ``metrics``' order, columns in ``benchmarks``' (default :data:`.bench.BENCHMARK_FILES`')."""
    benchmarks = list(benchmarks or BENCHMARK_FILES)
    table = pd.DataFrame([{"model": model, "benchmark": name, **m} for model, per in metrics.items() for name, m in per.items()])
    return table.pivot(index="model", columns="benchmark", values=metric)[benchmarks].loc[list(metrics)]


def format_interval(m: dict, key: str = "accuracy") -> str:
    """``0.644 [0.602, 0.686]``: a :func:`.bench.bench_metrics` entry's ``key`` with its interval."""
    return f"{m[key]:.3f} [{m[key + '_low']:.3f}, {m[key + '_high']:.3f}]"


def format_differences(diffs: dict[str, tuple], skip=()) -> str:
    """``preference +0.010 [-0.014, +0.036], ...``: :func:`.bench.paired_accuracy_difference`'s result in words."""
    return ", ".join(f"{n} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]" for n, (m, lo, hi) in diffs.items() if n not in skip)


def differences_record(diffs: dict[str, tuple]) -> dict[str, dict]:
    """:func:`.bench.paired_accuracy_difference`'s result as ``{benchmark: {"mean", "low", "high"}}`` (results files)."""
    return {n: dict(zip(("mean", "low", "high"), v)) for n, v in diffs.items()}
