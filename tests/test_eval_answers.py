"""Answer generation: two turns on the model's own answers, FastChat's temperatures and layout, resume."""

import json

import pytest
import torch

from starling_lib.config import get_preset
from starling_lib.evaluation.answers import (ERROR_ANSWER, HFChatGenerator, ServerChatGenerator, batch_plan,
                                             category_temperature, generate_alpaca_outputs,
                                             generate_mt_bench_answers)
from starling_lib.evaluation.study import alpaca_demo_set, instruction_gold
from starling_lib.judge import JudgeClient

from fake_server import FakeOpenAIServer

QUESTIONS = [
    {"question_id": 1, "category": "writing", "turns": ["Write a short poem about bees.", "Thanks. Now list facts about it."]},
    {"question_id": 2, "category": "math", "turns": ["Explain stars in simple words.", "Thanks. Any tips about it?"]},
    {"question_id": 3, "category": "stem", "turns": ["Tell me about coffee.", "Thanks. Write a poem about it."]},
    {"question_id": 4, "category": "writing", "turns": ["List some facts about rain.", "Thanks. Explain it."]},
    {"question_id": 5, "category": "roleplay", "turns": ["Tell me about chess.", "Thanks. Any tips?"]},
]


class EchoGenerator:
    """Answers with the turn number and the last user message, and records every call."""

    name = "echo"

    def __init__(self, fail_after: int | None = None):
        self.calls, self.fail_after = [], fail_after

    def generate(self, conversations, temperature, seed=0):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls.append({"conversations": [list(c) for c in conversations], "temperature": temperature,
                           "seed": seed})
        return [f"answer {len(c) // 2 + 1} to {c[-1]['content']} (seed {seed % 97})" for c in conversations]


def test_fastchat_temperatures():
    assert [category_temperature(c) for c in ("writing", "roleplay", "extraction", "math", "coding", "reasoning",
                                              "stem", "humanities", "unknown")] == [0.7, 0.7, 0, 0, 0, 0, 0.1, 0.1, 0.7]


def test_batch_plan_groups_by_temperature_in_file_order():
    plan = batch_plan(QUESTIONS, lambda q: category_temperature(q["category"]), batch_size=2)
    assert [[q["question_id"] for q in b] for b in plan] == [[1, 4], [5], [2], [3]]


def test_second_turn_sees_the_models_own_first_answer(tmp_path):
    gen = EchoGenerator()
    report = generate_mt_bench_answers(QUESTIONS, gen, "echo-model", tmp_path, batch_size=2)
    assert (report.n_items, report.n_generated, report.n_skipped, report.n_failed) == (5, 5, 0, 0)
    records = [json.loads(line) for line in (tmp_path / "echo-model.jsonl").read_text().splitlines()]
    assert {r["question_id"] for r in records} == {1, 2, 3, 4, 5}
    for r in records:
        assert set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
        assert r["model_id"] == "echo-model" and len(r["choices"][0]["turns"]) == 2
    # Each turn-2 request holds question 1, the model's own answer 1, then question 2.
    by_qid = {r["question_id"]: r["choices"][0]["turns"] for r in records}
    second_turn_calls = [c for c in gen.calls if len(c["conversations"][0]) == 3]
    for call in second_turn_calls:
        for conv in call["conversations"]:
            qid = next(q["question_id"] for q in QUESTIONS if q["turns"][0] == conv[0]["content"])
            assert conv[1] == {"role": "assistant", "content": by_qid[qid][0]}
            assert conv[2]["content"] == next(q for q in QUESTIONS if q["question_id"] == qid)["turns"][1]
    # Temperatures by category: writing/roleplay 0.7, math 0.0, stem 0.1.
    category = {q["turns"][0]: q["category"] for q in QUESTIONS}
    for call in gen.calls:
        assert {category_temperature(category[c[0]["content"]]) for c in call["conversations"]} == {call["temperature"]}
    assert sorted({c["temperature"] for c in gen.calls}) == [0.0, 0.1, 0.7]


