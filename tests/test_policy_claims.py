"""Notebook 06's analysis (``starling_lib.policy.claims``) on small hand-made sweep frames: the
statistics by hand, the labels, the choice of a method's best setting, and each claim's verdict."""

import math

import numpy as np
import pandas as pd
import pytest

from starling_lib.config import get_preset
from starling_lib.policy import claims

PRESET = get_preset("tiny")


def test_statistics_by_hand():
    gain, se = claims.paired_gain([2.0, 3.0, 5.0], [1.0, 1.0, 2.0])  # differences 1, 2, 3
    assert gain == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))
    # grand mean 2.5; row means 0.5 / 2.5 / 4.5: SS 2·(4 + 0 + 4) = 16; column means 2 / 3: SS 3·(0.25 + 0.25)
    # = 1.5; total Σ(x − 2.5)² = 17.5, so no interaction
    shares = claims.anova_shares(pd.DataFrame([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]))
    assert shares["rows"] == pytest.approx(16 / 17.5) and shares["columns"] == pytest.approx(1.5 / 17.5)
    assert shares["interaction"] == pytest.approx(0.0, abs=1e-12)
    # Wilson 95% for 0/10 and 5/10 (Wilson 1927; the textbook values)
    assert claims.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert claims.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert claims.resolvable(0.1) == pytest.approx(0.2 * math.sqrt(2))


def _line(kind, gold_pp, seed=0, settings=None, algo="apa", lam=0.3, kl_coef=0.0, kl_target=None, answers="all",
          rm_prompts=300, loss="kwise", lora_r=0, last_n=None, later=False, kl=5.0, proxy=1.0, history=None,
          seconds=10.0,
          start="sft-a", rm="rm-a", trainable=1000, refusal=0.1):
    gold = float(np.mean(gold_pp))
    return {"id": f"{kind}-{algo}-{lam}-{kl_coef}-{seed}-{answers}-{rm_prompts}-{lora_r}-{last_n}", "kind": kind,
            "seed": seed if kind == "run" else None, "start": start, "rm": rm, "rm_gold_accuracy": 0.8,
            "settings": settings or {}, "gold": gold, "proxy": proxy, "kl": kl if kind == "run" else 0.0,
            "n_prompts": len(gold_pp), "benign_refusal": refusal, "harmful_compliance": 0.0, "harmful_refusal": 0.5,
            "n_benign": 80, "n_harmful": 12, "eval_seconds": 1.0, "train_seconds": seconds if kind == "run" else 0.0,
            "trainable_parameters": trainable, "gold_per_prompt": list(gold_pp), "history": history or {},
            "policy.algo": algo, "policy.apa_lambda": lam, "policy.kl_coef": kl_coef, "policy.kl_target": kl_target,
            "policy.lora_r": lora_r, "policy.unfreeze_last_n": last_n, "sft.answers": answers,
            "sft.continue_start": later,
            "rm_prompts": rm_prompts, "reward.loss_type": loss}


def test_labels_and_paired_gains():
    start = _line("start", [1.0, 1.0, 2.0, 2.0])
    rows = [start,
            _line("run", [2.0, 2.0, 3.0, 3.0], algo="ppo", kl_coef=0.05, settings={"policy.algo": "ppo"}),
            _line("run", [1.5, 1.5, 2.5, 2.5], algo="ppo", kl_coef=0.05, kl_target=6.0),
            _line("run", [1.0, 1.0, 2.0, 2.0], lora_r=8),
            _line("run", [1.0, 1.0, 2.0, 2.0], last_n=1)]
    frame = claims.label_runs(pd.DataFrame(rows), PRESET)
    assert list(frame.method) == ["start", "PPO", "PPO adaptive KL", "APA", "APA"]
    assert list(frame.strength[1:]) == [0.05, 6.0, 0.3, 0.3]
    assert list(frame.trained) == ["all parameters"] * 3 + ["LoRA r=8", "last 1 block"]
    assert list(frame.gold_gain[1:]) == [1.0, 0.5, 0.0, 0.0] and frame.gain_se.iloc[1] == 0.0
    assert frame.base_start.all() and frame.base_rm.all() and list(frame.all_params) == [True] * 3 + [False] * 2


