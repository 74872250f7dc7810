"""Notebook 03's helpers: held-out evaluation of a policy, the algorithm comparison, the sample table."""

import copy

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from starling_lib.config import get_preset
from starling_lib.data.gold import gold_reward
from starling_lib.data.tinyworld import generate_world
from starling_lib.models import build_tiny_assets, quiet_transformers
from starling_lib.policy.rollout import RewardScorer
from starling_lib.policy.study import compare_algorithms, evaluate_policy, sample_table


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    preset = get_preset("smoke", ["policy.max_new_tokens=12"])
    paths = build_tiny_assets(preset, tmp_path_factory.mktemp("assets"))
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(paths["tokenizer"])
        policy = AutoModelForCausalLM.from_pretrained(paths["policy"])
        reward = AutoModelForSequenceClassification.from_pretrained(paths["reward"])
    prompts = list(dict.fromkeys(row["prompt"] for row in generate_world(preset.world)))[:10]
    return preset, tokenizer, policy, reward, prompts


def test_evaluate_policy_rows_match_a_direct_scoring(assets):
    preset, tokenizer, policy, reward, prompts = assets
    # fp32 scoring: this checks the wiring (same scorer, same rows), so it must not hinge on bf16 rounding,
    # which differs with batch composition (a bf16 CPU gave 1e-3 between the two batchings).
    scorer = RewardScorer(reward, tokenizer, preset.policy.rm_max_length)
    state = torch.random.get_rng_state()
    rows = evaluate_policy(policy, tokenizer, copy.deepcopy(policy), scorer, prompts, preset, seed=3, batch_size=4)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left alone
    assert list(rows.prompt) == prompts
    assert rows.kl.abs().max() < 1e-4  # the reference is the policy itself: log π/π_ref = 0 on every token
    assert (rows.length >= 1).all() and (rows.length <= preset.policy.max_new_tokens).all()
    assert list(rows.gold) == [gold_reward(p, r) for p, r in zip(rows.prompt, rows.response)]
    assert rows.proxy.to_numpy() == pytest.approx(scorer(list(rows.prompt), list(rows.response)), abs=1e-5)
    again = evaluate_policy(policy, tokenizer, copy.deepcopy(policy), scorer, prompts, preset, seed=3, batch_size=4)
    pd.testing.assert_frame_equal(rows, again)  # the seed fixes the samples
    other = evaluate_policy(policy, tokenizer, copy.deepcopy(policy), scorer, prompts, preset, seed=4, batch_size=4)
    assert list(other.response) != list(rows.response)


def test_compare_algorithms_pairs_every_run_with_the_start(assets, tmp_path):
    preset, tokenizer, policy, reward, prompts = assets
    preset = copy.deepcopy(preset)
    preset.policy.iterations, preset.policy.prompts_per_iteration, preset.policy.minibatch_size = 2, 4, 4
    preset.policy_study.seeds = 2
    before = {name: p.clone() for name, p in policy.named_parameters()}
    out = compare_algorithms(preset, policy, tokenizer, reward, tokenizer, prompts, prompts[:6], tmp_path,
                             algo_overrides={"ppo": {"kl_coef": 0.05}})
    assert all(torch.equal(p, before[name]) for name, p in policy.named_parameters())  # the start is copied
    logs, evals, summary = out["logs"], out["evals"], out["summary"]
    assert sorted(set(zip(logs.algo, logs.seed, logs.iteration))) == [
        (algo, seed, it) for algo in ("apa", "ppo") for seed in (0, 1) for it in (0, 1)]
    assert list(zip(summary.algo, summary.seed)) == [("sft", 0), ("sft", 1), ("apa", 0), ("apa", 1), ("ppo", 0), ("ppo", 1)]
    assert (evals.groupby(["algo", "seed"]).size() == 6).all()
    start = summary[summary.algo == "sft"]
    assert start.kl.abs().max() < 1e-4 and (summary[summary.algo != "sft"].kl.abs() > 0).all()
    # the evaluation seed of the start matches its runs': seed s of every algorithm sees the same prompts
    assert (tmp_path / "summary.json").is_file()
    with pytest.raises(ValueError, match=r"algo_overrides\['ppo'\]: PolicyConfig has no field 'beta'"):
        compare_algorithms(preset, policy, tokenizer, reward, tokenizer, prompts, prompts[:2], tmp_path,
                           algo_overrides={"ppo": {"beta": 0.1}})

    table = sample_table(evals, ["sft", "apa", "ppo"], n_rows=2)
    assert list(table.columns) == ["prompt", "sft", "apa", "ppo"] and len(table) == 2
    first = evals[(evals.algo == "apa") & (evals.seed == 0)].iloc[0]
    assert table.apa[0].startswith(f"[{first.gold:+.2f}] ")


def test_compare_algorithms_side_by_side_equals_one_after_another(assets, tmp_path):
    """Two workers (this process and a spawned one, one thread each) give the runs one process gives:
    every run carries its own seeds, so where it ran does not matter."""
    preset, tokenizer, policy, reward, prompts = assets
    preset = copy.deepcopy(preset)
    preset.policy.iterations, preset.policy.prompts_per_iteration, preset.policy.minibatch_size = 2, 4, 4
    preset.policy_study.seeds, preset.policy_study.algos = 1, ["apa"]
    out = {}
    for workers in (1, 2):
        preset.runtime.parallel_runs = workers
        out[workers] = compare_algorithms(preset, policy, tokenizer, reward, tokenizer, prompts, prompts[:6],
                                          tmp_path / str(workers))
    pd.testing.assert_frame_equal(out[1]["summary"], out[2]["summary"], rtol=1e-5, atol=1e-5)
    assert list(out[2]["evals"].response) == list(out[1]["evals"].response)
    columns = ["proxy_reward", "kl", "policy_loss", "grad_norm"]
    pd.testing.assert_frame_equal(out[1]["logs"][columns], out[2]["logs"][columns], rtol=1e-4, atol=1e-5)
    assert out[2]["summary"].kl.iloc[1] > 0  # the run trained (the start's KL is 0)

