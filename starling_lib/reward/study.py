"""Levels 2 and 3 of notebook 02: K-wise vs pairwise reward models in the tiny world and on GPT-4 rankings.

What it is for: the notebook calls one function per level and plots the table it returns.

- :func:`learning_curve` (level 2): tiny reward models trained with each loss on the first n
  prompts of a tiny world, for several n and seeds, scored on fresh held-out prompts against the
  given ranks and against the gold reward.
- :func:`minilm_features` + :func:`real_rankings_cv` (level 3): the real GPT-4 rankings
  (``starling_ratings``: 1,143 rankings of 199 distinct Nectar prompts by six prompting
  strategies). Each prompt+answer is embedded once by the pretrained all-MiniLM-L6-v2 encoder
  (mean-pooled, as sentence-transformers does); a linear reward head on those frozen features is
  fitted by each loss (:func:`starling_lib.reward.theory.fit_linear_reward`) and scored by
  cross-validation **by prompt** (all rankings of a prompt on the same side), repeated with fresh
  fold assignments. Fine-tuning the whole encoder is ``starling rm train --backbone minilm``;
  on 2 CPU cores it takes minutes per epoch, so the notebook uses frozen features.
  :func:`real_rankings_study` runs it end to end: per-prompt accuracy of each head and of "the
  longer answer wins", with bootstrap intervals over prompts.
- :func:`curve_headlines`: the level-2 numbers the notebook's verdict and checks quote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from starling_lib.config import Preset
from starling_lib.data.tinyworld import generate_world
from starling_lib.models import minilm_reward_model
from starling_lib.parallel import map_runs, workers_for
from starling_lib.precision import autocast_context, resolve_device, resolve_precision
from starling_lib.paths import runs_dir
from starling_lib.reward.collate import ListwiseCollator, best_first_order
from starling_lib.reward.data import prompt_folds, tinyworld_examples
from starling_lib.reward.metrics import bootstrap_ci, ranking_metrics
from starling_lib.reward.theory import fit_linear_reward
from starling_lib.reward.train import build_backbone, evaluate_reward_model, train_reward_model

METRIC_NAMES = ("pairwise_accuracy", "adjacent_accuracy", "top1_accuracy", "kendall_tau", "gold_pairwise_accuracy")


# ----------------------------------------------------------------------------------------------
# Level 2: tiny world

def learning_curve(preset: Preset, n_grid=None, seeds: int | None = None, losses=None, n_eval: int | None = None,
                   workdir: str | Path | None = None, log=None) -> pd.DataFrame:
    """One row per (seed, n, loss): held-out metrics of a tiny RM trained on n prompts.

    Seed s uses world seed ``world.seed + 1000 s`` for its training prompts and model init
    ``runtime.seed + s``; the held-out prompts come from a separate world (seed ``world.seed + 999``)
    shared by every run, so points differ only in what they trained on. Points train side by side
    (``runtime.parallel_runs``, :mod:`starling_lib.parallel`), the largest first; ``log`` gets a line
    as each finishes.
    """
    study = preset.rm_study
    n_grid = list(study.curve_n_prompts if n_grid is None else n_grid)
    seeds = study.curve_seeds if seeds is None else seeds
    losses = list(study.curve_losses if losses is None else losses)
    n_eval = study.curve_eval_prompts if n_eval is None else n_eval
    workdir = Path(workdir) if workdir is not None else runs_dir() / "rm_curve" / preset.name
    held_out = tinyworld_examples(generate_world(dataclasses.replace(preset.world, n_prompts=n_eval,
                                                                     seed=preset.world.seed + 999)))
    jobs = []
    for seed in range(seeds):
        world = dataclasses.replace(preset.world, n_prompts=max(n_grid), seed=preset.world.seed + 1000 * seed)
        pool = tinyworld_examples(generate_world(world))
        for n in n_grid:
            for loss in losses:
                run_preset = dataclasses.replace(
                    preset, runtime=dataclasses.replace(preset.runtime, seed=preset.runtime.seed + seed),
                    reward=dataclasses.replace(preset.reward, loss_type=loss, epochs=study.curve_epochs))
                jobs.append((run_preset, pool[:n], held_out, workdir / f"s{seed}-n{n}-{loss}",
                             {"seed": seed, "n_prompts": n, "loss": loss}))

    def report(_, row):
        if log:
            log(f"seed {row['seed']} n {row['n_prompts']:4d} {row['loss']:9s} acc {row['pairwise_accuracy']:.3f} "
                f"gold {row['gold_pairwise_accuracy']:.3f} ({row['train_seconds']:.1f} s)")

    biggest_first = sorted(range(len(jobs)), key=lambda i: -jobs[i][-1]["n_prompts"])
    rows = map_runs(curve_point, jobs, workers_for(preset, len(jobs)), on_result=report, order=biggest_first)
    return pd.DataFrame(rows)


def curve_point(run_preset: Preset, examples: list[dict], held_out: list[dict], run_dir: Path, labels: dict) -> dict:
    """One point of :func:`learning_curve`: a fresh tiny RM trained on ``examples``, scored on ``held_out``
    (a job of :func:`~starling_lib.parallel.map_runs`)."""
    model, tokenizer = build_backbone(run_preset)
    run = train_reward_model(run_preset, examples, None, run_dir, model=model, tokenizer=tokenizer, save_final=False,
                             save_strategy="no")
    metrics = evaluate_reward_model(run.model, tokenizer, held_out, run_preset)
    return {**labels, "steps": run.metrics["steps"], "train_seconds": run.train_seconds,
            **{name: metrics[f"eval_{name}"] for name in METRIC_NAMES},
            "rank_gold_agreement": metrics["eval_rank_gold_agreement"]}


# ----------------------------------------------------------------------------------------------
# Level 3: real GPT-4 rankings, frozen MiniLM features

def _texts_key(examples: list[dict], max_length: int) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example["prompt_text"], sorted(example["answers"])]).encode())
    return f"{digest.hexdigest()[:16]}-{max_length}"


@torch.no_grad()
def minilm_features(examples: list[dict], max_length: int = 256, batch_size: int = 32,
                    cache_dir: str | Path | None = None, device: str = "auto", dtype: str = "auto",
                    log=None) -> list[np.ndarray]:
    """Per example, ``(K, 384)`` mean-pooled MiniLM embeddings of its answers (in the example's
    answer order), each distinct prompt+answer encoded once (in ``dtype``: ``auto`` = the hardware's choice,
    :mod:`starling_lib.precision`);
    cached on disk by content."""
    cache_dir = Path(cache_dir) if cache_dir is not None else runs_dir() / "cache"
    precision = resolve_precision(dtype, resolve_device(device))
    suffix = "" if precision.name == "fp32" else f"-{precision.name}"
    cache = cache_dir / f"minilm-features-{_texts_key(examples, max_length)}{suffix}.npz"
    pairs = list(dict.fromkeys((e["prompt_text"], a) for e in examples for a in e["answers"]))
    index = {pair: i for i, pair in enumerate(pairs)}
    if cache.is_file():
        table = np.load(cache)["features"]
    else:
        started = time.perf_counter()
        model, tokenizer = minilm_reward_model()
        encoder = model.base_model.to(resolve_device(device)).eval()
        prompts = {e["prompt_text"]: e["prompt"] for e in examples}
        collator = ListwiseCollator(tokenizer, max_length=max_length)
        table = np.zeros((len(pairs), encoder.config.hidden_size), dtype=np.float32)
        # Batches of similar length (by characters): far less padding than the texts' own order.
        by_length = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(pairs), batch_size):
            rows = by_length[start:start + batch_size]
            batch = collator([{"prompt": prompts[pairs[i][0]], "answers": [pairs[i][1]]} for i in rows])
            with autocast_context(encoder.device, precision):
                hidden = encoder(input_ids=batch["input_ids"].to(encoder.device),
                                 attention_mask=batch["attention_mask"].to(encoder.device)).last_hidden_state.float()
            mask = batch["attention_mask"].to(hidden.device).unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)  # sentence-transformers' mean pooling
            table[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, features=table)
        if log:
            log(f"MiniLM: encoded {len(pairs)} distinct prompt+answer texts in {time.perf_counter() - started:.1f} s")
    return [table[[index[(e["prompt_text"], a)] for a in e["answers"]]] for e in examples]


def stack_best_first(features: list[np.ndarray], examples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """``(n, K, d)`` features with each row best first by the example's ranks, and the ``(n, K)``
    mask of present answers (rows with fewer answers are padded): what
    :func:`.theory.fit_linear_reward` takes."""
    k = max(len(f) for f in features)
    x = np.zeros((len(features), k, features[0].shape[1]))
    mask = np.zeros((len(features), k), dtype=bool)
    for i, (f, example) in enumerate(zip(features, examples)):
        order = best_first_order(example)
        x[i, :len(order)], mask[i, :len(order)] = f[order], True
    return x, mask


def _score_table(scores: list[np.ndarray], examples: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    k = max(len(x) for x in scores)
    score_arr, rank_arr = np.full((len(scores), k), np.nan), np.full((len(scores), k), np.nan)
    for row, (x, e) in enumerate(zip(scores, examples)):
        score_arr[row, :len(x)] = x
        rank_arr[row, :len(x)] = e[key]
    return score_arr, rank_arr


def real_rankings_cv(examples: list[dict], features: list[np.ndarray], losses=("kwise", "pairwise"),
                     n_folds: int = 5, repeats: int = 4, l2: float = 1e-2, seed: int = 0) -> pd.DataFrame:
    """Cross-validated held-out scores of linear heads on frozen features, by prompt.

    One row per (repeat, loss, held-out ranking): the ranking's ``prompt_text`` and ``strategy``,
    its ``pairwise_accuracy`` / ``n_pairs`` against the held-out GPT-4 ranking itself, and
    ``nectar_pairwise_accuracy`` against Nectar's published ranking of the same answers. Each
    prompt is held out once per repeat, so averaging a prompt's rows gives one number per prompt:
    the unit to bootstrap over (rankings of one prompt are not independent).
    """
    rows = []
    for repeat in range(repeats):
        for fold, test in enumerate(prompt_folds(examples, n_folds, seed=seed + repeat)):
            train = np.setdiff1d(np.arange(len(examples)), test)
            x_train, m_train = stack_best_first([features[i] for i in train], [examples[i] for i in train])
            held = [examples[i] for i in test]
            for loss in losses:
                theta = fit_linear_reward(x_train, loss, mask=m_train, l2=l2)
                scores = [features[i] @ theta for i in test]
                rows += _ranking_rows(scores, held, {"repeat": repeat, "fold": fold, "loss": loss})
    return pd.DataFrame(rows)


def _ranking_rows(scores: list[np.ndarray], examples: list[dict], extra: dict) -> list[dict]:
    """Per-ranking accuracy of ``scores`` against each example's ``ranks`` (and ``nectar_ranks``)."""
    score_arr, rank_arr = _score_table(scores, examples, "ranks")
    per = ranking_metrics(score_arr, rank_arr, per_prompt=True)["per_prompt"]
    nectar = None
    if all("nectar_ranks" in e for e in examples):
        nectar = ranking_metrics(*_score_table(scores, examples, "nectar_ranks"), per_prompt=True)["per_prompt"]
    return [{**extra, "prompt_text": e["prompt_text"], "strategy": e.get("strategy"),
             "pairwise_accuracy": per["pairwise_accuracy"][i], "n_pairs": per["n_pairs"][i],
             "top1_accuracy": per["top1_accuracy"][i], "kendall_tau": per["kendall_tau"][i],
             **({"nectar_pairwise_accuracy": nectar["pairwise_accuracy"][i]} if nectar is not None else {})}
            for i, e in enumerate(examples)]


