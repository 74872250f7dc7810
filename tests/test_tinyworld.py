"""The tiny world: byte-stable sample, Nectar schema, a gold reward that means what it says,
and Plackett-Luce ranks that follow the gold reward at the stated temperature."""

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy.stats import kendalltau

from starling_lib.config import TinyWorldConfig
from starling_lib.data import gold
from starling_lib.data import tinyworld as tw
from starling_lib.data.schema import ANSWER_FIELDS, ASSISTANT, HUMAN, NECTAR_FEATURES, NECTAR_FIELDS

BEES = f"{HUMAN}Tell me about bees.{ASSISTANT}"
HARMFUL = f"{HUMAN}How can I steal a car without getting caught?{ASSISTANT}"
HELPFUL_BEES = "Let me explain bees. Think of honey, hive and wings. It matters because of honey."
POLITE_REFUSAL = "I'm sorry, but I can't help with that. I can help with something safe instead."


@pytest.fixture(scope="module")
def sample_rows():
    return [json.loads(line) for line in tw.SAMPLE_PATH.read_text(encoding="utf-8").splitlines()]


def test_regenerated_sample_is_byte_identical_to_the_committed_file(tmp_path):
    path = tw.write_world_jsonl(tw.generate_world(tw.SAMPLE_CONFIG), tmp_path / "sample.jsonl")
    assert path.read_bytes() == tw.SAMPLE_PATH.read_bytes()
    assert tw.SAMPLE_PATH.stat().st_size < 300_000


def test_same_seed_same_rows_different_seed_different_rows():
    cfg = TinyWorldConfig(n_prompts=30, seed=7)
    assert tw.generate_world(cfg) == tw.generate_world(cfg)
    other = tw.generate_world(dataclasses.replace(cfg, seed=8))
    assert other != tw.generate_world(cfg)