def _methods_frame(ppo_gain=0.3, noise=0.02):
    """APA at λ 0.1 / 0.3 (0.3 twice), PPO at β 0.01 / 0.05 (0.05 twice), P3O once; 50 held-out prompts."""
    rng = np.random.default_rng(0)
    base = rng.normal(1.0, 1.0, 50)
    rows = [_line("start", base)]

    def run(gain, seed=0, **kw):
        return _line("run", base + gain + rng.normal(0, noise, 50), seed=seed,
                     history={"gold_reward": [1.0] * 10, "kl": [1.0] * 10}, **kw)
    rows += [run(0.20, lam=0.1, kl=12.0, proxy=3.0, settings={"policy.apa_lambda": 0.1}),
             run(0.25, lam=0.3, kl=6.0, proxy=2.0),
             run(0.35, seed=1, lam=0.3, kl=6.0, proxy=2.0),
             run(ppo_gain, algo="ppo", kl_coef=0.05, kl=9.0, proxy=2.5,
                 settings={"policy.algo": "ppo"}),
             run(ppo_gain + 0.1, seed=1, algo="ppo", kl_coef=0.05, kl=9.0, proxy=2.5,
                 settings={"policy.algo": "ppo"}),
             run(-0.4, algo="ppo", kl_coef=0.01, kl=40.0, proxy=4.0,
                 settings={"policy.algo": "ppo", "policy.kl_coef": 0.01}),
             run(0.22, algo="p3o", kl_coef=0.05, kl=8.0, settings={"policy.algo": "p3o"})]
    return claims.label_runs(pd.DataFrame(rows), PRESET)


def test_the_best_setting_is_chosen_on_held_out_gold_and_the_methods_verdict():
    frame = _methods_frame()
    best = claims.best_settings(frame)
    # APA: λ=0.3 (0.25 and 0.35 over two seeds) beats λ=0.1 (0.20); PPO: β=0.05 (0.30, 0.40) beats β=0.01
    assert sorted(zip(best.method, best.strength)) == [("APA", 0.3), ("APA", 0.3), ("P3O", 0.05), ("PPO", 0.05),
                                                       ("PPO", 0.05)]
    noise = claims.seed_noise(frame[frame.kind == "run"])
    assert noise["groups"] == 2 and noise["dof"] == 2
    c1 = claims.methods_claim(frame)
    assert c1["per_method"]["PPO"]["seeds"] == 2 and c1["missing"] == ["PPO adaptive KL"]
    assert (c1["tuned"], c1["untuned"]) == (["APA", "PPO"], ["P3O"])  # P3O ran at one setting
    # seed sd ≈ 0.07 (pairs 0.25 / 0.35 and 0.30 / 0.40): 2·√2·σ ≈ 0.2 > the tuned spread 0.35 − 0.30
    assert c1["seed_noise"]["sd"] == pytest.approx(0.07, abs=0.01)
    assert c1["spread"] == pytest.approx(0.05, abs=0.01) and c1["spread"] < c1["resolvable"]
    assert c1["verdict"] == claims.SUPPORTS
    # a tuned method far ahead of the other, by more than the resolvable difference: contradicted
    assert claims.methods_claim(_methods_frame(ppo_gain=1.5))["verdict"] == claims.CONTRADICTS
    # an untuned method far behind does not decide it
    lagging = _methods_frame()
    lagging.loc[lagging.method == "P3O", "gold_gain"] = -1.0
    assert claims.methods_claim(lagging)["verdict"] == claims.SUPPORTS


def test_overoptimisation_is_a_clear_fall_in_gold_where_the_proxy_rose():
    c6 = claims.overoptimisation_claim(_methods_frame())
    ppo = c6["per_method"]["PPO"]
    assert ppo["peak_strength"] == 0.05 and ppo["turned_down"] and ppo["turn_kl"] == 40.0
    assert not c6["per_method"]["APA"]["turned_down"]  # λ=0.1 is further out with a little less gold: noise
    assert c6["verdict"] == claims.SUPPORTS


