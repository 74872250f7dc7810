"""The policy-tuning loop end to end on the smoke preset: every algorithm runs and moves the
weights, the log has what it promises, bad settings fail clearly, a killed run resumes to the
uninterrupted result, and two processes stay in sync."""

import json
import os
import subprocess
import sys

import pytest
import torch

from starling_lib.config import get_preset
from starling_lib.paths import ROOT
from starling_lib.policy.pipeline import load_policy, policy_prompts
from starling_lib.policy.train import check_config, train_policy
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


@pytest.mark.parametrize("overrides", [
    ["policy.algo=apa"],
    ["policy.algo=apa", "policy.apa_anchor=rollout", "policy.kl_coef=0.05", "policy.critic=shared"],
    ["policy.algo=ppo", "policy.kl_coef=0.05", "policy.grad_accum=2", "policy.epochs_per_rollout=2"],
    ["policy.algo=awr", "policy.unfreeze_last_n=1"],
    ["policy.algo=apa", "policy.lora_r=4", "runtime.dtype=fp32"],
], ids=["apa-init", "apa-rollout-shared", "ppo-accum", "awr-frozen", "apa-lora"])
def test_every_algorithm_runs_logs_and_moves_weights(tmp_path, overrides):
    run, start = _run(tmp_path, overrides)
    assert [r["iteration"] for r in run.history] == [0, 1]
    for record in run.history:
        assert LOG_FIELDS <= set(record), LOG_FIELDS - set(record)
        assert all(v == v for v in record.values() if isinstance(v, float))  # no NaN
        assert record["responses"] == 4
    assert run.history[0]["kl"] == pytest.approx(0.0, abs=1e-3)  # the first rollout is the start policy
    moved = {n for n, p in run.policy.named_parameters() if n in start and not torch.equal(p.detach(), start[n])}
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


KILL_SET = ["policy.iterations=5", "policy.save_every=2", "policy.prompts_per_iteration=4", "policy.minibatch_size=2",
            "policy.max_new_tokens=10", "policy.kl_coef=0.02"]


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
    a = torch.load(tmp_path / "whole" / "checkpoint-5" / "state.pt", weights_only=False)["model"]
    b = torch.load(killed / "checkpoint-5" / "state.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_stay_in_sync(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29531", str(ROOT / "tests" / "apa_kill_script.py"), str(out), "-1",
                           "policy.iterations=2", "policy.prompts_per_iteration=8", "policy.minibatch_size=4",
                           "policy.max_new_tokens=10"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["responses"] for r in log] == [8, 8]  # 4 per process, pooled in the log
    rank0 = json.loads((out / "digest-rank0.json").read_text())
    rank1 = json.loads((out / "digest-rank1.json").read_text())
    assert rank0 == rank1
    preset = get_preset("smoke")
    start, _ = load_policy(preset)
    assert rank0[0] != pytest.approx(float(next(start.parameters()).detach().double().sum()))  # and they did train
