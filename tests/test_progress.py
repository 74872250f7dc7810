"""Progress bars on long work: one switch (argument, else $STARLING_PROGRESS), shown where asked,
and never a change in the numbers (a bar draws no random numbers)."""

import pytest

from starling_lib.config import get_preset
from starling_lib.policy.pipeline import load_policy, policy_prompts
from starling_lib.policy.train import train_policy
from starling_lib.progress import progress_enabled
from starling_lib.reward.data import load_examples
from starling_lib.reward.train import build_backbone, train_reward_model

TIMINGS = {"generate_s", "forward_s", "score_s", "update_s", "iteration_s"}


@pytest.mark.parametrize("value, expected", [("0", False), ("off", False), (" False ", False), ("no", False),
                                             ("1", True), ("yes", True), ("", True)])
def test_environment_decides_when_the_call_does_not(monkeypatch, value, expected):
    monkeypatch.setenv("STARLING_PROGRESS", value)
    assert progress_enabled(None) is expected
    assert progress_enabled(True) is True and progress_enabled(False) is False  # the argument wins


def test_on_without_the_variable(monkeypatch):
    monkeypatch.delenv("STARLING_PROGRESS", raising=False)
    assert progress_enabled() is True


def _policy_history(tmp_path, name, progress):
    preset = get_preset("smoke", ["policy.iterations=2", "policy.prompts_per_iteration=4",
                                  "policy.minibatch_size=4", "policy.max_new_tokens=8"])
    policy, tokenizer = load_policy(preset)
    reward, reward_tokenizer = build_backbone(preset)
    prompts, gold = policy_prompts(preset)
    run = train_policy(preset, prompts, policy, tokenizer, reward, reward_tokenizer, tmp_path / name,
                       gold_fn=gold, save_final=False, progress=progress)
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in run.history]


def test_rl_loop_bar_shows_rewards_and_kl_and_changes_no_number(tmp_path, capsys):
    quiet = _policy_history(tmp_path, "quiet", progress=False)
    assert capsys.readouterr().err == ""
    shown = _policy_history(tmp_path, "shown", progress=True)
    err = capsys.readouterr().err
    assert "apa iterations" in err and "2/2" in err
    assert "proxy=" in err and "gold=" in err and "kl=" in err
    assert shown == quiet


def test_reward_model_training_shows_the_trainers_bar_and_changes_no_number(tmp_path, capsys):
    preset = get_preset("smoke", ["reward.max_steps=4", "reward.logging_steps=2", "reward.save_steps=100"])
    examples = load_examples(preset)[:16]

    def losses(name, progress):
        model, tokenizer = build_backbone(preset)
        run = train_reward_model(preset, examples, None, tmp_path / name, model=model, tokenizer=tokenizer,
                                 save_final=False, progress=progress)
        return [(r["step"], r["loss"]) for r in run.history if r["event"] == "train" and "loss" in r]

    quiet = losses("quiet", False)
    assert "4/4" not in capsys.readouterr().err
    shown = losses("shown", True)
    assert "4/4" in capsys.readouterr().err  # the Trainer's own bar: steps done of max_steps
    assert shown == quiet and len(quiet) == 2
