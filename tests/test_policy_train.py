"""The policy-tuning loop end to end on the smoke preset: every algorithm runs and moves the
weights, the log has what it promises, bad settings fail clearly, a killed run resumes to the
uninterrupted result, and two processes stay in sync."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from starling_lib import cli
from starling_lib.config import get_preset
from starling_lib.paths import ROOT
from starling_lib.policy.pipeline import load_policy, policy_prompts
from starling_lib.policy.train import check_config, minibatch_order, train_policy
from starling_lib.reward.train import build_backbone

FAST = ["policy.iterations=2", "policy.prompts_per_iteration=4", "policy.minibatch_size=4", "policy.max_new_tokens=12"]
LOG_FIELDS = {"iteration", "proxy_reward", "gold_reward", "kl", "entropy", "value_loss", "policy_loss",
              "response_length", "generate_s", "score_s", "forward_s", "update_s", "iteration_s"}


def _run(tmp_path, overrides, name="run"):
    preset = get_preset("smoke", FAST + list(overrides))
    policy, tokenizer = load_policy(preset)
    start = {n: p.detach().clone() for n, p in policy.named_parameters()}
    reward, reward_tokenizer = build_backbone(preset)
    prompts, gold = policy_prompts(preset)
    run = train_policy(preset, prompts, policy, tokenizer, reward, reward_tokenizer, tmp_path / name, gold_fn=gold)
    return run, start


def _run_cli(tmp_path, overrides, name="run"):
    """The same run through ``starling apa train`` in this process, against a saved untrained reward model."""
    preset = get_preset("smoke", FAST + list(overrides))
    policy, _ = load_policy(preset)
    start = {n: p.detach().clone() for n, p in policy.named_parameters()}
    reward, reward_tokenizer = build_backbone(preset)
    reward.save_pretrained(tmp_path / "rm")
    reward_tokenizer.save_pretrained(tmp_path / "rm")
    sets = [a for o in FAST + list(overrides) if not o.startswith("policy.algo=") for a in ("--set", o)]
    algo = next(o.split("=", 1)[1] for o in overrides if o.startswith("policy.algo="))
    code = cli.main(["apa", "train", "--preset", "smoke", "--reward-model", str(tmp_path / "rm"), "--algo", algo,
                     "--out", str(tmp_path / name), "--json", *sets])
    assert code == 0
    out = tmp_path / name
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    final, _ = load_policy(get_preset("smoke"), out / "final")
    assert json.loads((out / "preset.json").read_text())["policy"]["algo"] == algo
    return SimpleNamespace(history=history, policy=final, output_dir=out), start


@pytest.mark.parametrize("overrides", [
    ["policy.algo=apa"],
    ["policy.algo=apa", "policy.apa_anchor=rollout", "policy.kl_coef=0.05", "policy.critic=shared"],
    ["policy.algo=ppo", "policy.kl_coef=0.05", "policy.kl_target=0.5", "policy.kl_horizon=10", "policy.grad_accum=2",
     "policy.epochs_per_rollout=2"],
    ["policy.algo=awr", "policy.unfreeze_last_n=1"],
    ["policy.algo=apa", "policy.lora_r=4", "runtime.dtype=fp32"],
    ["policy.algo=p3o", "policy.kl_coef=0.05", "policy.grad_accum=2"],
], ids=["apa-init", "apa-rollout-shared", "ppo-accum-adaptive-kl", "awr-frozen", "apa-lora", "p3o-cli"])
def test_every_algorithm_runs_logs_and_moves_weights(tmp_path, overrides):
    p3o = "policy.algo=p3o" in overrides
    run, start = (_run_cli if p3o else _run)(tmp_path, overrides)
    assert [r["iteration"] for r in run.history] == [0, 1]
    for record in run.history:
        assert LOG_FIELDS <= set(record), LOG_FIELDS - set(record)
        assert all(v == v for v in record.values() if isinstance(v, float))  # no NaN
        assert record["responses"] == (8 if p3o else 4)  # P3O: two responses for each of the 4 prompts
    assert run.history[0]["kl"] == pytest.approx(0.0, abs=1e-3)  # the first rollout is the start policy
    betas = [r["kl_coef"] for r in run.history]
    if "policy.kl_target=0.5" in overrides:
        # KL ≈ 0 against a target of 0.5: the error clips at −0.2, K_β = 4 responses / horizon 10.
        assert betas == [0.05, pytest.approx(0.05 * (1 - 0.2 * 4 / 10), abs=1e-12)]
    else:
        assert betas == [float(get_preset("smoke", overrides).policy.kl_coef)] * 2
    if p3o:  # no critic: no value loss, no trunk copy, the zero head untouched
        assert all(r["value_loss"] == 0.0 for r in run.history)
        critic = torch.load(run.output_dir / "final" / "critic.pt", weights_only=False)
        assert critic["critic"] == "shared" and "trunk" not in critic
        assert not critic["v_head"]["weight"].any() and not critic["v_head"]["bias"].any()
    # A bf16 run stores the frozen parameters in bf16: unchanged means equal to the start in that dtype.
    moved = {n for n, p in run.policy.named_parameters() if n in start and not torch.equal(p.detach(), start[n].to(p.dtype))}
    if "policy.lora_r=4" in overrides:  # the base weights stay; the merged final model differs
        assert not moved
        final, _ = load_policy(get_preset("smoke"), run.output_dir / "final")
        assert any(not torch.equal(p, start[n]) for n, p in final.named_parameters())
    elif "policy.unfreeze_last_n=1" in overrides:
        assert moved and all(n.startswith(("model.layers.1.", "model.norm", "lm_head")) for n in moved)
    else:
        assert "model.embed_tokens.weight" in moved and "lm_head.weight" in moved
    assert (run.output_dir / "final" / "critic.pt").is_file()
    assert (run.output_dir / "checkpoint-2" / "state.pt").is_file()


def test_bad_settings_name_the_field():
    preset = get_preset("smoke", ["policy.algo=reinforce"])
    with pytest.raises(ValueError, match="policy.algo"):
        check_config(preset.policy)
    with pytest.raises(ValueError, match="policy.minibatch_size .* multiple of policy.grad_accum"):
        check_config(get_preset("smoke", ["policy.minibatch_size=5", "policy.grad_accum=2"]).policy)
    with pytest.raises(ValueError, match="lora_r and policy.unfreeze_last_n"):
        check_config(get_preset("smoke", ["policy.lora_r=4", "policy.unfreeze_last_n=1"]).policy)
    with pytest.raises(ValueError, match=r"p3o keeps a prompt's two responses .* \(6 / 2\) must be even"):
        check_config(get_preset("smoke", ["policy.algo=p3o", "policy.minibatch_size=6", "policy.grad_accum=2"]).policy)
    with pytest.raises(ValueError, match="policy.p3o_clipping must be one of"):
        check_config(get_preset("smoke", ["policy.algo=p3o", "policy.p3o_clipping=both"]).policy)
    with pytest.raises(ValueError, match="policy.kl_target needs policy.kl_coef > 0"):
        check_config(get_preset("smoke", ["policy.kl_target=6"]).policy)
    with pytest.raises(ValueError, match="policy.kl_horizon must be >= 1"):
        check_config(get_preset("smoke", ["policy.kl_coef=0.1", "policy.kl_target=6", "policy.kl_horizon=0"]).policy)


def test_p3o_minibatches_hold_whole_pairs():
    generator = torch.Generator().manual_seed(0)
    order = minibatch_order(12, get_preset("smoke", ["policy.algo=p3o"]).policy, generator)
    assert sorted(order.tolist()) == list(range(12)) and order.tolist() != list(range(12))
    assert all(a % 2 == 0 and b == a + 1 for a, b in order.view(-1, 2).tolist())  # (2k, 2k+1) side by side
    # The other algorithms draw the same permutation as before P3O existed.
    plain = minibatch_order(12, get_preset("smoke").policy, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randperm(12, generator=torch.Generator().manual_seed(0)))


def test_p3o_update_moves_each_pair_towards_its_better_response():
    """One P3O update through the real model: the log-probability gap of each pair, log π(y1) − log π(y2),
    moves with the pair's reward difference Δ (first order: Σ Δ·change > 0, the surrogate's descent)."""
    from starling_lib.losses import sequence_logprobs
    from starling_lib.policy.rollout import RewardScorer, RunningMoments, forward_tokens
    from starling_lib.policy.train import _optimizer, build_actor_critic, collect_rollout, shaped_rewards, update

    preset = get_preset("smoke", ["policy.algo=p3o", "policy.kl_coef=0.05", "policy.minibatch_size=8",
                                  "policy.max_new_tokens=8", "runtime.dtype=fp32"])
    cfg, cpu = preset.policy, torch.device("cpu")
    policy, tokenizer = load_policy(preset)
    reward, reward_tokenizer = build_backbone(preset)
    prompts, _ = policy_prompts(preset)
    torch.manual_seed(0)
    model, reference = build_actor_critic(policy, cfg)
    scorer = RewardScorer(reward, reward_tokenizer, cfg.rm_max_length)
    rollout = collect_rollout(model, reference, tokenizer, scorer, [p for p in prompts[:4] for _ in range(2)], cfg, cpu,
                              None)
    rewards, _ = shaped_rewards(rollout, cfg, RunningMoments())
    r_hat = rewards.sum(1)                                                   # (8,) KL-penalised sequence rewards
    update(model, _optimizer(model, cfg), rollout, r_hat[:, None].expand_as(rewards).contiguous(),
           torch.zeros_like(rewards), cfg, cpu, None, seed=0)
    with torch.no_grad():
        after = forward_tokens(model.policy, rollout.query_ids, rollout.query_mask, rollout.response_ids, rollout.mask)
    gap = lambda lp: (lambda s: s[:, 0] - s[:, 1])(sequence_logprobs(lp, rollout.mask).view(-1, 2))
    delta = r_hat.view(-1, 2)[:, 0] - r_hat.view(-1, 2)[:, 1]
    change = gap(after.logprobs) - gap(rollout.logprobs)
    assert (delta.abs() > 1e-6).all() and (change.abs() > 0).all()
    assert (delta * change).sum() > 0, (delta, change)


KILL_SET = ["policy.iterations=5", "policy.save_every=2", "policy.prompts_per_iteration=4", "policy.minibatch_size=2",
            "policy.max_new_tokens=10", "policy.kl_coef=0.02", "policy.kl_target=0.5", "policy.kl_horizon=20"]


def test_killed_run_resumed_equals_uninterrupted(tmp_path):
    script = [sys.executable, str(ROOT / "tests" / "apa_kill_script.py")]
    killed = tmp_path / "killed"
    dead = subprocess.run([*script, str(killed), "2", *KILL_SET], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert dead.returncode == 137, dead.stderr[-2000:]
    # Died after iteration 2 was logged, with the checkpoint of iteration 2 on disk and no final model.
    assert (killed / "checkpoint-2").is_dir() and not (killed / "checkpoint-4").exists()
    assert not (killed / "final").exists()
    # The uninterrupted run, then the resumption, in one second process (not the one that died).
    resumed = subprocess.run([*script, "--whole-then-resume", str(tmp_path / "whole"), str(killed), *KILL_SET],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    read = lambda folder: [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    drop_times = lambda r: {k: v for k, v in r.items() if not k.endswith("_s")}
    whole_log, resumed_log = read(tmp_path / "whole"), read(killed)
    assert [r["iteration"] for r in resumed_log] == [0, 1, 2, 3, 4]  # iteration 2 logged once, not twice
    assert [drop_times(r) for r in resumed_log] == [drop_times(r) for r in whole_log]
    # The adaptive β moved, and the checkpoint the resumption started from held the β of iteration 2.
    betas = [r["kl_coef"] for r in whole_log]
    assert betas[0] == 0.02 and len(set(betas)) == 5
    assert json.loads((killed / "checkpoint-2" / "kl_controller.json").read_text())["kl_coef"] == betas[2]
    a = torch.load(tmp_path / "whole" / "checkpoint-5" / "state.pt", weights_only=False)["model"]
    b = torch.load(killed / "checkpoint-5" / "state.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_exactly(tmp_path):
    """Data parallelism on accelerate (DDP, gloo, one torchrun launch): two processes with half the
    responses each take the step one process takes with all of them (losses, gradient norm and the
    gradient itself at fp32 tolerance: the step's Adam first moment / (1 − β₁), before Adam normalises
    it), with pooled reward statistics. The tolerance has power: one process's half alone is far
    outside it, and a sum instead of a mean over processes doubles the norm. In the same launch a run
    stopped after iteration 1 and resumed from its checkpoint repeats the uninterrupted run exactly
    (log, cosine learning rates, weights), and the processes stay in sync."""
    from policy_dist_script import full_length, learn_once, rows

    from starling_lib.policy.models import frozen_reference
    from starling_lib.policy.rollout import RewardScorer
    from starling_lib.policy.train import build_actor_critic, collect_rollout

    # One rollout of 8 prompts, every response counted to its end (equal lengths), shared by both sides.
    preset = get_preset("smoke", ["runtime.dtype=fp32", "policy.max_new_tokens=6"])
    policy, tokenizer = load_policy(preset)
    reward, reward_tokenizer = build_backbone(preset)
    prompts, _ = policy_prompts(preset)
    reference = frozen_reference(policy)
    torch.manual_seed(0)
    model, _ = build_actor_critic(policy, preset.policy)
    scorer = RewardScorer(reward, reward_tokenizer, preset.policy.rm_max_length)
    rollout = collect_rollout(model, reference, tokenizer, scorer, prompts[:8], preset.policy, torch.device("cpu"), None)
    rollout = full_length(rollout, model, reference)
    torch.save(rollout, tmp_path / "rollout.pt")

    out = tmp_path / "two"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                               "29531", str(ROOT / "tests" / "policy_dist_script.py"), str(out),
                               str(tmp_path / "rollout.pt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, env=env)
    one = learn_once(rollout, [], minibatch=8, grad_accum=2)  # meanwhile: one process, all 8 (two micro-batches)
    half = learn_once(rows(rollout, torch.arange(4)), [], minibatch=4, grad_accum=1)  # one process's half alone
    _, stderr = launch.communicate(timeout=400)
    assert launch.returncode == 0, stderr[-3000:]

    two = torch.load(out / "learn.pt", weights_only=False)
    for key in ("policy_loss", "value_loss", "grad_norm"):
        assert two["losses"][key] == pytest.approx(one["losses"][key], rel=1e-5, abs=1e-7), key
    assert two["moments"] == pytest.approx(one["moments"], rel=1e-9)  # scores pooled over the processes

    def rel_error(a, b):
        diff = sum(float((a[k] - b[k]).double().pow(2).sum()) for k in a) ** 0.5
        return diff / sum(float(b[k].double().pow(2).sum()) for k in b) ** 0.5

    assert two["grads"].keys() == one["grads"].keys()
    assert rel_error(two["grads"], one["grads"]) < 1e-4
    assert rel_error(half["grads"], one["grads"]) > 100 * 1e-4  # power: one half's gradient is far off
    assert abs(half["losses"]["grad_norm"] / one["losses"]["grad_norm"] - 1) > 100 * 1e-5

    # Exact resume under two processes, and the processes in sync.
    read = lambda folder: [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    drop_times = lambda r: {k: v for k, v in r.items() if not k.endswith("_s")}
    whole, resumed = read(out / "whole"), read(out / "stopped")
    assert [r["iteration"] for r in resumed] == [0, 1] and [r["responses"] for r in whole] == [8, 8]
    assert [drop_times(r) for r in resumed] == [drop_times(r) for r in whole]
    # Cosine over 4 steps (2 per iteration) from 3e-4 to 1e-5; logged: each iteration's last step (1 and 3).
    cosine = [1e-5 + 2.9e-4 * (1 + math.cos(math.pi * step / 4)) / 2 for step in (1, 3)]  # 2.575e-4, 5.25e-5
    assert [r["lr"] for r in whole] == pytest.approx(cosine, rel=1e-12)
    a = torch.load(out / "whole" / "checkpoint-2" / "state.pt", weights_only=False)["model"]
    b = torch.load(out / "stopped" / "checkpoint-2" / "state.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for run in ("whole", "stopped"):
        rank0, rank1 = (json.loads((out / run / f"digest-rank{r}.json").read_text()) for r in (0, 1))
        assert rank0 == pytest.approx(rank1, rel=1e-6)
