"""DPO (``starling dpo train``): preference pairs from rankings by hand, bad rows named, and TRL's
DPOTrainer run from a saved start that moves the weights and widens the chosen-vs-rejected margin."""

import json

import numpy as np
import pytest
import torch

from starling_lib import cli
from starling_lib.config import get_preset
from starling_lib.policy.dpo import dpo_pairs, evaluate_dpo, preference_pairs, train_dpo
from starling_lib.policy.pipeline import load_saved_policy
from starling_lib.policy.sft import completion_log_likelihood

HI = "\n\nHuman: Hi\n\nAssistant: "
BEES = "\n\nHuman: Tell me about bees.\n\nAssistant: Bees buzz.\n\nHuman: And honey?\n\nAssistant: "


def nectar(prompt, turns, *ranked):
    """A Nectar row with answers ``(text, rank)``."""
    return {"prompt": prompt, "answers": [{"answer": a, "model": "m", "rank": r} for a, r in ranked],
            "turns": turns, "num_responses": len(ranked), "source": ["toy"], "good_natured": True}


# Ranks out of order, a 2-answer row, a 1-answer row.
TOY = [nectar(HI, 1, ("B", 2), ("A", 1), ("C", 3)), nectar(BEES, 2, ("worse", 2.0), ("better", 1.0)),
       nectar(HI, 1, ("alone", 1))]


def texts(pairs):
    return [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs]


@pytest.mark.parametrize("rule, expected", [
    ("best_vs_worst", [("A", "C"), ("better", "worse")]),
    ("adjacent", [("A", "B"), ("B", "C"), ("better", "worse")]),
    ("all", [("A", "B"), ("A", "C"), ("B", "C"), ("better", "worse")]),
])
def test_pairs_by_hand_for_each_rule(rule, expected):
    with pytest.warns(UserWarning, match=r"1 of 3 rows have fewer than 2 answers .* skipped \(rows \[2\]\)"):
        pairs = preference_pairs(TOY, rule)
    assert texts(pairs) == expected
    assert pairs.skipped_rows == [2] and pairs.n_rows == 3 and pairs.rule == rule
    # TRL's conversational format: the prompt as messages, one assistant message each side.
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Hi"}]
    assert pairs[-1]["prompt"] == [{"role": "user", "content": "Tell me about bees."},
                                   {"role": "assistant", "content": "Bees buzz."},
                                   {"role": "user", "content": "And honey?"}]
    assert pairs[0]["chosen"][0]["role"] == pairs[0]["rejected"][0]["role"] == "assistant"


def test_max_pairs_keeps_a_seeded_subset_in_order():
    every = preference_pairs(TOY[:2], "all")
    two = preference_pairs(TOY[:2], "all", max_pairs=2, seed=3)
    assert len(two) == 2 and two.n_before_cap == 4 and two.summary()["pairs"] == 2
    positions = [texts(every).index(t) for t in texts(two)]
    assert positions == sorted(positions)
    assert two == preference_pairs(TOY[:2], "all", max_pairs=2, seed=3)


def answers(*ranks):
    return [{"answer": f"a{i}", "model": "m", "rank": r} for i, r in enumerate(ranks)]


@pytest.mark.parametrize("rows, match", [
    ([TOY[0], {"prompt": HI, "answers": answers(1, 2, 2)}],
     r"row 1, field 'answers\[2\].rank': rank 2 ties with answers\[1\]"),
    ([{"prompt": HI, "answers": answers(None, 1)}], r"row 0, field 'answers\[0\].rank': rank is missing"),
    ([{"prompt": HI, "answers": answers("first", 2)}],
     r"row 0, field 'answers\[0\].rank': rank must be a finite number"),
    ([{"prompt": HI, "answers": [{"answer": 3, "rank": 1}, {"answer": "x", "rank": 2}]}],
     r"row 0, field 'answers\[0\].answer'"),
    ([TOY[1], {"prompt": "no turns", "answers": answers(1, 2)}], r"row 1, field 'prompt'"),
    ([{"prompt": HI + "Hel", "answers": answers(1, 2)}], r"row 0, field 'prompt': the prompt must end on a Human turn"),
    ([{"prompt": HI}], r"row 0, field 'answers'"),
])
def test_bad_rows_name_row_and_field(rows, match):
    with pytest.raises(ValueError, match=match):
        preference_pairs(rows)


def test_unknown_rule_and_empty_pairs_are_errors(tmp_path):
    with pytest.raises(ValueError, match="pair rule must be one of"):
        preference_pairs(TOY[:2], "best")
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(get_preset("smoke"), [], tmp_path)


