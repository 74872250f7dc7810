"""SFT of the policy: example building, TRL's tokenized masks by hand, a smoke run that learns."""

import json

import pytest
import torch

from starling_lib.config import TinyWorldConfig, get_preset
from starling_lib.data.tinyworld import generate_world
from starling_lib.policy.pipeline import load_policy
from starling_lib.policy.pipeline import load_saved_policy
from starling_lib.policy.sft import build_sft_trainer, completion_log_likelihood, sft_examples, train_sft

ROWS = [
    {"prompt": "\n\nHuman: Tell me about bees.\n\nAssistant: ",
     "answers": [{"answer": "Bees buzz.", "model": "a", "rank": 2.0},
                 {"answer": "Bees make honey.", "model": "b", "rank": 1.0}]},
    {"prompt": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me about it.\n\nAssistant: ",
     "answers": [{"answer": "It is nice.", "model": "a", "rank": 1.0}]},
]
BEES = [{"role": "user", "content": "Tell me about bees."}]
MULTI_TURN = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "Tell me about it."}]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(preset, model, tokenizer): the smoke policy, its assets built in a temporary runs folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STARLING_RUNS", str(tmp_path_factory.mktemp("runs")))
        preset = get_preset("smoke")
        model, tokenizer = load_policy(preset)
    return preset, model, tokenizer


def test_examples_all_and_best():
    every = sft_examples(ROWS)
    assert every == [
        {"prompt": BEES, "completion": [{"role": "assistant", "content": "Bees buzz."}]},
        {"prompt": BEES, "completion": [{"role": "assistant", "content": "Bees make honey."}]},
        {"prompt": MULTI_TURN, "completion": [{"role": "assistant", "content": "It is nice."}]},
    ]
    best = sft_examples(ROWS, answers="best")
    assert [e["completion"][0]["content"] for e in best] == ["Bees make honey.", "It is nice."]  # rank 1, not first
    assert sft_examples(ROWS, max_prompts=1) == every[:2]


@pytest.mark.parametrize("rows, answers, match", [
    (ROWS, "top", "answers must be one of"),
    ([ROWS[0], {"prompt": ROWS[1]["prompt"], "answers": []}], "all", r"row 1: field 'answers'"),
    ([ROWS[0], {"prompt": ROWS[1]["prompt"]}], "all", r"row 1: field 'answers'"),
    ([{"prompt": ROWS[0]["prompt"], "answers": [{"answer": "x", "rank": 1.0}, {"answer": "y"}]}], "best",
     r"row 0: field 'answers\[1\].rank'"),
    ([{"prompt": ROWS[0]["prompt"], "answers": [{"answer": None, "rank": 1.0}]}], "all",
     r"row 0: field 'answers\[0\].answer'"),
    ([ROWS[0], {"prompt": "no turn markers", "answers": ROWS[0]["answers"]}], "all", r"row 1: field 'prompt'"),
    ([{"prompt": "\n\nHuman: Hi\n\nAssistant: Hel", "answers": ROWS[0]["answers"]}], "all",
     r"row 0: field 'prompt' must end on a Human turn"),
])
def test_examples_reject_bad_rows(rows, answers, match):
    with pytest.raises(ValueError, match=match):
        sft_examples(rows, answers=answers)


def test_tokenized_example_trains_answer_and_eos_only(smoke, tmp_path):
    preset, model, tok = smoke
    examples = sft_examples(ROWS[:1], answers="best") + sft_examples(ROWS[1:])
    trainer = build_sft_trainer(preset, examples, tmp_path, model, tok)
    eos = tok.eos_token_id
    assert tok.eos_token == "<|end_of_turn|>"
    prompts = []
    for example, prepared in zip(examples, trainer.train_dataset):
        ids, labels = prepared["input_ids"], prepared["labels"]
        prompt_ids = tok.apply_chat_template(example["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
        n_prompt = len(prompt_ids)
        # By hand: the template's ": " puts a space before the answer, and the turn closes with the eos.
        answer = example["completion"][0]["content"]
        answer_ids = tok(" " + answer, add_special_tokens=False)["input_ids"] + [eos]
        assert ids == prompt_ids + answer_ids
        assert labels == [-100] * n_prompt + answer_ids  # prompt masked; the answer and its eos trained
        assert tok.decode(ids[n_prompt:]) == f" {answer}<|end_of_turn|>"
        prompts.append(tok.decode(ids[:n_prompt]))
    assert prompts == [
        "<s>GPT4 Correct User: Tell me about bees.<|end_of_turn|>GPT4 Correct Assistant:",
        # The earlier assistant turn (and its end-of-turn) is context, never a target.
        "<s>GPT4 Correct User: Hi<|end_of_turn|>GPT4 Correct Assistant: Hello!<|end_of_turn|>"
        "GPT4 Correct User: Tell me about it.<|end_of_turn|>GPT4 Correct Assistant:",
    ]
    # The collator pads on the right with ignored labels.
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    short = len(trainer.train_dataset[0]["input_ids"])
    assert (batch["labels"][0, short:] == -100).all() and (batch["attention_mask"][0, short:] == 0).all()
    # completion_log_likelihood scores the same tokens: minus the model's mean NLL on TRL's labels.
    for row in range(2):
        n = int(batch["attention_mask"][row].sum())
        with torch.no_grad():
            nll = model(input_ids=batch["input_ids"][row:row + 1, :n], labels=batch["labels"][row:row + 1, :n]).loss
        ll = completion_log_likelihood(model, tok, examples[row:row + 1])
        assert ll[0] == pytest.approx(-nll.item(), abs=1e-5)


def test_smoke_sft_learns_saves_and_reloads(tmp_path, monkeypatch):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    preset = get_preset("smoke")
    rows = generate_world(preset.world)
    held_out = sft_examples(generate_world(TinyWorldConfig(n_prompts=20, seed=preset.world.seed + 1)))
    initial, tok = load_policy(preset)
    before = completion_log_likelihood(initial, tok, held_out)

    run = train_sft(preset, rows, tmp_path / "sft")  # model and tokenizer from the preset's tiny assets

    trained = dict(run.model.named_parameters())
    assert all(not torch.equal(p, trained[name]) for name, p in initial.named_parameters())
    losses = [r["loss"] for r in run.history if "loss" in r]
    assert len(losses) == run.metrics["steps"] == 14  # 60 prompts x 7 answers / 32, every step logged
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.4
    assert run.metrics["examples"] == run.metrics["examples_ending_in_eos"] == 420
    assert json.loads((tmp_path / "sft" / "metrics.json").read_text())["train_loss_last"] == losses[-1]
    assert [json.loads(line) for line in run.log_path.read_text().splitlines()] == run.history
    assert not list((tmp_path / "sft").glob("checkpoint-*"))  # save_strategy "no"

    model, tokenizer = load_saved_policy(tmp_path / "sft")
    assert tokenizer.eos_token == "<|end_of_turn|>" and tokenizer.chat_template == tok.chat_template
    batch = tokenizer(["GPT4 Correct User: bees<|end_of_turn|>GPT4 Correct Assistant: Bees"], return_tensors="pt")
    run.model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, run.model(**batch).logits)

    # A real effect: held-out tiny-world answers (a fresh world seed) become more likely per token.
    after = completion_log_likelihood(model, tokenizer, held_out)
    assert after.mean() > before.mean() + 0.4


def test_load_saved_policy_without_a_model_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved policy here"):
        load_saved_policy(tmp_path)