def test_killed_run_resumes_to_the_same_answers(tmp_path):
    whole = tmp_path / "whole"
    generate_mt_bench_answers(QUESTIONS, EchoGenerator(), "m", whole, batch_size=2)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        generate_mt_bench_answers(QUESTIONS, EchoGenerator(fail_after=3), "m", part, batch_size=2)
    first = [json.loads(line)["question_id"] for line in (part / "m.jsonl").read_text().splitlines()]
    assert first == [1, 4]  # the first batch (two turns) was written whole; the second died mid-batch
    gen = EchoGenerator()
    report = generate_mt_bench_answers(QUESTIONS, gen, "m", part, batch_size=2)
    assert (report.n_generated, report.n_skipped) == (3, 2)
    turns = lambda d: {json.loads(line)["question_id"]: json.loads(line)["choices"][0]["turns"]
                       for line in (d / "m.jsonl").read_text().splitlines()}
    assert turns(part) == turns(whole)
    # A third run has nothing to do.
    again = EchoGenerator()
    assert generate_mt_bench_answers(QUESTIONS, again, "m", part, batch_size=2).n_generated == 0 and not again.calls


def test_tiny_policy_answers_with_its_chat_template(tmp_path):
    from starling_lib.policy.pipeline import load_policy

    cfg = get_preset("smoke")
    model, tokenizer = load_policy(cfg)
    gen = HFChatGenerator(model, tokenizer, max_new_tokens=8)
    report = generate_mt_bench_answers(QUESTIONS[:3], gen, "tiny", tmp_path, batch_size=2)
    assert report.n_generated == 3
    records = [json.loads(line) for line in (tmp_path / "tiny.jsonl").read_text().splitlines()]
    assert all(len(r["choices"][0]["turns"]) == 2 for r in records)
    # Greedy (math, T=0) is deterministic: the same conversation gives the same answer again.
    conv = [{"role": "user", "content": QUESTIONS[1]["turns"][0]}]
    assert gen.generate([conv], 0.0) == gen.generate([conv], 0.0, seed=5)
    torch.manual_seed(0)
    a = gen.generate([conv, conv], 1.0, seed=1)
    b = gen.generate([conv, conv], 1.0, seed=1)
    assert a == b  # sampling is seeded by the call, not by the global generator


def test_server_generator_and_alpaca_outputs_resume(tmp_path):
    instructions, references = alpaca_demo_set(6)
    assert len(instructions) == 6 and all(r["generator"] == "tiny-rambler" for r in references)
    assert all(isinstance(instruction_gold(r["instruction"], r["output"]), float) for r in references)

    def responder(body):
        if "poem" in body["messages"][-1]["content"]:
            from starling_lib.judge.server import HTTPFault
            raise HTTPFault(400, "this server does not write poems")
        return f"reply at T={body.get('temperature')}"

    with FakeOpenAIServer(responder) as server:
        client = JudgeClient(base_url=server.base_url, cache_path=tmp_path / "cache.sqlite", progress=False,
                             log=lambda line: None, model="served-model")
        gen = ServerChatGenerator(client, max_tokens=32)
        outputs, report = generate_alpaca_outputs(instructions, gen, "served-model", tmp_path / "out.json",
                                                  batch_size=4, temperature=0.0)
        n_poems = sum("poem" in i["instruction"] for i in instructions)
        assert report.n_failed == n_poems and len(report.failed_ids) == n_poems
        assert [o["instruction"] for o in outputs] == [i["instruction"] for i in instructions]
        assert {o["output"] for o in outputs} <= {"reply at T=0.0", ERROR_ANSWER}
        assert json.loads((tmp_path / "out.json").read_text()) == outputs
        assert not (tmp_path / "out.json.partial.jsonl").exists()
        sent = server.stats.requests
        again, report2 = generate_alpaca_outputs(instructions, gen, "served-model", tmp_path / "out.json")
        assert again == outputs and report2.n_generated == 0 and server.stats.requests == sent
        client.close()