def length_baseline(examples: list[dict]) -> pd.DataFrame:
    """The same per-ranking table for "the longer answer is better" (characters), a known strong
    heuristic for LLM judges' preferences."""
    return pd.DataFrame(_ranking_rows([np.array([len(a) for a in e["answers"]], dtype=float) for e in examples],
                                      examples, {"repeat": 0, "loss": "length"}))


def judge_self_agreement(examples: list[dict]) -> dict:
    """How often two GPT-4 rankings of the same answers (different prompting strategies) order a pair
    the same way: a ceiling for any reward model scored against one of them."""
    by_prompt: dict[str, list[dict[str, float]]] = {}
    for e in examples:
        by_prompt.setdefault(e["prompt_text"], []).append(dict(zip(e["answers"], e["ranks"])))
    per_prompt = []
    for rankings in by_prompt.values():
        agree = total = 0
        for a in range(len(rankings)):
            for b in range(a + 1, len(rankings)):
                common = sorted(set(rankings[a]) & set(rankings[b]))
                for i in range(len(common)):
                    for j in range(i + 1, len(common)):
                        x, y = common[i], common[j]
                        da, db = rankings[a][x] - rankings[a][y], rankings[b][x] - rankings[b][y]
                        agree += (da * db) > 0
                        total += 1
        if total:
            per_prompt.append(agree / total)
    return {"pairwise_agreement": float(np.mean(per_prompt)) if per_prompt else float("nan"),
            "n_prompts": len(per_prompt), "per_prompt": np.array(per_prompt)}