def test_pairs_from_a_file_and_from_the_tiny_worlds_rl_part(tmp_path, capsys):
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in TOY))
    with pytest.raises(ValueError, match=r"toy.jsonl: row 2, field 'answers': 1 answers"):  # data.strict
        dpo_pairs(get_preset("smoke"), str(path))
    preset = get_preset("smoke", ["dpo.pair_rule=adjacent", "data.strict=false"])
    with pytest.warns(UserWarning, match="dropped 1 of 3 rows"):  # the loader reports and drops it
        pairs = dpo_pairs(preset, str(path))
    assert texts(pairs) == [("A", "B"), ("B", "C"), ("better", "worse")]
    world = dpo_pairs(get_preset("smoke"))
    assert len(world) == get_preset("smoke").dpo.max_pairs  # 59 rl rankings, one pair each, capped
    assert world.n_before_cap == world.n_rows == 59
    # A tie in a file: the command names the file, the row and the field, in one line.
    bad = nectar(BEES, 2, ("x", 1), ("y", 1))
    path.write_text(json.dumps(TOY[0]) + "\n" + json.dumps(bad) + "\n")
    assert cli.main(["dpo", "train", "--preset", "smoke", "--data", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "row 1" in err and "answers[1].rank" in err and len(err.splitlines()) == 1


def summed_logps(model, tokenizer, pairs, side):
    """Σ log π(completion | prompt) per pair: completion_log_likelihood's mean per token times its
    token count (the answer and the closing eos, as TRL and SFT tokenize them)."""
    examples = [{"prompt": p["prompt"], "completion": p[side]} for p in pairs]
    means = completion_log_likelihood(model, tokenizer, examples, device="cpu")
    counts = [len(tokenizer.apply_chat_template(e["prompt"] + e["completion"])["input_ids"])
              - len(tokenizer.apply_chat_template(e["prompt"], add_generation_prompt=True)["input_ids"])
              for e in examples]
    return means * np.array(counts)


def test_dpo_train_from_the_shell_moves_the_policy_toward_chosen(capsys, tmp_path, tiny_policy_dir):
    preset = get_preset("smoke")
    pairs = dpo_pairs(preset)
    code = cli.main(["dpo", "train", "--preset", "smoke", "--policy", str(tiny_policy_dir),
                     "--out", str(tmp_path / "dpo"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["pairs"] == metrics["pairs_trained"] == len(pairs) and metrics["pair_rule"] == "best_vs_worst"
    assert metrics["steps"] == -(-len(pairs) // preset.dpo.batch_size)
    assert abs(metrics["train_rewards_margins_first"]) < 1e-3  # the first step's policy is its reference
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert json.loads((tmp_path / "dpo" / "preset.json").read_text())["dpo"]["pair_rule"] == "best_vs_worst"

    start, tokenizer = load_saved_policy(tiny_policy_dir)
    tuned, _ = load_saved_policy(tmp_path / "dpo")  # its final/, a plain causal LM
    moved = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values())]
    assert all(moved), f"{moved.count(False)} of {len(moved)} tensors did not move"
    # The margin, measured here: Σ log π/π_ref of chosen minus of rejected, over the training pairs.
    ratio = {side: summed_logps(tuned, tokenizer, pairs, side) - summed_logps(start, tokenizer, pairs, side)
             for side in ("chosen", "rejected")}
    margin = ratio["chosen"] - ratio["rejected"]  # 0 before training, by definition
    assert margin.mean() > 0 and (margin > 0).mean() > 0.8
    # TRL's own evaluation on the same pairs: β times the same margin (the batch means equal the mean here).
    assert len(pairs) % preset.dpo.batch_size == 0
    assert metrics["pairs_rewards_margins"] == pytest.approx(preset.dpo.beta * margin.mean(), rel=0.05)
    assert metrics["pairs_rewards_accuracies"] == pytest.approx((margin > 0).mean(), abs=0.07)


def test_in_memory_start_is_the_reference_without_precompute(tmp_path, tiny_policy_dir):
    """A policy changed in memory (an SFT run not yet saved): DPO's reference is that policy, not the
    folder its config names; so the first step's implicit rewards are 0 with the frozen copy too."""
    model, tokenizer = load_saved_policy(tiny_policy_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    preset = get_preset("smoke", ["dpo.precompute_ref=false", "dpo.max_steps=1"])
    run = train_dpo(preset, dpo_pairs(preset)[:8], tmp_path, model=model, tokenizer=tokenizer, measure_pairs=False)
    first = run.history[0]
    assert abs(first["rewards/chosen"]) < 1e-4 and abs(first["rewards/rejected"]) < 1e-4
    assert run.metrics["steps"] == 1 and "pairs_rewards_margins" not in run.metrics


def test_sft_on_best_answers_from_a_given_start(capsys, tmp_path, tiny_policy_dir):
    """The stand-in for a start that already had offline preference training (OpenChat's C-RLFT):
    ``starling sft train --answers best --policy DIR``, one example per prompt, continuing DIR."""
    model, tokenizer = load_saved_policy(tiny_policy_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "start")
    tokenizer.save_pretrained(tmp_path / "start")
    code = cli.main(["sft", "train", "--preset", "smoke", "--answers", "best", "--policy", str(tmp_path / "start"),
                     "--set", "sft.n_prompts=6", "--set", "sft.learning_rate=1e-6", "--out", str(tmp_path / "sft"),
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["examples"] == metrics["prompts"] == 6 and metrics["answers"] == "best"
    tuned, _ = load_saved_policy(tmp_path / "sft")
    untrained, _ = load_saved_policy(tiny_policy_dir)
    gap = lambda a, b: max((x - y).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))  # noqa: E731
    assert gap(tuned, model) < 1e-3 < gap(tuned, untrained)  # one tiny step away from the given start


def test_evaluate_dpo_is_the_online_methods_evaluation(tiny_policy_dir):
    from starling_lib.policy.pipeline import policy_prompts
    from starling_lib.policy.study import evaluate_policy

    preset = get_preset("smoke", ["policy.max_new_tokens=8"])
    policy, tokenizer = load_saved_policy(tiny_policy_dir)
    prompts = policy_prompts(preset)[0][:3]
    scorer = lambda prompts, texts: torch.arange(len(texts), dtype=torch.float32)  # noqa: E731
    rows = evaluate_dpo(policy, tokenizer, policy, scorer, prompts, preset, seed=2, algo="dpo-best")
    assert list(rows.algo) == ["dpo-best"] * 3 and list(rows.seed) == [2] * 3
    assert rows.kl.abs().max() < 1e-4  # against itself
    same = evaluate_policy(policy, tokenizer, policy, scorer, prompts, preset, seed=1002)  # compare_algorithms' seed
    assert list(rows.response) == list(same.response) and list(rows.gold) == list(same.gold)
