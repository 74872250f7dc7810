"""``starling sft train`` and ``starling apa train``: the smoke pipeline end to end from the shell."""

import json

import pytest

from starling_lib import cli
from starling_lib.config import get_preset
from starling_lib.policy.pipeline import load_policy, load_saved_policy, policy_prompts, sft_rows, split_world

APA_FAST = ["--set", "policy.iterations=2", "--set", "policy.prompts_per_iteration=4",
            "--set", "policy.minibatch_size=4", "--set", "policy.max_new_tokens=12"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_split_world_parts_are_disjoint_and_feed_the_commands():
    preset = get_preset("smoke")
    parts = split_world(preset)
    sizes = {name: len(rows) for name, rows in parts.items()}
    study = preset.policy_study
    assert sizes["sft"] == preset.sft.n_prompts and sizes["rm"] == study.rm_prompts
    assert sizes["eval"] == study.eval_prompts and sizes["rl"] > 0
    prompt_sets = {name: {row["prompt"] for row in rows} for name, rows in parts.items()}
    assert sum(map(len, prompt_sets.values())) == sum(sizes.values())  # no prompt twice, within or across parts
    assert len(set.union(*prompt_sets.values())) == sum(sizes.values())
    assert split_world(preset) == parts  # seeded
    assert sft_rows(preset) == parts["sft"]
    prompts, gold_fn = policy_prompts(preset)
    assert prompts == [row["prompt"] for row in parts["rl"]] and gold_fn is not None
    too_small = get_preset("smoke", ["policy_study.world_prompts=50"])
    with pytest.raises(ValueError, match="policy_study.world_prompts=50 gives"):
        split_world(too_small)


def test_a_saved_policy_without_a_pad_token_gets_one(tmp_path, monkeypatch):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    model, tokenizer = load_policy(get_preset("smoke"))
    tokenizer.pad_token = None  # as Llama/Mistral checkpoints ship
    model.config.pad_token_id = model.generation_config.pad_token_id = None
    model.save_pretrained(tmp_path / "plain")
    tokenizer.save_pretrained(tmp_path / "plain")
    model, tokenizer = load_saved_policy(tmp_path / "plain")
    assert tokenizer.pad_token == tokenizer.unk_token and tokenizer.pad_token_id is not None
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_sft_then_apa_from_the_shell(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    code, out, _ = run_cli(capsys, "rm", "train", "--preset", "smoke", "--out", tmp_path / "rm", "--json")
    assert code == 0, out
    code, out, err = run_cli(capsys, "sft", "train", "--preset", "smoke", "--out", tmp_path / "sft", "--json")
    assert code == 0, err
    sft = json.loads(out)
    assert sft["examples"] == 7 * get_preset("smoke").sft.n_prompts and sft["train_loss_last"] < sft["train_loss_first"]
    assert (tmp_path / "sft" / "final" / "config.json").is_file()

    code, out, err = run_cli(capsys, "apa", "train", "--preset", "smoke", "--reward-model", tmp_path / "rm",
                             "--policy", tmp_path / "sft", "--algo", "ppo", "--out", tmp_path / "ppo",
                             *APA_FAST, "--set", "policy.kl_coef=0.05", "--json")
    assert code == 0, err
    result = json.loads(out)
    log = [json.loads(line) for line in (tmp_path / "ppo" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [0, 1] and {r["algo"] for r in log} == {"ppo"}
    for record in log:  # the per-step fields the issue asks for, gold included (the tiny world knows it)
        for key in ("proxy_reward", "gold_reward", "kl", "entropy", "value_loss", "response_length",
                    "generate_s", "score_s", "update_s"):
            assert isinstance(record[key], float), key
    assert result["algo"] == "ppo" and result["gold_reward"] == log[-1]["gold_reward"]
    preset = json.loads((tmp_path / "ppo" / "preset.json").read_text())
    assert preset["policy"]["algo"] == "ppo" and preset["policy"]["kl_coef"] == 0.05
    assert (tmp_path / "ppo" / "final" / "critic.pt").is_file()

    # --resume with the run complete trains nothing more and keeps the log.
    code, out, err = run_cli(capsys, "apa", "train", "--preset", "smoke", "--reward-model", tmp_path / "rm",
                             "--policy", tmp_path / "sft", "--algo", "ppo", "--out", tmp_path / "ppo",
                             *APA_FAST, "--set", "policy.kl_coef=0.05", "--resume", "--json")
    assert code == 0, err
    assert [json.loads(line) for line in (tmp_path / "ppo" / "log.jsonl").read_text().splitlines()] == log


@pytest.mark.parametrize("argv, message", [
    (["--set", "policy.algo=reinforce"], "policy.algo must be one of"),
    (["--set", "policy.minibatch_size=5", "--set", "policy.grad_accum=2"], "must be a multiple of policy.grad_accum"),
    (["--policy", "no-such-folder"], "no saved policy here"),
])
def test_apa_bad_input_is_one_line_without_traceback(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    # In process, through the console script's own main (test_cli checks the console script itself
    # prints no traceback): an exception main() did not turn into its one-line error would fail here.
    code, _, err = run_cli(capsys, "apa", "train", "--preset", "smoke", "--reward-model", tmp_path / "missing-rm",
                           "--out", tmp_path / "out", *argv)
    assert code == 1, err
    error = [line for line in err.splitlines() if line.startswith("starling: error:")]
    assert len(error) == 1 and message in error[0] and "Traceback" not in err
    assert not (tmp_path / "out" / "log.jsonl").exists()