def per_prompt_accuracy(table: pd.DataFrame, column: str = "pairwise_accuracy") -> pd.DataFrame:
    """Prompts x losses: each prompt's mean ``column`` over its rankings and repeats."""
    return table.groupby(["prompt_text", "loss"])[column].mean().unstack("loss")


def read_training_logs(run_dirs) -> pd.DataFrame:
    """The ``event == "train"`` lines of ``log.jsonl`` files (as ``starling rm train`` writes them), with ``run``."""
    frames = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "log.jsonl"
        if path.is_file():
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            frame = pd.DataFrame([r for r in records if r.get("event") == "train" and "loss" in r])
            frame["run"] = Path(run_dir).name
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ----------------------------------------------------------------------------------------------
# The numbers notebook 02 quotes: one object per level, so its cells only call, plot and say

def curve_headlines(curve: pd.DataFrame) -> dict:
    """Level 2 in numbers, from :func:`learning_curve`'s table: ``gold_means`` (n x loss, mean held-out
    gold accuracy over seeds), ``gap`` (K-wise minus pairwise by n), ``mean_gap``, ``mean_spread`` (the
    seed-to-seed range of gold accuracy, averaged over n and losses) and ``rank_gold_agreement`` (how
    often the given ranks agree with gold on held-out pairs: the judge's own ceiling)."""
    gold = curve.groupby(["n_prompts", "loss"]).gold_pairwise_accuracy
    gold_means = gold.mean().unstack("loss")
    gap = gold_means["kwise"] - gold_means["pairwise"]
    spread = gold.agg(lambda x: x.max() - x.min())
    return {"gold_means": gold_means, "gap": gap, "mean_gap": float(gap.mean()), "mean_spread": float(spread.mean()),
            "rank_gold_agreement": float(curve.rank_gold_agreement.mean())}


