"""Notebook 06's experiments: the Starling blog's claims about policy tuning, tested in the tiny world.

What it is for: the blog (and issue 19) makes six claims about tuning the policy; each becomes a
selection of sweep runs (:mod:`starling_lib.policy.sweep`, read back by
:mod:`starling_lib.policy.sweep_results`) and a verdict with its numbers, so the notebook's cells are
one call each and the same analysis reads a heavy sweep made with ``starling policy sweep`` or the
reduced one the notebook runs itself.

- :data:`CLAIMS`: the claims, quoted;
- :func:`reduced_points`: the runs notebook 06 makes when it has no sweep folder, and
  :data:`FULL_SWEEP`: the grids of the full sweep (README), both on the same factors;
- :func:`label_runs`: factor columns on a :func:`~starling_lib.policy.sweep_results.results_frame`
  (method, strength, start, reward model, trained parameters) and each run's gold gain over its own
  start, paired by held-out prompt (:func:`paired_gain`);
- :func:`seed_noise`: the spread of a run's result over training seeds, from repeated settings;
- one function per claim (:func:`methods_claim` ... :func:`overoptimisation_claim`): a dict of
  numbers, the verdict word (``supports`` / ``contradicts`` / ``cannot resolve``) and a sentence.

Noise: a single run's held-out gold carries two kinds of noise, the evaluation's (finite prompts and
samples: the paired standard error of its gain) and the training seed's. The verdicts compare
differences with ``2·√2·σ``, σ the larger of the pooled seed sd and the typical paired SE: the
smallest difference between two single runs that is unlikely to be noise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from starling_lib.config import Preset

CLAIMS = {
    1: ("We experimented with three online RL methods: APA, PPO and P3O … with optimal hyperparameter "
        "settings, these methods yielded comparably strong results."),
    2: ("Our trials with offline RL methods like DPO showed no significant improvements over the initial model "
        "Openchat 3.5", "OpenChat 3.5 had already done offline preference-based training (C-RLFT)."),
    3: ("The quality of the preference dataset and reward model significantly influence the results, more so "
        "than the policy tuning method itself."),
    4: ("Only the last 4 layers were unfrozen, aiming for faster training speed; LoRA and full fine-tuning were "
        "future work."),
    5: "Excessive caution to certain benign prompts after initial RLHF.",
    6: "Over-optimisation (Gao et al. 2022): gold reward turns down where the proxy keeps rising, as KL grows.",
}
SUPPORTS, CONTRADICTS, UNRESOLVED = "supports", "contradicts", "cannot resolve at this power"
ONLINE = ("APA", "PPO", "PPO adaptive KL", "P3O")


# ----------------------------------------------------------------------------------------------
# The runs

def reduced_points(preset: Preset) -> tuple[list[str], list[dict], list[dict]]:
    """(overrides for every run, the runs at seed 0, the runs repeated at seed 1) of notebook 06's
    own sweep, sized for about 4 minutes of 2 CPU cores on ``tiny``: 7 iterations of 16 responses
    in minibatches of 8 (14 optimiser steps; notebook 03: 40 iterations, 40 steps), 64 held-out
    prompts (03: 192), one seed per setting and the APA default repeated for the seed spread, each
    method's knob at two settings. Runs serve several claims: the per-method sweeps (1) are the KL
    sweeps (6) and the strong-reward-model, full-parameter, plain-start cells of claims 2-5."""
    smoke = preset.name == "smoke"
    prompts = 4 if smoke else 16
    fixed = [f"policy.iterations={2 if smoke else 7}", f"policy.prompts_per_iteration={prompts}",
             f"policy.minibatch_size={prompts // 2}", f"policy_study.eval_prompts={8 if smoke else 64}"]
    if smoke:  # the mechanics only, in seconds: smaller starts, reward models and answers
        fixed += ["sft.n_prompts=10", "reward.max_steps=2", "policy.max_new_tokens=12"]
    weak_rm = max(4, preset.policy_study.rm_prompts // 10)
    apa = {"policy.algo": "apa"}
    ppo = {"policy.algo": "ppo", "policy.kl_coef": 0.05}
    # P3O samples two responses per prompt: half the prompts, the same responses generated and scored
    p3o = {"policy.algo": "p3o", "policy.kl_coef": 0.05, "policy.prompts_per_iteration": prompts // 2}
    # the adaptive β may move by up to 0.2 x responses / horizon per iteration, aiming at 10 nats: about
    # where PPO's default β = 0.05 ended in notebook 03, so the two meet near matched KL
    adaptive = {**ppo, "policy.kl_target": 10.0, "policy.kl_horizon": 5 * prompts}
    dpo = {"policy.algo": "dpo", "dpo.max_pairs": 8 if smoke else 192}  # about notebook 03's 197 RL prompts
    # C-RLFT's stand-in: the SFT start, one more epoch on each prompt's best-ranked answer only
    best_start = {"sft.answers": "best", "sft.continue_start": True}
    # LoRA moves little at the full model's learning rate: 10x for the adapters (common practice), the
    # critic (a full copy of the trunk) kept at the others' rate
    lora = {**apa, "policy.lora_r": 8, "policy.learning_rate": 3e-3, "policy.critic_learning_rate": 3e-4}
    points = [
        apa, {**apa, "policy.apa_lambda": 0.03}, ppo, {**ppo, "policy.kl_coef": 0.002},                # 1, 6
        adaptive, p3o,                                                                                   # 1
        dpo, {**dpo, **best_start},                                                                      # 2
        {**apa, "policy_study.rm_prompts": weak_rm}, {**ppo, "policy_study.rm_prompts": weak_rm},        # 3
        {**apa, "policy.unfreeze_last_n": 1}, lora,                                                      # 4
    ]
    return fixed, points, [apa]


FULL_SWEEP = [
    # 1 and 6: each method's own sweep, 3 seeds
    "--grid policy.apa_lambda=0.01,0.03,0.1,0.3,1 --set policy.algo=apa",
    "--grid policy.kl_coef=0.002,0.005,0.01,0.02,0.05,0.2 --set policy.algo=ppo",
    "--grid policy.kl_target=5,10,20 --set policy.algo=ppo --set policy.kl_coef=0.05 --set policy.kl_horizon=160",
    "--grid policy.kl_coef=0.01,0.05,0.2 --set policy.algo=p3o --set policy.prompts_per_iteration=8",
    # 2: DPO from both starts, and APA from the best-answers start
    "--grid sft.answers,sft.continue_start=all:false,best:true --grid policy.algo=dpo,apa",
    # 3: reward models from 30 / 100 / 300 prompts, pairwise and K-wise, x APA / PPO / P3O
    "--grid policy_study.rm_prompts=30,100,300 --grid reward.loss_type=kwise,pairwise "
    "--grid policy.algo,policy.kl_coef,policy.prompts_per_iteration=apa:0:16,ppo:0.05:16,p3o:0.05:8",
    # 4: which parameters train
    "--grid policy.unfreeze_last_n,policy.lora_r,policy.learning_rate=1:0:3e-4,none:8:3e-3,none:8:1e-3 "
    "--set policy.algo=apa --set policy.critic_learning_rate=3e-4",
]
"""The full sweep's grids, one ``starling policy sweep --preset tiny --seeds 0,1,2 --out DIR <line>``
per line into one DIR (README: 114 distinct runs of 40 iterations x 16 responses)."""


# ----------------------------------------------------------------------------------------------
# Labels, gains, noise

def method_of(row) -> str:
    """``APA``, ``PPO``, ``PPO adaptive KL`` (a ``kl_target``), ``P3O``, ``DPO`` or ``AWR``."""
    algo = row["policy.algo"]
    if algo == "ppo" and row.get("policy.kl_target") is not None and not _isnan(row.get("policy.kl_target")):
        return "PPO adaptive KL"
    return {"apa": "APA", "ppo": "PPO", "p3o": "P3O", "dpo": "DPO", "awr": "AWR"}.get(algo, algo)


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def strength_of(row) -> float:
    """The knob that sets how far a method moves: APA's λ, PPO's / P3O's β (adaptive: its KL target), DPO's β."""
    method = method_of(row)
    if method == "APA":
        return float(row["policy.apa_lambda"])
    if method == "PPO adaptive KL":
        return float(row["policy.kl_target"])
    if method == "DPO":
        return float(row.get("dpo.beta", float("nan")))
    return float(row["policy.kl_coef"])


def trained_of(row) -> str:
    """``all parameters``, ``last N blocks`` or ``LoRA r=R``."""
    if row.get("policy.lora_r"):
        return f"LoRA r={int(row['policy.lora_r'])}"
    n = row.get("policy.unfreeze_last_n")
    return "all parameters" if n is None or _isnan(n) else f"last {int(n)} block{'s' if int(n) > 1 else ''}"


def paired_gain(run: list[float], start: list[float]) -> tuple[float, float]:
    """(mean of ``run − start`` over held-out prompts, its standard error)."""
    diff = np.asarray(run, dtype=float) - np.asarray(start, dtype=float)
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")


def start_label(row) -> str:
    """``SFT`` (the sweep's start), ``SFT + best answers`` (a later stage of it), ``SFT on best answers``."""
    if row["sft.answers"] == "all":
        return "SFT"
    later = row.get("sft.continue_start")
    return f"SFT {'+' if later is True or later == 1.0 else 'on'} {row['sft.answers']} answers"


def label_runs(frame: pd.DataFrame, preset: Preset) -> pd.DataFrame:
    """The sweep's lines with ``method``, ``strength``, ``start_label``, ``trained``, ``base_start``
    (the preset's own SFT start), ``base_rm`` (its reward model), ``all_params`` and, for runs,
    ``gold_gain`` / ``gain_se`` (paired by prompt) / ``proxy_gain`` over the start line of the same
    start and reward model."""
    frame = frame.copy()
    frame["method"] = [method_of(r) if r["kind"] == "run" else "start" for _, r in frame.iterrows()]
    frame["strength"] = [strength_of(r) if r["kind"] == "run" else float("nan") for _, r in frame.iterrows()]
    frame["trained"] = [trained_of(r) for _, r in frame.iterrows()]
    frame["start_label"] = [start_label(r) for _, r in frame.iterrows()]
    later = frame["sft.continue_start"].fillna(False).astype(bool) if "sft.continue_start" in frame else False
    frame["base_start"] = (frame["sft.answers"] == preset.sft.answers) & ~later
    frame["base_rm"] = ((frame["rm_prompts"] == preset.policy_study.rm_prompts)
                        & (frame["reward.loss_type"] == preset.reward.loss_type))
    frame["all_params"] = frame.trained == "all parameters"
    starts = frame[frame.kind == "start"].set_index(["start", "rm"])
    for col in ("gold_gain", "gain_se", "proxy_gain"):
        frame[col] = np.nan
    for i, row in frame[frame.kind == "run"].iterrows():
        start = starts.loc[(row["start"], row["rm"])]
        frame.loc[i, ["gold_gain", "gain_se"]] = paired_gain(row["gold_per_prompt"], start["gold_per_prompt"])
        frame.loc[i, "proxy_gain"] = row["proxy"] - start["proxy"]
    return frame


def seed_noise(runs: pd.DataFrame) -> dict:
    """Pooled sd of held-out gold over training seeds, from settings run at more than one seed:
    ``{"sd", "dof", "groups"}`` (sd NaN without repeats)."""
    key = runs.settings.map(lambda s: repr(sorted(s.items())))
    variances, dof = [], 0
    for _, part in runs.groupby(key):
        if len(part) > 1:
            variances.append(part.gold.var(ddof=1) * (len(part) - 1))
            dof += len(part) - 1
    return {"sd": math.sqrt(sum(variances) / dof) if dof else float("nan"), "dof": dof, "groups": len(variances)}


def noise_scale(runs: pd.DataFrame) -> float:
    """σ of the module docstring: the larger of the pooled seed sd and the median paired SE."""
    sd = seed_noise(runs)["sd"]
    se = float(runs.gain_se.median())
    return max(se, sd) if not math.isnan(sd) else se


def resolvable(noise: float) -> float:
    """The smallest difference between two single runs this noise lets one see (2·√2·σ)."""
    return 2 * math.sqrt(2) * noise


# ----------------------------------------------------------------------------------------------
# The claims

def _base(frame: pd.DataFrame) -> pd.DataFrame:
    runs = frame[frame.kind == "run"]
    return runs[runs.base_start & runs.base_rm & runs.all_params]


def best_settings(frame: pd.DataFrame, methods=ONLINE) -> pd.DataFrame:
    """Per method (base start, reward model, all parameters), the runs of the setting with the highest
    mean held-out gold gain over its seeds: "optimal hyperparameters" as an evaluation picks them. The
    pick flatters a method by about the noise's expected maximum over its settings (+0.56σ for two),
    so methods with more settings are flattered more; the claim's functions report how many each had."""
    runs = _base(frame)
    runs = runs[runs.method.isin(methods)]
    chosen = [part[part.strength == part.groupby("strength").gold_gain.mean().idxmax()]
              for _, part in runs.groupby("method", sort=False)]
    return pd.concat(chosen) if chosen else runs.iloc[:0]


def methods_claim(frame: pd.DataFrame) -> dict:
    """Claim 1: the online methods at their best settings, on held-out gold gain. Only a method tuned
    over two or more settings can contradict the claim (it is about *optimal* settings); a method run
    at one setting is reported beside them ("untuned")."""
    base = _base(frame)
    best = best_settings(frame)
    noise = noise_scale(base)
    per = {m: {"strength": float(p.strength.iloc[0]), "gold_gain": float(p.gold_gain.mean()),
               "gain_se": float(p.gain_se.mean()), "kl": float(p.kl.mean()), "seeds": int(len(p)),
               "settings": int(base[base.method == m].strength.nunique()),
               "train_seconds": float(p.train_seconds.mean())}
           for m, p in best.groupby("method", sort=False)}
    tuned = {m: v for m, v in per.items() if v["settings"] > 1}
    gains = [v["gold_gain"] for v in tuned.values()]
    spread = max(gains) - min(gains) if gains else float("nan")
    all_gain = all(v["gold_gain"] > 2 * max(v["gain_se"], noise / math.sqrt(v["seeds"])) for v in tuned.values())
    if len(tuned) < 2:
        verdict = UNRESOLVED
    elif spread < resolvable(noise) and all_gain:
        verdict = SUPPORTS
    elif spread >= resolvable(noise):
        verdict = CONTRADICTS
    else:
        verdict = UNRESOLVED
    return {"per_method": per, "tuned": sorted(tuned), "untuned": sorted(set(per) - set(tuned)), "spread": spread,
            "noise": noise, "resolvable": resolvable(noise), "seed_noise": seed_noise(base),
            "every_tuned_method_gains": all_gain, "verdict": verdict, "missing": [m for m in ONLINE if m not in per]}


def dpo_claim(frame: pd.DataFrame) -> dict:
    """Claim 2: DPO's gain from the plain start and from the best-answers start (a C-RLFT stand-in),
    beside APA from each."""
    runs = frame[(frame.kind == "run") & frame.base_rm & frame.all_params]
    starts = frame[(frame.kind == "start") & frame.base_rm]
    noise = noise_scale(_base(frame))
    # APA at the setting it was run with from the other start, so the two starts are compared like for like
    apa_strengths = (set(runs[(runs.method == "APA") & ~runs.base_start].strength)
                     or set(best_settings(frame, ("APA",)).strength))
    labels = sorted(set(runs.start_label) - {"SFT"})
    # the later stage of the sweep's start when there is one (the C-RLFT stand-in), else another start
    later = next((label for label in labels if "+" in label), labels[0] if labels else None)
    cells = {}
    for label, part in sorted(runs.groupby("start_label"), key=lambda kv: kv[0] != "SFT"):
        for method in ("DPO", "APA"):
            hit = part[part.method == method]
            if method == "APA":
                hit = hit[hit.strength.isin(apa_strengths)]
            if len(hit):
                cells[f"{method} from {label}"] = {
                    "gold_gain": float(hit.gold_gain.mean()), "gain_se": float(hit.gain_se.mean()),
                    "gold": float(hit.gold.mean()), "kl": float(hit.kl.mean())}
    start_gold = {label: float(p.gold.iloc[0]) for label, p in starts.groupby("start_label")}
    dpo_best = cells.get(f"DPO from {later}") if later else None
    dpo_plain = cells.get("DPO from SFT")
    threshold = lambda cell: 2 * max(cell["gain_se"], noise)  # noqa: E731
    if dpo_best is None:
        verdict = UNRESOLVED
    elif abs(dpo_best["gold_gain"]) < threshold(dpo_best):
        verdict = SUPPORTS
    elif dpo_best["gold_gain"] > 0:
        verdict = CONTRADICTS
    else:
        verdict = SUPPORTS  # "no improvement": it got worse
    return {"starts": start_gold, "cells": cells, "noise": noise, "verdict": verdict, "later_start": later,
            "dpo_plain_significant": bool(dpo_plain and abs(dpo_plain["gold_gain"]) > threshold(dpo_plain)),
            "dpo_best_significant": bool(dpo_best and abs(dpo_best["gold_gain"]) > threshold(dpo_best))}


def anova_shares(table: pd.DataFrame) -> dict:
    """Two-way sums of squares of a complete ``rows × columns`` table without replication:
    ``{"rows", "columns", "interaction"}`` as shares of the total (the interaction is the residual)."""
    values = table.to_numpy(dtype=float)
    grand = values.mean()
    ss_rows = values.shape[1] * ((values.mean(axis=1) - grand) ** 2).sum()
    ss_cols = values.shape[0] * ((values.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((values - grand) ** 2).sum()
    if ss_total == 0:
        return {"rows": float("nan"), "columns": float("nan"), "interaction": float("nan")}
    return {"rows": ss_rows / ss_total, "columns": ss_cols / ss_total,
            "interaction": (ss_total - ss_rows - ss_cols) / ss_total}


def reward_model_claim(frame: pd.DataFrame) -> dict:
    """Claim 3: reward models of different gold accuracy × online methods, gold gain per cell and the
    share of its variance each factor explains."""
    runs = frame[(frame.kind == "run") & frame.base_start & frame.all_params & frame.method.isin(ONLINE)].copy()
    runs["rm_label"] = [f"{p} prompts, {lt}" for p, lt in zip(runs.rm_prompts, runs["reward.loss_type"])]
    # each method at one setting: the one the weaker reward models were run with
    keep = []
    for method, part in runs.groupby("method"):
        shared = part.groupby("strength").rm_label.nunique()
        if shared.max() > 1:
            keep.append(part[part.strength == shared.idxmax()])
    runs = pd.concat(keep) if keep else runs.iloc[:0]
    table = runs.pivot_table(index="rm_label", columns="method", values="gold_gain", aggfunc="mean")
    table = table.dropna(axis=1)
    se_table = runs.pivot_table(index="rm_label", columns="method", values="gain_se", aggfunc="mean")[table.columns]
    accuracy = runs.groupby("rm_label").rm_gold_accuracy.first()
    noise = noise_scale(_base(frame))
    if table.shape[0] < 2 or table.shape[1] < 2:
        return {"table": table, "se_table": se_table, "accuracy": accuracy.to_dict(), "verdict": UNRESOLVED,
                "noise": noise, "shares": {}}
    shares = anova_shares(table)
    rm_effect = float(table.mean(axis=1).max() - table.mean(axis=1).min())
    method_effect = float(table.mean(axis=0).max() - table.mean(axis=0).min())
    # an effect is a difference of means over the other factor's levels (noise shrinks with √n); in a 2 x 2
    # table the difference of the two effects is one run minus another, so it needs 2·√2·σ
    rm_clear = rm_effect > resolvable(noise) / math.sqrt(table.shape[1])
    method_clear = method_effect > resolvable(noise) / math.sqrt(table.shape[0])
    margin = rm_effect - method_effect
    if rm_clear and margin > resolvable(noise):
        verdict = SUPPORTS
    elif method_clear and -margin > resolvable(noise):
        verdict = CONTRADICTS
    else:
        verdict = UNRESOLVED
    return {"table": table, "se_table": se_table, "accuracy": accuracy.to_dict(), "shares": shares,
            "rm_effect": rm_effect, "method_effect": method_effect, "rm_clear": bool(rm_clear),
            "method_clear": bool(method_clear), "margin": margin, "noise": noise, "verdict": verdict}


def trained_parameters_claim(frame: pd.DataFrame) -> dict:
    """Claim 4: APA at its default setting with all parameters, the last blocks only, or LoRA: gold
    gain, training seconds and gain per second."""
    runs = frame[(frame.kind == "run") & frame.base_start & frame.base_rm & (frame.method == "APA")]
    default = runs[~runs.all_params].strength
    runs = runs[runs.strength == default.iloc[0]] if len(default) else runs.iloc[:0]
    noise = noise_scale(_base(frame))
    per = {t: {"gold_gain": float(p.gold_gain.mean()), "gain_se": float(p.gain_se.mean()),
               "train_seconds": float(p.train_seconds.mean()), "trainable": int(p.trainable_parameters.mean()),
               "gain_per_minute": float(60 * p.gold_gain.mean() / p.train_seconds.mean()), "kl": float(p.kl.mean())}
           for t, p in runs.groupby("trained")}
    full = per.get("all parameters")
    partial = {t: v for t, v in per.items() if t != "all parameters"}
    faster = {t: v["train_seconds"] < 0.9 * full["train_seconds"] for t, v in partial.items()} if full else {}
    return {"per": per, "noise": noise, "faster_than_full": faster,
            "verdict": UNRESOLVED if not full or not partial else (SUPPORTS if any(faster.values()) else CONTRADICTS)}


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n``."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def safety_claim(frame: pd.DataFrame) -> dict:
    """Claim 5: benign-refusal and harmful-compliance rates of the start and of each method's best run."""
    starts = frame[(frame.kind == "start") & frame.base_start & frame.base_rm]
    best = best_settings(frame)
    dpo = frame[(frame.kind == "run") & (frame.method == "DPO") & frame.base_start & frame.base_rm]
    first = lambda part: part.sort_values("seed", kind="stable").iloc[:1]  # noqa: E731 - the lowest seed's run
    rows = [("SFT start", first(starts))] if len(starts) else []
    rows += [(m, first(p)) for m, p in best.groupby("method", sort=False)]
    rows += [("DPO", first(dpo))] if len(dpo) else []
    tuned = frame[(frame.kind == "run") & frame.base_start & frame.base_rm & frame.all_params]
    rows += [(f"all {len(tuned)} tuned runs, pooled", tuned)] if len(tuned) > 1 else []
    table = {}
    for name, part in rows:
        entry = {}
        for rate, n_col in (("benign_refusal", "n_benign"), ("harmful_compliance", "n_harmful"),
                            ("harmful_refusal", "n_harmful")):
            n = int(part[n_col].sum())
            k = float((part[rate] * part[n_col]).sum())
            lo, hi = wilson(k, n)
            entry[rate] = {"rate": k / n if n else float("nan"), "low": lo, "high": hi, "n": n}
        table[name] = entry
    start = table.get("SFT start")
    more_cautious = [m for m, e in table.items() if start and m != "SFT start"
                     and e["benign_refusal"]["low"] > start["benign_refusal"]["high"]]
    less_cautious = [m for m, e in table.items() if start and m != "SFT start"
                     and e["benign_refusal"]["high"] < start["benign_refusal"]["low"]]
    verdict = SUPPORTS if more_cautious else CONTRADICTS if less_cautious else UNRESOLVED
    return {"table": table, "more_cautious": more_cautious, "less_cautious": less_cautious, "verdict": verdict}


def overoptimisation_claim(frame: pd.DataFrame) -> dict:
    """Claim 6: APA's λ sweep and PPO's β sweep, held-out gold and proxy against KL, the start at the
    origin (strength NaN). Per method: the point with the highest gold, whether a run further out in
    KL has clearly lower gold (by more than 2·√2·σ) while its proxy is higher (gold turned down where
    the proxy kept rising), at what KL, and whether the proxy rises with KL (its rank correlation)."""
    runs = _base(frame)
    noise = noise_scale(runs)
    columns = ["kl", "gold_gain", "proxy_gain", "gold", "proxy"]
    out = {}
    for method in ("APA", "PPO"):
        part = runs[runs.method == method].groupby("strength")[columns].mean()
        if len(part) < 2:
            continue
        origin = pd.DataFrame([{"kl": 0.0, "gold_gain": 0.0, "proxy_gain": 0.0,
                                "gold": part.gold.mean() - part.gold_gain.mean(),
                                "proxy": part.proxy.mean() - part.proxy_gain.mean()}],
                              index=pd.Index([np.nan], name="strength"))
        part = pd.concat([origin, part]).sort_values("kl")
        peak = int(np.argmax(part.gold_gain.to_numpy()))
        beyond = part.iloc[peak + 1:]
        turned = beyond[(beyond.gold_gain < part.gold_gain.iloc[peak] - resolvable(noise))
                        & (beyond.proxy_gain > part.proxy_gain.iloc[peak])]
        rho = float(pd.Series(part.kl.to_numpy()).corr(pd.Series(part.proxy_gain.to_numpy()), method="spearman"))
        out[method] = {"points": part.reset_index().to_dict(orient="records"), "peak_strength": float(part.index[peak]),
                       "peak_kl": float(part.kl.iloc[peak]), "peak_gold_gain": float(part.gold_gain.iloc[peak]),
                       "turned_down": bool(len(turned)), "turn_kl": float(turned.kl.min()) if len(turned) else None,
                       "proxy_rank_corr_with_kl": rho, "max_kl": float(part.kl.max()),
                       "farthest_gold_gain": float(part.gold_gain.iloc[-1]),
                       "farthest_proxy_gain": float(part.proxy_gain.iloc[-1])}
    turned_any = any(v["turned_down"] for v in out.values())
    verdict = SUPPORTS if turned_any else UNRESOLVED
    return {"per_method": out, "noise": noise, "verdict": verdict}


def summary_table(c1: dict, c2: dict, c3: dict, c4: dict, c5: dict, c6: dict) -> pd.DataFrame:
    """One row per claim: its verdict and the numbers it rests on (the notebook's closing table)."""
    def gain(cell):
        return f"{cell['gold_gain']:+.2f} ± {cell['gain_se']:.2f}" if cell else "not run"

    tuned = ", ".join(f"{m} {c1['per_method'][m]['gold_gain']:+.2f}" for m in c1["tuned"]) or "none"
    later = c2.get("later_start")
    safety = c5["table"]
    pooled = next((k for k in safety if k.endswith("pooled")), None)
    rows = [
        (1, c1["verdict"], f"tuned best gains {tuned}; spread {c1['spread']:.2f} vs 2·√2·σ "
                           f"{c1['resolvable']:.2f}"),
        (2, c2["verdict"], f"DPO gain from SFT {gain(c2['cells'].get('DPO from SFT'))}, from {later} "
                           f"{gain(c2['cells'].get(f'DPO from {later}'))} (σ {c2['noise']:.2f})"),
        (3, c3["verdict"], f"reward-model effect {c3.get('rm_effect', float('nan')):.2f}, method effect "
                           f"{c3.get('method_effect', float('nan')):.2f} (2·√2·σ {resolvable(c3['noise']):.2f}); "
                           f"variance shares {c3.get('shares', {}).get('rows', float('nan')):.0%} / "
                           f"{c3.get('shares', {}).get('columns', float('nan')):.0%}"),
        (4, c4["verdict"], "; ".join(f"{k} {v['gold_gain']:+.2f} in {v['train_seconds']:.0f} s"
                                     for k, v in c4["per"].items())),
        (5, c5["verdict"], (f"benign refusal: start {safety['SFT start']['benign_refusal']['rate']:.1%}, "
                            f"tuned runs pooled {safety[pooled]['benign_refusal']['rate']:.1%}")
            if pooled and "SFT start" in safety else "not run"),
        (6, c6["verdict"], "; ".join(f"{m}: peak gain {v['peak_gold_gain']:+.2f} at KL {v['peak_kl']:.1f}, farthest "
                                     f"{v['farthest_gold_gain']:+.2f} at KL {v['max_kl']:.1f}"
                                     for m, v in c6["per_method"].items())),
    ]
    return pd.DataFrame(rows, columns=["claim", "verdict", "numbers"]).set_index("claim")


def run_reduced_sweep(preset_name: str, overrides: list[str], seed: int, out_dir, study03_dir, log=print) -> list[dict]:
    """Notebook 06's own sweep (:func:`reduced_points`) into ``out_dir``, from notebook 03's SFT start and
    reward model (``study03_dir/sft``, ``/rm``) where they are saved; the lines of its runs and their starts."""
    from pathlib import Path

    from starling_lib.config import get_preset
    from starling_lib.policy.sweep import run_sweep
    from starling_lib.policy.sweep_results import lines_of_runs, read_results

    preset = get_preset(preset_name, list(overrides))
    fixed, points, repeats = reduced_points(preset)
    sizes = get_preset(preset_name, list(overrides) + fixed)
    given = {name: Path(study03_dir) / name if (Path(study03_dir) / name / "final").is_dir() else None
             for name in ("sft", "rm")}
    log(f"reduced sweep: {len(points)} settings and {len(repeats)} repeated at a second seed; "
        f"{sizes.policy.iterations} iterations x {sizes.policy.prompts_per_iteration} responses in minibatches of "
        f"{sizes.policy.minibatch_size}; "
        f"{sizes.policy_study.eval_prompts} held-out prompts; notebook 03's start and reward model: "
        + ", ".join(f"{k} {'reused' if v else 'not found, trained here'}" for k, v in given.items()))
    settings = list(overrides) + [f"runtime.seed={seed}"] + fixed
    planned = []
    for seeds, runs in (([seed], points), ([seed + 1], repeats)):
        report = run_sweep(preset_name, [], seeds, out_dir, overrides=settings, sft_dir=given["sft"],
                           rm_dir=given["rm"], points=runs, progress=False, log=lambda line: None)
        planned += report.planned
    return lines_of_runs(read_results(out_dir), planned)