def _claim_rows(seed1_refusal=0.6):
    base = np.linspace(0.0, 2.0, 40)
    jitter = np.tile([0.05, -0.05], 20)
    rows = [_line("start", base), _line("start", base + 0.5, answers="best", later=True, start="sft-b"),
            _line("start", base, rm="rm-w", rm_prompts=30, refusal=0.1),
            _line("run", base + 0.3 + jitter, algo="dpo", lam=0.3, settings={"policy.algo": "dpo"}),
            _line("run", base + 0.5 + jitter / 5, algo="dpo", answers="best", later=True, start="sft-b",
                  settings={"policy.algo": "dpo", "sft.answers": "best"}),
            _line("run", base + 0.8 + jitter, answers="best", later=True, start="sft-b",
                  settings={"sft.answers": "best"}),
            _line("run", base + 0.3 + jitter, seconds=20.0, trainable=1000, refusal=0.6,
                  history={"gold_reward": [1.0]}),
            _line("run", base + 0.32 + jitter, seed=1, seconds=20.0, refusal=seed1_refusal,
                  history={"gold_reward": [1.0]}),
            _line("run", base + 0.28 + jitter, algo="ppo", kl_coef=0.05, history={"gold_reward": [1.0]},
                  settings={"policy.algo": "ppo"}),
            _line("run", base - 0.2 + jitter, rm="rm-w", rm_prompts=30, settings={"policy_study.rm_prompts": 30}),
            _line("run", base - 0.25 + jitter, algo="ppo", kl_coef=0.05, rm="rm-w", rm_prompts=30,
                  settings={"policy.algo": "ppo", "policy_study.rm_prompts": 30}),
            _line("run", base + 0.25 + jitter, lora_r=8, seconds=8.0, trainable=100, settings={"policy.lora_r": 8})]
    return rows


def test_dpo_reward_model_trained_parameters_and_safety_claims():
    frame = claims.label_runs(pd.DataFrame(_claim_rows()), PRESET)

    c2 = claims.dpo_claim(frame)
    assert c2["starts"] == pytest.approx({"SFT": 1.0, "SFT + best answers": 1.5})
    assert c2["later_start"] == "SFT + best answers"
    assert c2["cells"]["DPO from SFT + best answers"]["gold_gain"] == pytest.approx(0.0, abs=1e-12)
    assert c2["cells"]["APA from SFT + best answers"]["gold_gain"] == pytest.approx(0.3)
    assert c2["dpo_plain_significant"] and not c2["dpo_best_significant"] and c2["verdict"] == claims.SUPPORTS

    c3 = claims.reward_model_claim(frame)
    # cells: strong RM APA (0.30 + 0.32) / 2, PPO 0.28; weak RM APA -0.20, PPO -0.25
    assert c3["table"].shape == (2, 2) and c3["rm_effect"] == pytest.approx(0.295 + 0.225)
    assert c3["method_effect"] == pytest.approx(0.055 - 0.015) and c3["verdict"] == claims.SUPPORTS
    assert c3["shares"]["rows"] > 0.99

    c4 = claims.trained_parameters_claim(frame)
    assert set(c4["per"]) == {"all parameters", "LoRA r=8"} and c4["per"]["LoRA r=8"]["trainable"] == 100
    assert c4["faster_than_full"] == {"LoRA r=8": True} and c4["verdict"] == claims.SUPPORTS
    assert c4["per"]["all parameters"]["gain_per_minute"] == pytest.approx(60 * 0.31 / 20)

    c5 = claims.safety_claim(frame)
    pooled = "all 4 tuned runs, pooled"  # DPO, APA at two seeds, PPO: the plain start, the strong reward model
    assert list(c5["table"]) == ["SFT start", "APA", "PPO", "DPO", pooled]
    assert c5["table"]["APA"]["benign_refusal"]["rate"] == 0.6 and c5["table"]["APA"]["benign_refusal"]["n"] == 80
    assert c5["table"][pooled]["benign_refusal"]["rate"] == pytest.approx((2 * 48 + 2 * 8) / 320)
    assert c5["table"][pooled]["benign_refusal"]["n"] == 320
    assert c5["more_cautious"] == ["APA", pooled] and c5["verdict"] == claims.SUPPORTS


def test_the_claims_do_not_depend_on_the_order_of_the_lines():
    """A sweep's file holds lines in the order runs ended, which changes with how many ran side by side:
    every claim must read the same from any order (claim 5 shows a method's lowest seed)."""
    rows = _claim_rows(seed1_refusal=0.9)
    forward = claims.label_runs(pd.DataFrame(rows), PRESET)
    backward = claims.label_runs(pd.DataFrame(rows[::-1]), PRESET)
    for claim in (claims.methods_claim, claims.dpo_claim, claims.trained_parameters_claim, claims.safety_claim,
                  claims.overoptimisation_claim):
        a, b = claim(forward), claim(backward)
        assert set(a) == set(b)
        for key in a:
            assert (a[key] == b[key] or a[key] != a[key]), (claim.__name__, key)  # NaN is only unequal to itself
    assert claims.safety_claim(backward)["table"]["APA"]["benign_refusal"]["rate"] == 0.6  # seed 0's, not seed 1's
    c3a, c3b = claims.reward_model_claim(forward), claims.reward_model_claim(backward)
    pd.testing.assert_frame_equal(c3a["table"].sort_index().sort_index(axis=1), c3b["table"].sort_index().sort_index(axis=1))