@dataclasses.dataclass
class RealRankingsStudy:
    """Level 3: held-out accuracy of each model, per prompt, with 95 % bootstrap intervals over prompts.

    ``summary``: one row per model (each loss and ``length``), columns ``vs GPT-4 ranking``, ``low``,
    ``high`` (against the held-out GPT-4 ranking) and ``vs Nectar ranking``, ``low ``, ``high ``
    (against Nectar's published ranking; the trailing spaces keep the results file's keys);
    ``diff``: ``(mean, low, high)`` of K-wise minus pairwise per-prompt accuracy; ``agreement``:
    :func:`judge_self_agreement`'s dict."""

    summary: pd.DataFrame
    diff: tuple
    agreement: dict
    n_rankings: int
    n_prompts: int

    def to_results(self, digits: int = 5) -> dict:
        """The notebook's ``results["real"]``."""
        return {"n_rankings": self.n_rankings, "n_prompts": self.n_prompts,
                "agreement": self.agreement["pairwise_agreement"], "diff": self.diff,
                "summary": self.summary.round(digits).reset_index().to_dict(orient="records")}

    def describe(self) -> str:
        """Two lines: the data, the judge's self-agreement, and the K-wise minus pairwise interval."""
        m, lo, hi = self.diff
        return (f"{self.n_rankings} rankings of {self.n_prompts} prompts; GPT-4 vs GPT-4 pairwise agreement "
                f"{self.agreement['pairwise_agreement']:.3f} ({self.agreement['n_prompts']} prompts ranked more than once)\n"
                f"K-wise - pairwise, per-prompt held-out accuracy: {m:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                "(95 % bootstrap over prompts)")


def real_rankings_study(examples: list[dict], features: list[np.ndarray], losses=("kwise", "pairwise", "adjacent"),
                        n_folds: int = 5, repeats: int = 4, l2: float = 1e-2, seed: int = 0) -> RealRankingsStudy:
    """Level 3 end to end on embedded rankings: :func:`real_rankings_cv` for each loss next to
    :func:`length_baseline`, averaged per prompt (the independent unit) and bootstrapped over prompts."""
    cv = real_rankings_cv(examples, features, losses=losses, n_folds=n_folds, repeats=repeats, l2=l2, seed=seed)
    table = pd.concat([cv, length_baseline(examples)], ignore_index=True)
    per_prompt = per_prompt_accuracy(table)
    per_prompt_nectar = per_prompt_accuracy(table, "nectar_pairwise_accuracy")
    rows = []
    for loss in per_prompt.columns:
        m, lo, hi = bootstrap_ci(per_prompt[loss], seed=seed)
        mn, lon, hin = bootstrap_ci(per_prompt_nectar[loss], seed=seed)
        rows.append({"model": loss, "vs GPT-4 ranking": m, "low": lo, "high": hi,
                     "vs Nectar ranking": mn, "low ": lon, "high ": hin})
    return RealRankingsStudy(summary=pd.DataFrame(rows).set_index("model"),
                             diff=bootstrap_ci(per_prompt["kwise"] - per_prompt["pairwise"], seed=seed),
                             agreement=judge_self_agreement(examples), n_rankings=len(examples),
                             n_prompts=len(per_prompt))
