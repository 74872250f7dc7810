"""Listwise collator, reward-model training, resume after a kill, two processes with gloo, CLI."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from starling_lib import cli
from starling_lib.config import get_preset
from starling_lib.paths import ROOT
from starling_lib.reward.collate import ListwiseCollator, encode_answer, render_answer, scatter_rewards
from starling_lib.reward.data import load_examples, prompt_folds, split_by_prompt
from starling_lib.reward.train import build_backbone, listwise_rewards, score_examples, train_reward_model

PROMPT = [{"role": "user", "content": "Tell me about bees."}]


@pytest.fixture(scope="module")
def smoke():
    preset = get_preset("smoke")
    model, tokenizer = build_backbone(preset)
    return preset, model, tokenizer


def test_collator_against_hand_tensors(smoke):
    _, _, tok = smoke
    examples = [
        {"prompt": PROMPT, "answers": ["bees make honey", "no", "honey and hive"], "ranks": [2.0, 3.0, 1.0],
         "gold_rewards": [0.5, -1.0, 1.5]},
        {"prompt": "\n\nHuman: coffee?\n\nAssistant: ", "answers": ["beans", "roast aroma"], "ranks": [2.0, 1.0],
         "gold_rewards": [0.1, 0.2]},
    ]
    batch = ListwiseCollator(tok, max_length=64)(examples)

    def ids(prompt, answer):
        messages = prompt + [{"role": "assistant", "content": answer}]
        return tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]

    coffee = [{"role": "user", "content": "coffee?"}]
    # Best first within each prompt, row-major over present answers.
    expected = [ids(PROMPT, "honey and hive"), ids(PROMPT, "bees make honey"), ids(PROMPT, "no"),
                ids(coffee, "roast aroma"), ids(coffee, "beans")]
    assert expected[0][0] == tok.bos_token_id  # the template writes <s>; the tokenizer adds nothing
    width = max(map(len, expected))
    assert batch["input_ids"].shape == (5, width)
    for row, want in enumerate(expected):
        assert batch["input_ids"][row, :len(want)].tolist() == want
        assert (batch["input_ids"][row, len(want):] == tok.pad_token_id).all()  # right padding
        assert batch["attention_mask"][row].tolist() == [1] * len(want) + [0] * (width - len(want))
    assert batch["answer_mask"].tolist() == [[True, True, True], [True, True, False]]
    assert batch["ranks"][0].tolist() == [1.0, 2.0, 3.0]
    assert batch["ranks"][1, :2].tolist() == [1.0, 2.0] and math.isnan(batch["ranks"][1, 2])
    assert batch["gold_rewards"][0].tolist() == pytest.approx([1.5, 0.5, -1.0])
    # The flat rewards go back to (B, K) in the same order.
    flat = torch.arange(5.0)
    assert scatter_rewards(flat, batch["answer_mask"], fill=-1).tolist() == [[0, 1, 2], [3, 4, -1]]


def test_long_prompts_are_cut_on_the_left_keeping_bos_and_answer(smoke):
    _, _, tok = smoke
    long_prompt = [{"role": "user", "content": "tell me about bees and honey " * 40}]
    answer = "bees make honey in the hive"
    text, start = render_answer(tok, long_prompt, answer)
    assert text[start:].startswith(answer)
    full = tok(text, add_special_tokens=False)["input_ids"]
    enc = encode_answer(tok, long_prompt, answer, max_length=24)
    assert len(full) > 24 and len(enc.input_ids) == 24
    assert enc.input_ids[0] == tok.bos_token_id
    assert enc.input_ids[1:] == full[len(full) - 23:]  # the last 23 tokens: end of prompt + whole answer
    assert answer in tok.decode(enc.input_ids)
    assert enc.prompt_tokens_dropped == len(full) - 24 and enc.answer_tokens_dropped == 0
    # An answer longer than the budget keeps its beginning.
    enc = encode_answer(tok, PROMPT, "honey " * 100, max_length=16)
    assert len(enc.input_ids) == 16 and enc.answer_tokens_dropped > 0
    assert tok.decode(enc.input_ids[-3:]).strip().startswith("honey")


def test_listwise_rewards_equal_one_answer_at_a_time(smoke):
    _, model, tok = smoke
    model.eval()
    examples = load_examples(get_preset("smoke"))[:3]
    collator = ListwiseCollator(tok, max_length=128)
    with torch.no_grad():
        rewards = listwise_rewards(model, collator(examples))  # (3, 7)
        for b, example in enumerate(examples[:2]):
            order = sorted(range(7), key=lambda i: example["ranks"][i])
            for j, i in enumerate(order):
                single = collator([{"prompt": example["prompt"], "answers": [example["answers"][i]]}])
                alone = model(input_ids=single["input_ids"], attention_mask=single["attention_mask"]).logits
                assert rewards[b, j].item() == pytest.approx(alone.item(), abs=1e-4)


def test_split_and_folds_keep_each_prompt_on_one_side():
    examples = [{"prompt_text": f"p{i % 10}", "answers": ["a"]} for i in range(40)]
    train, held = split_by_prompt(examples, 0.3, seed=1)
    assert len({e["prompt_text"] for e in held}) == 3 and len(train) + len(held) == 40
    assert not {e["prompt_text"] for e in train} & {e["prompt_text"] for e in held}
    folds = prompt_folds(examples, 5, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(40))
    for f in folds:
        assert len({examples[i]["prompt_text"] for i in f}) == 2
    with pytest.raises(ValueError, match="eval_fraction"):
        split_by_prompt(examples, 1.0)


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("loss_type", ["kwise", "pairwise", "adjacent"])
def test_smoke_training_learns(tmp_path, loss_type):
    preset = get_preset("smoke", [f"reward.loss_type={loss_type}", "reward.epochs=3"])
    train, held = split_by_prompt(load_examples(preset), 0.25, seed=0)
    model, tok = build_backbone(preset)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    untrained = score_examples(model, tok, held)
    run = train_reward_model(preset, train, held, tmp_path, model=model, tokenizer=tok)
    after = run.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "score.weight" in changed and len(changed) > len(before) // 2
    losses = [r["loss"] for r in run.history if r["event"] == "train" and "loss" in r]
    assert len(losses) >= 2 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    m = run.metrics
    assert m["eval_n_prompts"] == len(held) and m["eval_n_pairs"] == 21 * len(held)
    # Untrained rewards rank about at chance; trained ones clearly better on held-out prompts.
    from starling_lib.reward.metrics import ranking_metrics

    chance = ranking_metrics(untrained["scores"], untrained["ranks"], untrained["gold_rewards"])
    assert m["eval_gold_pairwise_accuracy"] > max(0.65, chance["gold_pairwise_accuracy"] + 0.1)
    assert m["eval_pairwise_accuracy"] > 0.65
    assert (tmp_path / "final" / "model.safetensors").is_file() and (tmp_path / "metrics.json").is_file()
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["event"] == "eval"


RESUME_SET = ["reward.save_steps=3", "reward.max_steps=9", "reward.prompts_per_batch=4",
              "reward.logging_steps=1", "reward.save_total_limit=None"]


@pytest.mark.slow
def test_killed_run_resumed_equals_uninterrupted(tmp_path):
    preset = get_preset("smoke", RESUME_SET)
    train, held = split_by_prompt(load_examples(preset), preset.reward.eval_fraction, preset.runtime.seed)
    whole = train_reward_model(preset, train, held, tmp_path / "whole")

    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "rm_kill_script.py"), str(killed), "5", *RESUME_SET],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert (killed / "checkpoint-3").is_dir() and not (killed / "final").exists()
    # Step 5 ran but died before its log line; step 4 was logged after the last checkpoint (3).
    assert max(json.loads(line)["step"] for line in (killed / "log.jsonl").read_text().splitlines()) == 4

    resumed = train_reward_model(preset, train, held, killed, resume=True)
    a, b = _weights(tmp_path / "whole" / "final"), _weights(killed / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["eval_pairwise_accuracy"] == whole.metrics["eval_pairwise_accuracy"]
    # The log is the uninterrupted one: step 4 of the dead run was dropped, not repeated.
    steps = [r["step"] for r in resumed.history if r["event"] == "train" and "loss" in r]
    assert steps == list(range(1, 10))
    assert [r["loss"] for r in resumed.history if "loss" in r] == [r["loss"] for r in whole.history if "loss" in r]


def _rm_run(tmp_path, name, prompts_per_batch, processes=1, extra=()):
    """``starling rm train`` on smoke with plain SGD in fp32, one log line per step: (log records, weights)."""
    common = ["--preset", "smoke", "--loss", "kwise", "--json", "--set", "runtime.dtype=fp32",
              "--set", "reward.optim=sgd", "--set", "reward.learning_rate=0.05", "--set", "reward.max_steps=3",
              "--set", "reward.logging_steps=1", "--set", "reward.save_steps=100",
              "--set", f"reward.prompts_per_batch={prompts_per_batch}", "--out", str(tmp_path / name), *extra]
    if processes == 1:  # in this process, through the CLI's main (an interpreter start saved)
        assert cli.main(["rm", "train", *common]) == 0
    else:
        launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", "29517"]
        run = subprocess.run([sys.executable, *launcher, "-m", "starling_lib.cli", "rm", "train", *common],
                             capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             timeout=400)
        assert run.returncode == 0, run.stderr[-3000:]
        assert json.loads(run.stdout)["steps"] == 3  # one result on stdout: rank 0's, not one per process
    records = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
    return records, _weights(tmp_path / name / "final")


def _steps(records):
    """(loss, grad_norm) of each logged training step, in order."""
    return np.array([(r["loss"], r["grad_norm"]) for r in records if r.get("event") == "train" and "loss" in r])


@pytest.mark.slow
def test_two_processes_with_gloo_equal_one_process(tmp_path):
    """Data parallelism's guarantee: 2 processes with 2 prompts each take the same steps as 1 process
    with all 4 (per-step loss and gradient norm at fp32 tolerance; with plain SGD the weights stay
    within rounding too, where Adam's per-coordinate normalisation would magnify it). The tolerance is
    shown to have power: a run that sees only one rank's half of each batch (a rank's batch dropped,
    or both ranks given the same data) is far outside it, and summing the two ranks' gradients
    instead of averaging doubles the gradient norm."""
    one_records, one = _rm_run(tmp_path, "one", 4)
    two_records, two = _rm_run(tmp_path, "two", 2, processes=2)
    half_records, half = _rm_run(tmp_path, "half", 2)
    a, b, c = _steps(one_records), _steps(two_records), _steps(half_records)
    assert a.shape == b.shape == (3, 2)
    np.testing.assert_allclose(b, a, rtol=1e-4)  # same losses and averaged gradients, step by step
    assert all(torch.allclose(one[k], two[k], atol=1e-5) for k in one)
    # Power: the tolerance above is far below what a broken averaging would give.
    assert np.abs(c[0] - a[0]).max() / np.abs(a[0]).max() > 100 * 1e-4  # one rank's data only
    assert max((one[k] - half[k]).abs().max().item() for k in one) > 100 * 1e-5
    initial, _ = build_backbone(get_preset("smoke"))
    assert not torch.equal(initial.state_dict()["score.weight"], one["score.weight"])
    # The same 12 prompts were cut the same way: truncation counts are summed over processes.
    final = [next(r for r in reversed(records) if r.get("event") == "eval") for records in (one_records, two_records)]
    assert final[0]["steps"] == final[1]["steps"] == 3
    assert final[0]["truncated"] == final[1]["truncated"]


@pytest.mark.slow
def test_cli_rm_train_and_eval(tmp_path, ratings_dir, capsys, monkeypatch):
    out = tmp_path / "run"
    # train from the shell (the console path, --json on stdout); eval and a bad setting in process, through
    # the same main() (a second and third interpreter start would cost ~12 s here and test nothing more)
    train = subprocess.run([sys.executable, "-m", "starling_lib.cli", "rm", "train", "--preset", "smoke", "--data",
                            str(ratings_dir), "--out", str(out), "--set", "reward.max_steps=3", "--set",
                            "data.max_prompts=20", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    summary = json.loads(train.stdout)
    assert summary["steps"] == 3 and summary["eval_n_prompts"] > 0
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    code = cli.main(["rm", "eval", str(out), "--preset", "smoke", "--data", str(ratings_dir), "--set",
                     "data.max_prompts=20", "--json", "--log", str(out / "evals.jsonl")])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr[-2000:]
    metrics = json.loads(stdout)
    assert metrics["eval_pairwise_accuracy"] == pytest.approx(summary["eval_pairwise_accuracy"], abs=1e-6)
    assert json.loads((out / "evals.jsonl").read_text())["eval_n_prompts"] == metrics["eval_n_prompts"]
    code = cli.main(["rm", "train", "--preset", "smoke", "--set", "reward.loss_type=listnet", "--out",
                     str(tmp_path / "bad")])
    _, stderr = capsys.readouterr()
    assert code == 1 and "loss_type" in stderr and "Traceback" not in stderr


def test_starling_rm_backbone_trains_saves_and_reloads(tmp_path):
    from starling_lib.reward.starling_rm import StarlingRewardModel
    from starling_lib.reward.train import load_trained

    preset = get_preset("smoke", ["reward.backbone=starling-rm:tiny", "reward.max_steps=3", "runtime.dtype=fp32"])
    train, held = split_by_prompt(load_examples(preset), 0.25, seed=0)
    run = train_reward_model(preset, train, held[:4], tmp_path)
    assert isinstance(run.model, StarlingRewardModel) and run.metrics["steps"] == 3
    model, tok = load_trained(tmp_path)
    assert isinstance(model, StarlingRewardModel)
    again = score_examples(model, tok, held[:4])
    first = score_examples(run.model, run.tokenizer, held[:4])
    assert torch.allclose(torch.tensor(again["scores"]), torch.tensor(first["scores"]), atol=1e-6)
    # The published format's prompt: "<s>[INST] … </s> [/INST] answer</s>"-shaped, with this tokenizer's eos.
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                   tokenize=False)
    assert text == f"<s>[INST] hi {tok.eos_token} [/INST] yo{tok.eos_token}"


def test_length_buckets_give_the_same_rewards_and_gradients():
    """Answers sorted by length and run in up to 4 forwards, each cut to its own longest answer: the
    same rewards and gradients as one padded forward (float rounding apart), with fewer positions."""
    preset = get_preset("smoke", ["runtime.dtype=fp32"])
    model, tokenizer = build_backbone(preset)
    batch = ListwiseCollator(tokenizer, max_length=128)(load_examples(preset)[:6])  # 42 answers
    widths = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    grads = {}
    for buckets in (1, 4):
        model.zero_grad()
        rewards = listwise_rewards(model, batch, length_buckets=buckets)
        (rewards * torch.arange(rewards.shape[1])).sum().backward()  # any function of every reward
        grads[buckets] = (rewards.detach(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    hook.remove()
    torch.testing.assert_close(grads[4][0], grads[1][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[4][1], grads[1][1], rtol=1e-4, atol=1e-6)
    n, width = batch["input_ids"].shape
    assert widths[0] == (n, width) and len(widths) == 5 and sum(w[0] for w in widths[1:]) == n
    assert sum(w[0] * w[1] for w in widths[1:]) < 0.8 * n * width  # padding really cut
    # Left padding keeps one forward (positions would shift).
    left = ListwiseCollator(tokenizer, max_length=128, padding_side="left")(load_examples(preset)[:6])
    widths.clear()
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape),
                                           with_kwargs=True)
    listwise_rewards(model, left, length_buckets=4)
    hook.remove()
    assert widths == [tuple(left["input_ids"].shape)]