def test_rows_have_the_nectar_schema_and_ranks_are_a_permutation(sample_rows):
    assert len(sample_rows) == tw.SAMPLE_CONFIG.n_prompts
    for row in sample_rows:
        assert tuple(row) == NECTAR_FIELDS
        assert row["prompt"].startswith(HUMAN) and row["prompt"].endswith(ASSISTANT)
        assert row["turns"] == row["prompt"].count(HUMAN)
        assert row["num_responses"] == len(row["answers"]) == 7
        assert row["source"] == ["tinyworld"]
        assert all(tuple(a) == ANSWER_FIELDS for a in row["answers"])
        assert sorted(a["rank"] for a in row["answers"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        assert all(isinstance(a["rank"], float) for a in row["answers"])
    # The configured fractions show up: some multi-turn and some not-good-natured prompts.
    assert 20 <= sum(row["turns"] == 2 for row in sample_rows) <= 60
    assert 15 <= sum(not row["good_natured"] for row in sample_rows) <= 50


def test_presentation_order_carries_no_information(sample_rows):
    # Where the best answer sits: each of the 7 slots should get about 200/7 = 29 of them.
    first_slots = [[a["rank"] for a in row["answers"]].index(1.0) for row in sample_rows]
    counts = np.bincount(first_slots, minlength=7)
    assert counts.min() >= 12, counts


def test_world_dataset_has_nectar_features_and_matches_the_rows():
    cfg = TinyWorldConfig(n_prompts=5, seed=3)
    ds = tw.world_dataset(cfg)
    assert ds.features == NECTAR_FEATURES
    assert ds.to_list() == tw.generate_world(cfg)


def test_with_gold_aligns_one_reward_per_answer_for_rows_and_datasets():
    cfg = TinyWorldConfig(n_prompts=4, seed=1)
    rows = tw.generate_world(cfg)
    scored = tw.with_gold(rows)
    assert "gold_rewards" not in rows[0]  # the input is not modified
    for row in scored:
        assert row["gold_rewards"] == [gold.gold_reward(row["prompt"], a["answer"]) for a in row["answers"]]
    assert tw.with_gold(tw.world_dataset(cfg))["gold_rewards"] == [row["gold_rewards"] for row in scored]


def test_write_world_jsonl_keeps_schema_order_and_unicode(tmp_path):
    row = {"good_natured": True, "source": ["x"], "num_responses": 1, "turns": 1,
           "answers": [{"rank": 1.0, "model": "m", "answer": "café"}], "prompt": "p"}
    text = tw.write_world_jsonl([row], tmp_path / "w.jsonl").read_bytes()
    assert text == ('{"prompt":"p","answers":[{"answer":"café","model":"m","rank":1.0}],'
                    '"turns":1,"num_responses":1,"source":["x"],"good_natured":true}\n').encode("utf-8")


def test_gold_reward_equals_the_hand_computed_sum():
    # 6 words; on topic; 2 of 3 facts (honey, pollen); "because" is the explain structure;
    # 4 distinct trigrams, so no repetition.
    attrs = gold.gold_attributes(BEES, "Bees make honey because of pollen.")
    assert (attrs["task"], attrs["topic"], attrs["on_topic"], attrs["structure"]) == ("explain", "bees", 1.0, 1.0)
    assert attrs["fact_coverage"] == pytest.approx(2 / 3) and attrs["repetition"] == 0.0
    expected = 1.0 + 2.0 * 2 / 3 + 1.0 + 0.5 * (math.log(7) - 6 / 26)
    assert gold.gold_reward(BEES, "Bees make honey because of pollen.") == pytest.approx(expected)


def test_on_topic_answer_with_facts_beats_an_off_topic_one():
    off_topic = "Let me explain coffee. Think of beans, roast and aroma. It matters because of beans."
    assert gold.gold_attributes(BEES, off_topic)["on_topic"] == 0.0
    assert gold.gold_reward(BEES, HELPFUL_BEES) > gold.gold_reward(BEES, off_topic) + 2.0


def test_refusal_beats_compliance_when_harmful_but_loses_to_help_when_benign():
    compliance = "Sure, here is how to steal a car. Get the window. Use the wires. Watch the mirror."
    assert gold.gold_attributes(HARMFUL, compliance)["complied"] == 1.0
    assert gold.gold_attributes(HARMFUL, POLITE_REFUSAL)["polite"] == 1.0
    assert gold.gold_reward(HARMFUL, POLITE_REFUSAL) > gold.gold_reward(HARMFUL, compliance)
    assert gold.gold_reward(HARMFUL, POLITE_REFUSAL) > gold.gold_reward(HARMFUL, "I can't help with that.")
    assert gold.gold_reward(BEES, HELPFUL_BEES) > gold.gold_reward(BEES, POLITE_REFUSAL)


def test_task_structure_is_read_from_the_text():
    list_prompt = f"{HUMAN}List some facts about bees.{ASSISTANT}"
    numbered = "Here are some facts about bees:\n1. Think of honey.\n2. A key part is hive."
    prose = "Here are some facts about bees: think of honey and a key part is hive."
    assert gold.gold_attributes(list_prompt, numbered)["structure"] == 1.0
    assert gold.gold_attributes(list_prompt, prose)["structure"] == 0.0
    poem_prompt = f"{HUMAN}Write a short poem about bees.{ASSISTANT}"
    assert gold.gold_attributes(poem_prompt, "Bees at dawn,\nhoney in the hive,\nwings alive.")["structure"] == 1.0
    assert gold.gold_attributes(poem_prompt, "Bees at dawn, honey in the hive, wings alive.")["structure"] == 0.0


def _words(n: int) -> str:
    # On topic, then n-1 distinct neutral words: only the length changes, never the repetition.
    return " ".join(["bees"] + [f"w{i}" for i in range(n - 1)])


def test_length_gains_diminish():
    r = {n: gold.gold_reward(BEES, _words(n)) for n in (10, 20, 50, 60)}
    assert r[20] - r[10] > r[60] - r[50]
    assert r[20] > r[10]


def test_repeated_padding_is_not_free():
    padded = HELPFUL_BEES + " There is so much to say." * 3
    assert gold.gold_attributes(BEES, padded)["repetition"] > 0.3
    assert gold.gold_reward(BEES, padded) < gold.gold_reward(BEES, HELPFUL_BEES)


def test_follow_up_question_takes_the_topic_of_the_earlier_turn():
    prompt = f"{HUMAN}Tell me about bees.{ASSISTANT}Bees make honey.{HUMAN}Thanks. Write a short poem about it.{ASSISTANT}"
    info = gold.parse_prompt(prompt)
    assert (info.task, info.topic, info.good_natured) == ("poem", "bees", True)


def test_unknown_prompt_has_no_topic_and_a_finite_reward():
    attrs = gold.gold_attributes("What is love?", "Love is patient and kind.")
    assert attrs["topic"] is None and attrs["on_topic"] == 0.0 and attrs["fact_coverage"] == 0.0
    assert attrs["good_natured"] is True
    assert math.isfinite(gold.gold_reward("", ""))


def test_temperature_zero_is_the_exact_gold_order_with_ties_broken_by_index():
    ranks = tw.sample_plackett_luce_ranks(np.array([1.0, 3.0, 3.0, -2.0]), 0.0, np.random.default_rng(0))
    assert ranks.tolist() == [3.0, 1.0, 2.0, 4.0]


@pytest.mark.parametrize("temperature, p_second_first", [(1.0, 0.75), (2.0, math.sqrt(3) / (1 + math.sqrt(3)))])
def test_first_place_follows_the_softmax_of_gold_over_temperature(temperature, p_second_first):
    # P(item 1 first) = exp(log3/T) / (1 + exp(log3/T)): 3/4 at T=1, sqrt3/(1+sqrt3) at T=2.
    rng = np.random.default_rng(0)
    gold = np.array([0.0, math.log(3)])
    firsts = [tw.sample_plackett_luce_ranks(gold, temperature, rng)[1] == 1.0 for _ in range(20_000)]
    assert np.mean(firsts) == pytest.approx(p_second_first, abs=0.01)


def test_better_simulated_models_earn_more_gold(sample_rows):
    gold_by_model = {}
    for row in tw.with_gold(sample_rows):
        for answer, gold in zip(row["answers"], row["gold_rewards"]):
            gold_by_model.setdefault(answer["model"], []).append(gold)
    mean = {name: np.mean(values) for name, values in gold_by_model.items()}
    assert set(mean) == {m.name for m in tw.SIMULATED_MODELS}
    assert mean["tiny-gpt-4"] > mean["tiny-gpt-3.5"] > mean["tiny-mistral"] > mean["tiny-rambler"] > mean["tiny-offtopic"]
    assert mean["tiny-gpt-3.5"] > mean["tiny-refuser"]


def test_ranks_agree_with_gold_at_the_default_temperature_but_not_perfectly(sample_rows):
    taus = [kendalltau([-a["rank"] for a in row["answers"]], row["gold_rewards"]).statistic
            for row in tw.with_gold(sample_rows)]
    assert 0.6 < np.nanmean(taus) < 0.95


def test_corpus_texts_holds_every_prompt_and_answer():
    cfg = TinyWorldConfig(n_prompts=3, seed=2)
    rows = tw.generate_world(cfg)
    texts = tw.corpus_texts(cfg)
    assert len(texts) == 3 * (1 + cfg.k)
    assert texts[0] == rows[0]["prompt"] and texts[1] == rows[0]["answers"][0]["answer"]
