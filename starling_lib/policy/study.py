"""Notebook 03's experiment: APA vs PPO from one SFT start, measured against the gold reward.

What it is for: the tiny world knows the true reward of any text, so policy tuning against a
*learned* proxy reward model can be scored on what it was meant to improve. This module holds the
steps of that experiment so the notebook only calls and plots:

- :func:`~starling_lib.policy.pipeline.split_world` (in ``pipeline``, shared with the CLI): disjoint
  tiny-world prompts for SFT, the proxy reward model, RL and held-out evaluation;
- :func:`evaluate_policy`: sample one response per held-out prompt and report gold reward, proxy
  reward, KL to the start policy and length, per prompt;
- :func:`compare_algorithms`: every algorithm × seed from the same start, same budget, each run
  evaluated on the same held-out prompts; training logs gathered in one table;
- :func:`sample_table`: the same prompts answered before and after, side by side.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from starling_lib.config import Preset
from starling_lib.data.chat import prompt_to_messages
from starling_lib.data.gold import gold_reward
from starling_lib.parallel import map_runs, workers_for
from starling_lib.precision import resolve_device, runtime_dtype
from starling_lib.policy.rollout import (RewardScorer, decode_responses, encode_prompts, forward_tokens,
                                         sample_responses)
from starling_lib.policy.train import train_policy


@torch.no_grad()
def evaluate_policy(policy, tokenizer, reference, scorer: RewardScorer, prompts: list, preset: Preset, seed: int = 0,
                    gold_fn: Callable | None = gold_reward, batch_size: int = 32) -> pd.DataFrame:
    """One sampled response per prompt (the rollout sampler's settings): a row per prompt with
    ``gold`` (where known), ``proxy``, ``kl`` (Σ_t log π/π_ref of the sampled tokens, an unbiased
    estimate of KL(π‖π_ref) for the prompt), ``length`` in tokens and the ``response`` text."""
    cfg, device = preset.policy, resolve_device(preset.runtime)
    policy.to(device).eval()
    reference.to(device).eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        ids, mask, _ = encode_prompts(tokenizer, batch, cfg.max_prompt_length)
        ids, mask = ids.to(device), mask.to(device)
        response, rmask = sample_responses(policy, tokenizer, ids, mask, cfg.max_new_tokens, cfg.temperature,
                                           cfg.top_p, runtime_dtype(preset.runtime))
        temperature = cfg.temperature if cfg.temperature > 0 else 1.0
        own = forward_tokens(policy, ids, mask, response, rmask, temperature).logprobs
        ref = forward_tokens(reference, ids, mask, response, rmask, temperature).logprobs
        kl = ((own - ref) * rmask).sum(1)
        texts = decode_responses(tokenizer, response, rmask)
        proxy = scorer(batch, texts)
        for i, (prompt, text) in enumerate(zip(batch, texts)):
            rows.append({"prompt": prompt, "response": text, "proxy": float(proxy[i]), "kl": float(kl[i]),
                         "length": int(rmask[i].sum()),
                         "gold": float(gold_fn(prompt, text)) if gold_fn is not None else np.nan})
    torch.random.set_rng_state(generator_state)
    return pd.DataFrame(rows)


def compare_algorithms(preset: Preset, policy, tokenizer, reward_model, reward_tokenizer, rl_prompts: list,
                       eval_prompts: list, output_dir: str | Path, algo_overrides: dict[str, dict] | None = None,
                       gold_fn: Callable | None = gold_reward) -> dict[str, pd.DataFrame]:
    """Train each of ``preset.policy_study.algos`` for ``seeds`` seeds from a copy of ``policy``.

    ``algo_overrides``: per algorithm, ``PolicyConfig`` fields that differ from ``preset.policy``
    (e.g. PPO's ``kl_coef``). Returns ``logs`` (every training-log record, with ``algo`` and
    ``seed``), ``evals`` (held-out rows per run, plus the start policy as ``algo="sft"``) and
    ``summary`` (per run: mean gold, proxy, KL on the held-out prompts).
    """
    study = preset.policy_study
    for algo, fields in (algo_overrides or {}).items():
        unknown = [name for name in fields if not hasattr(preset.policy, name)]
        if unknown:
            raise ValueError(f"algo_overrides[{algo!r}]: PolicyConfig has no field {unknown[0]!r}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    reference = copy.deepcopy(policy).eval()
    models = (policy, tokenizer, reference, reward_model, reward_tokenizer)
    runs = []
    for algo in study.algos:
        for seed in range(study.seeds):
            run_preset = copy.deepcopy(preset)
            run_preset.policy.algo = algo
            for name, value in (algo_overrides or {}).get(algo, {}).items():
                setattr(run_preset.policy, name, value)
            run_preset.runtime.seed = seed
            runs.append((run_preset, models, rl_prompts, eval_prompts, output_dir / f"{algo}-seed{seed}", gold_fn,
                         {"algo": algo, "seed": seed}))
    starts = [(preset, models, None, eval_prompts, None, gold_fn, {"algo": "sft", "seed": seed})
              for seed in range(study.seeds)]
    jobs = starts + runs  # the long runs start first
    done = map_runs(algorithm_run, jobs, workers_for(preset, len(jobs)),
                    order=list(range(len(starts), len(jobs))) + list(range(len(starts))))
    logs = [record for history, _ in done for record in history]
    evals = [evaluation for _, evaluation in done]
    evals = pd.concat(evals, ignore_index=True)
    summary = (evals.groupby(["algo", "seed"], sort=False)[["gold", "proxy", "kl", "length"]].mean().reset_index())
    (output_dir / "summary.json").write_text(json.dumps(summary.to_dict(orient="records"), indent=2) + "\n")
    return {"logs": pd.DataFrame(logs), "evals": evals, "summary": summary}


def algorithm_run(preset: Preset, models: tuple, rl_prompts: list | None, eval_prompts: list, run_dir: Path | None,
                  gold_fn: Callable | None, labels: dict) -> tuple[list[dict], pd.DataFrame]:
    """One job of :func:`compare_algorithms` (:func:`~starling_lib.parallel.map_runs`): ``(training log
    records, held-out rows)``, both tagged with ``labels`` (``algo``, ``seed``). With ``rl_prompts``:
    ``preset.policy`` trained from a copy of the start policy, then evaluated; without: the start
    itself evaluated. ``models``: (start policy, tokenizer, reference, reward model, its tokenizer),
    none of them changed. The evaluation seed is ``1000 + seed``, the same for a run and its start."""
    policy, tokenizer, reference, reward_model, reward_tokenizer = models
    history = []
    if rl_prompts is not None:
        run = train_policy(preset, rl_prompts, copy.deepcopy(policy), tokenizer, reward_model, reward_tokenizer,
                           run_dir, gold_fn=gold_fn, save_final=False, progress=False)
        history, policy = [{**record, **labels} for record in run.history], run.policy
    scorer = RewardScorer(reward_model, reward_tokenizer, preset.policy.rm_max_length, dtype=runtime_dtype(preset.runtime))
    after = evaluate_policy(policy, tokenizer, reference, scorer, eval_prompts, preset, seed=1000 + labels["seed"],
                            gold_fn=gold_fn)
    return history, after.assign(**labels)


def sample_table(evals: pd.DataFrame, algos: list[str], n_rows: int = 6, seed: int = 0, width: int = 160) -> pd.DataFrame:
    """The first ``n_rows`` held-out prompts (their last user turn): each algorithm's response
    (evaluation seed ``seed``), prefixed with its gold reward."""
    prompts = list(dict.fromkeys(evals["prompt"]))[:n_rows]
    table = []
    for prompt in prompts:
        messages = prompt_to_messages(prompt) if isinstance(prompt, str) else prompt
        earlier = sum(m["role"] == "user" for m in messages) - 1
        row = {"prompt": messages[-1]["content"][:width] + (f" (after {earlier} earlier turns)" if earlier else "")}
        for algo in algos:
            hit = evals[(evals["prompt"] == prompt) & (evals["algo"] == algo) & (evals["seed"] == seed)]
            if len(hit):
                text = hit["response"].iloc[0].replace("\n", " / ")
                row[algo] = f"[{hit['gold'].iloc[0]:+.2f}] {text[:width]}"
        table.append(row)
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------------------------
# The verdict: numbers per algorithm, and the claims notebook 03 makes from them

def gains_over_start(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the SFT start's rows indexed by evaluation seed, the tuned runs with ``gold_gain`` and
    ``proxy_gain`` over the start, paired by evaluation seed)."""
    start = summary[summary.algo == "sft"].set_index("seed")
    gains = summary[summary.algo != "sft"].copy()
    for col in ("gold", "proxy"):
        gains[f"{col}_gain"] = gains[col].to_numpy() - start.loc[gains.seed, col].to_numpy()
    return start, gains


def algorithm_verdict(gains: pd.DataFrame, logs: pd.DataFrame, iterations: int) -> dict[str, dict]:
    """Per algorithm: mean gold gain with its seed sd and minimum, proxy gain, KL, gold gain per
    unit KL, steadiness (batch-to-batch gold jump in the second half, value loss in the first half,
    training-batch KL peak: of the mean over seeds, of any batch, and each seed's own), length."""
    verdict = {}
    for algo, part in gains.groupby("algo", sort=False):
        g = part.gold_gain.to_numpy()
        runs = logs[logs.algo == algo]
        second_half = runs[runs.iteration >= iterations // 2]
        verdict[algo] = {
            "gold_gain_mean": float(g.mean()), "gold_gain_seed_sd": float(g.std(ddof=1)) if len(g) > 1 else float("nan"),
            "gold_gain_min": float(g.min()), "proxy_gain_mean": float(part.proxy_gain.mean()),
            "kl_mean": float(part.kl.mean()), "gold_per_kl": float(g.mean() / max(part.kl.mean(), 1e-9)),
            "gold_step_jitter": float(second_half.sort_values("iteration").groupby("seed").gold_reward.diff().abs().mean()),
            "value_loss_first_half": float(runs[runs.iteration < iterations // 2].value_loss.mean()),
            "kl_peak_mean_over_seeds": float(runs.groupby("iteration").kl.mean().max()),
            "kl_peak_any_batch": float(runs.kl.max()),
            "kl_peak_per_seed": [float(v) for v in runs.groupby("seed").kl.max()],
            "length_mean": float(part.length.mean()),
        }
    return verdict
