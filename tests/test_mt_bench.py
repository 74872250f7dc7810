"""MT-Bench loading, judging and scoring (FastChat llm_judge semantics) over a real local HTTP judge."""

import json
from pathlib import Path

import pytest

from starling_lib.config import JudgeConfig
from starling_lib.evaluation.answers import ERROR_ANSWER, category_temperature
from starling_lib.evaluation.mt_bench import (
    DEMO_DIR, NEED_REF_CATS, Question, build_pairwise_requests, build_single_requests,
    judge_pairwise, judge_single, load_judge_prompts, load_model_answers, load_questions, load_references,
    pairwise_win_rate, parse_pair_verdict, parse_rating, read_judgments, score_single, write_judgments)
from starling_lib.evaluation.mt_bench.demo import build_demo_set, simulate_answers
from starling_lib.evaluation.simulated import SimulatedMTBenchJudge
from starling_lib.judge.server import HTTPFault
from starling_lib.paths import shared_data

CATEGORIES = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")




@pytest.fixture(scope="module")
def real():
    """FastChat v0.2.36's MT-Bench files under ../shared/data/mt_bench; skips when absent."""
    path = shared_data("mt_bench")
    if path is None:
        pytest.skip("MT-Bench reference data not present (../shared/data/mt_bench)")
    return {"questions": load_questions(path / "question.jsonl"),
            "prompts": load_judge_prompts(path / "judge_prompts.jsonl"),
            "references": load_references(path / "reference_answer")}


@pytest.fixture(scope="module")
def demo():
    return {"questions": load_questions(DEMO_DIR / "question.jsonl"),
            "prompts": load_judge_prompts(DEMO_DIR / "judge_prompts.jsonl"),
            "references": load_references(DEMO_DIR / "reference_answer")}


def made_up_answers(questions, tag="m"):
    return {q.question_id: [f"{tag} answer to question {q.question_id}, turn {t}." for t in (1, 2)]
            for q in questions}


# ---- loading -------------------------------------------------------------------------------------

def test_real_files_load(real):
    questions, prompts, references = real["questions"], real["prompts"], real["references"]
    assert len(questions) == 80 and len(prompts) == 8 and len(references) == 30
    assert {c: sum(q.category == c for q in questions) for c in CATEGORIES} == dict.fromkeys(CATEGORIES, 10)
    assert set(prompts) == {"pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn", "single-v1",
                            "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"}
    assert sorted(references) == list(range(101, 131)) and all(len(t) == 2 for t in references.values())
    # Every reference category has a reference for every question.
    assert all(q.question_id in references for q in questions if q.category in NEED_REF_CATS)


def test_prompt_selection_matches_fastchat(real):
    questions, prompts, refs = real["questions"], real["prompts"], real["references"]
    answers = made_up_answers(questions)
    requests, plan, problems = build_single_requests(questions, answers, "m", prompts, refs)
    assert problems == [] and len(requests) == 160
    by_id = {r.id: (r, p) for r, p in zip(requests, plan)}

    req, item = by_id["m/101/t1"]  # reasoning: reference-guided, the reference filled in
    assert item["prompt_name"] == "single-math-v1" and item["category"] == "reasoning"
    assert req.messages[0] == {"role": "system", "content": prompts["single-math-v1"].system_prompt}
    # FastChat sends temperature 0 and max_tokens 2048; our max_tokens is judge.max_tokens (2048 by default),
    # so a judge with a short context can be given less
    assert req.params == {"temperature": 0} and JudgeConfig().max_tokens == 2048
    user = req.messages[1]["content"]
    assert refs[101][0] in user and answers[101][0] in user and questions[20].turns[0] in user
    assert refs[101][1] not in user and answers[101][1] not in user

    req, item = by_id["m/81/t2"]  # writing, turn 2: both questions and both answers
    assert item["prompt_name"] == "single-v1-multi-turn"
    user = req.messages[1]["content"]
    assert all(text in user for text in questions[0].turns + answers[81])

    req, item = by_id["m/111/t2"]  # math, turn 2: both references too
    assert item["prompt_name"] == "single-math-v1-multi-turn"
    assert refs[111][0] in req.messages[1]["content"] and refs[111][1] in req.messages[1]["content"]
    assert by_id["m/81/t1"][1]["prompt_name"] == "single-v1"
    assert by_id["m/141/t1"][1]["prompt_name"] == "single-v1"  # stem has a reference field, but is not in NEED_REF_CATS

    # Pairwise: pair-v2 for writing, both orders.
    requests, plan, _ = build_pairwise_requests(questions, answers, made_up_answers(questions, "x"), "m", "x",
                                                prompts, refs, turns=(1,))
    g1, g2 = requests[0], requests[1]
    assert plan[0]["prompt_name"] == "pair-v2" and (g1.id, g2.id) == ("m~x/81/t1/g1", "m~x/81/t1/g2")
    assert g1.messages[1]["content"].index("m answer") < g1.messages[1]["content"].index("x answer")
    assert g2.messages[1]["content"].index("x answer") < g2.messages[1]["content"].index("m answer")
    assert {p["prompt_name"] for p in plan if p["category"] == "math"} == {"pair-math-v1"}


def test_demo_set_is_what_the_generator_writes(tmp_path, demo):
    paths = build_demo_set(tmp_path)
    for path in paths:
        committed = DEMO_DIR / path.relative_to(tmp_path)
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: --write-demo"
    assert sum(p.stat().st_size for p in paths) < 20_000
    questions, prompts, references = demo["questions"], demo["prompts"], demo["references"]
    assert 24 <= len(questions) <= 40 and all(len(q.turns) == 2 for q in questions)
    assert all(q.turns[1].startswith("Thanks. ") for q in questions)
    # Every answer temperature group and the reference-guided path occur; references are strong.
    assert {category_temperature(q.category) for q in questions} == {0.0, 0.1, 0.7}
    ref_ids = {q.question_id for q in questions if q.category in NEED_REF_CATS}
    assert ref_ids and set(references) == ref_ids
    assert {p.name: (p.type, p.output_format) for p in prompts.values()} == {
        n: (p.type, p.output_format) for n, p in load_judge_prompts(_fastchat_like_prompts(tmp_path)).items()}


def _fastchat_like_prompts(tmp_path: Path) -> Path:
    """FastChat's 8 names with their types and output formats (minimal templates)."""
    layouts = {"single-v1": "{question} {answer}", "single-math-v1": "{question} {ref_answer_1} {answer}",
               "single-v1-multi-turn": "{question_1} {answer_1} {question_2} {answer_2}",
               "single-math-v1-multi-turn": "{ref_answer_1} {ref_answer_2} {answer_1} {answer_2}",
               "pair-v2": "{question} {answer_a} {answer_b}", "pair-math-v1": "{ref_answer_1} {answer_a} {answer_b}",
               "pair-v2-multi-turn": "{answer_a_1} {answer_a_2} {answer_b_1} {answer_b_2}",
               "pair-math-v1-multi-turn": "{ref_answer_2} {answer_a_2} {answer_b_2}"}
    path = tmp_path / "fastchat_like.jsonl"
    path.write_text("".join(json.dumps({
        "name": n, "type": "single" if n.startswith("single") else "pairwise", "system_prompt": "",
        "prompt_template": t, "output_format": "[[rating]]" if n.startswith("single") else "[[A]]"}) + "\n"
        for n, t in layouts.items()))
    return path


GOOD_QUESTION = '{"question_id": 1, "category": "writing", "turns": ["a", "b"]}'
GOOD_PROMPT = {"name": "single-v1", "type": "single", "system_prompt": "s",
               "prompt_template": "{question} {answer}", "output_format": "[[rating]]"}


@pytest.mark.parametrize("lines, message", [
    ([GOOD_QUESTION, "{not json"], ":2: not valid JSON"),
    ([GOOD_QUESTION, GOOD_QUESTION], ":2: duplicate question_id 1 (first at line 1)"),
    (['{"question_id": 2, "turns": ["a"]}'], ":1: missing field 'category'"),
    (['{"question_id": "2", "category": "x", "turns": ["a"]}'], ":1: field 'question_id' must be an integer"),
    (['{"question_id": 2, "category": "x", "turns": "a"}'], ":1: field 'turns' must be a non-empty list of strings"),
    (["[1, 2]"], ":1: expected a JSON object"),
])
def test_question_loader_errors_name_file_line_and_field(tmp_path, lines, message):
    path = tmp_path / "question.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as info:
        load_questions(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


@pytest.mark.parametrize("change, message", [
    ({"prompt_template": "{question} {answer_a}"}, "placeholders ['answer_a'] are not allowed in a single prompt"),
    ({"name": "single-v1-multi-turn"}, "placeholders ['answer', 'question'] are not allowed"),
    ({"prompt_template": "{question}"}, "prompt_template lacks ['answer']"),
    ({"prompt_template": "{question} {answer"}, "not a valid format string"),
    ({"type": "ranking"}, "field 'type' must be 'single' or 'pairwise'"),
    ({"output_format": "[[A]]"}, "a single prompt must have output_format '[[rating]]'"),
    ({"system_prompt": None}, "field 'system_prompt' must be a string"),
])
def test_judge_prompt_loader_errors(tmp_path, change, message):
    path = tmp_path / "judge_prompts.jsonl"
    path.write_text(json.dumps({"name": "pair-v2", "type": "pairwise", "system_prompt": "s",
                                "prompt_template": "{question}{answer_a}{answer_b}", "output_format": "[[A]]"})
                    + "\n" + json.dumps({**GOOD_PROMPT, **change}) + "\n")
    with pytest.raises(ValueError, match=f"^{path}:2: .*") as info:
        load_judge_prompts(path)
    assert message in str(info.value)


def test_model_answers_load_from_a_file_or_a_folder(tmp_path):
    row = {"question_id": 5, "answer_id": "x", "model_id": "alpha", "choices": [{"index": 0, "turns": ["a", "b"]}]}
    (tmp_path / "alpha.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "beta.jsonl").write_text(json.dumps({**row, "question_id": 6}) + "\n")
    assert load_model_answers(tmp_path) == {"alpha": {5: ["a", "b"]}, "beta": {6: ["a", "b"]}}
    assert load_model_answers(tmp_path / "beta.jsonl") == {"beta": {6: ["a", "b"]}}
    with pytest.raises(ValueError, match="pass model_id"):
        load_references(tmp_path)
    (tmp_path / "beta.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "choices": [{"turns": [1]}]}))
    with pytest.raises(ValueError, match=r"beta.jsonl:2: duplicate question_id 5"):
        load_model_answers(tmp_path)
    (tmp_path / "beta.jsonl").write_text(json.dumps({**row, "choices": [{"turns": [1]}]}))
    with pytest.raises(ValueError, match=r"beta.jsonl:1: choices\[0\]: field 'turns' must be a non-empty list"):
        load_model_answers(tmp_path)


# ---- parsing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, rating", [
    ("Good answer. Rating: [[7]]", 7.0), ("[[8.5]]", 8.5), ("Rating: [7]", 7.0), ("[[10]] and later [3]", 10.0),
    ("Rating: [[1]]", 1.0)])
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", ["Rating: [[11]]", "no rating", "[[0]]", "Rating: 7", ""])
def test_parse_rating_rejects(text):
    with pytest.raises(ValueError):
        parse_rating(text)


@pytest.mark.parametrize("text, verdict", [
    ("A is better. [[A]]", "A"), ("[[B]]", "B"), ("Equally good: [[C]]", "tie"),
    ("[[B]] no wait [[A]]", "A")])  # FastChat checks [[A]] first
def test_parse_pair_verdict(text, verdict):
    assert parse_pair_verdict(text) == verdict


@pytest.mark.parametrize("text", ["A", "[A]", "[[D]]", "Assistant A is better."])
def test_parse_pair_verdict_rejects(text):
    with pytest.raises(ValueError):
        parse_pair_verdict(text)


# ---- full runs over HTTP ---------------------------------------------------------------------------

def test_full_real_mt_bench_run_gives_160_judgments(real, serve, make_client):
    server = serve(responder=SimulatedMTBenchJudge().respond)
    client = make_client(server)
    answers = {"m": made_up_answers(real["questions"])}
    rows, report = judge_single(real["questions"], answers, real["prompts"], client, references=real["references"])
    assert len(rows) == 160 and report["n_ok"] == 160 and report["n_skipped"] == 0
    assert all(1 <= r["score"] <= 10 and r["failure"] is None for r in rows)
    assert {tuple(r["judge"]) for r in rows if r["category"] == "math"} == {
        ("tiny-judge", "single-math-v1"), ("tiny-judge", "single-math-v1-multi-turn")}
    scores = score_single(rows)["m"]
    assert scores["n_judgments"] == 160 and scores["n_failed"] == 0 and set(scores["by_category"]) == set(CATEGORIES)


def test_demo_run_ranks_simulated_models_by_quality(demo, serve, make_client):
    server = serve(responder=SimulatedMTBenchJudge().respond)
    client = make_client(server)
    models = ("tiny-gpt-4", "tiny-offtopic")
    answers = {m: simulate_answers(demo["questions"], m) for m in models}
    rows, report = judge_single(demo["questions"], answers, demo["prompts"], client, references=demo["references"])
    n = 2 * len(demo["questions"])
    assert len(rows) == 2 * n and report["n_ok"] == 2 * n and report["n_sent"] == 2 * n
    scores = score_single(rows)
    assert scores["tiny-gpt-4"]["overall"] > scores["tiny-offtopic"]["overall"] + 2
    assert {r["judge"][1] for r in rows} == {"single-v1", "single-math-v1", "single-v1-multi-turn",
                                             "single-math-v1-multi-turn"}


def test_garbage_judgments_fail_after_bounded_retries_and_missing_inputs_are_reported(demo, serve, make_client):
    judge = SimulatedMTBenchJudge()

    def sometimes_garbage(body):  # always garbage for the bees questions: retries cannot help
        return "I like both." if "bees" in body["messages"][1]["content"] else judge.respond(body)

    server = serve(responder=sometimes_garbage)
    client = make_client(server, max_retries=2)
    questions = demo["questions"]
    answers = simulate_answers(questions, "tiny-gpt-3.5")
    del answers[2]
    answers[999] = ["an answer", "to nothing"]
    answers[3] = answers[3][:1]  # turn 2 missing
    answers[4] = [answers[4][0], ERROR_ANSWER]  # generation failed on turn 2 (FastChat's marker)
    rows, report = judge_single(questions, {"m": answers}, demo["prompts"], client, references=demo["references"])

    bees = [r for r in rows if "bees" in r["user_prompt"]]
    assert bees and all(r["score"] is None and r["failure"].startswith("invalid_answer") for r in bees)
    assert report["n_failed"] == len(bees) == report["failures"]["invalid_answer"]
    assert server.stats.requests == report["n_sent"] == (len(rows) - len(bees)) + 3 * len(bees)
    skipped = report["skipped"]
    assert skipped["missing_answer"]["count"] == 2 and skipped["missing_answer"]["question_ids"] == [2]
    assert skipped["answer_too_short"]["count"] == 1 and skipped["answer_too_short"]["question_ids"] == [3]
    assert skipped["error_answer"]["count"] == 1 and skipped["error_answer"]["question_ids"] == [4]
    assert not [r for r in rows if r["question_id"] == 4 and r["turn"] == 2]
    assert skipped["unknown_question"]["count"] == 1 and skipped["unknown_question"]["question_ids"] == [999]
    assert len(rows) == 2 * len(questions) - 4
    scores = score_single(rows)["m"]
    assert scores["n_failed"] == len(bees) and scores["n_judgments"] == len(rows) - len(bees)


def test_reference_category_without_reference_is_skipped(demo, serve, make_client):
    server = serve(responder=SimulatedMTBenchJudge().respond)
    questions = [q for q in demo["questions"] if q.category == "reasoning"][:2]
    references = {questions[0].question_id: demo["references"][questions[0].question_id]}
    rows, report = judge_single(questions, {"m": simulate_answers(questions, "tiny-gpt-4")}, demo["prompts"],
                                make_client(server), references=references)
    assert len(rows) == 2 and report["skipped"]["missing_reference"]["question_ids"] == [questions[1].question_id]
    # The question's own reference field counts as a reference.
    with_field = [Question(q.question_id, q.category, q.turns, ["ref one", "ref two"]) for q in questions]
    _, _, problems = build_single_requests(with_field, made_up_answers(with_field), "m", demo["prompts"])
    assert problems == []


def test_resumed_run_sends_nothing_and_scores_the_same(demo, serve, make_client, tmp_path):
    server = serve(responder=SimulatedMTBenchJudge().respond)
    answers = {"tiny-mistral": simulate_answers(demo["questions"], "tiny-mistral")}
    args = (demo["questions"], answers, demo["prompts"])
    first, report1 = judge_single(*args, make_client(server), references=demo["references"])
    sent = server.stats.requests
    second, report2 = judge_single(*args, make_client(server), references=demo["references"])
    assert report1["n_sent"] == sent > 0 and report2["n_sent"] == 0 and server.stats.requests == sent
    assert report2["n_cached"] == len(second)
    assert score_single(first) == score_single(second)
    path = write_judgments(tmp_path / "model_judgment" / "tiny-judge_single.jsonl", second)
    assert score_single(read_judgments(path)) == score_single(second)


def test_pairwise_prefers_the_better_model_and_pure_position_bias_ties(demo, serve, make_client):
    questions, prompts = demo["questions"], demo["prompts"]
    answers = {m: simulate_answers(questions, m) for m in ("tiny-gpt-4", "tiny-refuser")}
    server = serve(responder=SimulatedMTBenchJudge().respond)
    rows, report = judge_pairwise(questions, answers, prompts, make_client(server), "tiny-refuser", "tiny-gpt-4",
                                  references=demo["references"])
    assert len(rows) == 2 * len(questions) and report["n_ok"] == 4 * len(questions)
    assert pairwise_win_rate(rows, "tiny-gpt-4")["win_rate"] > 0.7
    assert {r["judge"][1] for r in rows} == {"pair-v2", "pair-math-v1", "pair-v2-multi-turn", "pair-math-v1-multi-turn"}

    always_a = serve(responder=lambda body: "The first one. [[A]]")
    rows, _ = judge_pairwise(questions, answers, prompts, make_client(always_a, cache="a.sqlite"),
                             "tiny-refuser", "tiny-gpt-4", references=demo["references"])
    assert all(r["g1_winner"] == "model_1" and r["g2_winner"] == "model_2" and r["winner"] == "tie" for r in rows)
    rate = pairwise_win_rate(rows, "tiny-gpt-4")
    assert rate == {"wins": 0, "losses": 0, "ties": len(rows), "n": len(rows), "n_failed": 0, "win_rate": 0.5}


def test_pairwise_game_that_fails_excludes_the_pair(demo, serve, make_client):
    questions = demo["questions"][:3]
    answers = {"m": made_up_answers(questions, "m"), "x": made_up_answers(questions, "x")}

    def garbage_when_x_is_shown_first_on_question_1(body):
        user = body["messages"][1]["content"]
        if "question 1, turn 1." in user and "turn 2." not in user and user.index("x answer") < user.index("m answer"):
            return "Both are fine."
        return "[[A]]"

    server = serve(responder=garbage_when_x_is_shown_first_on_question_1)
    rows, report = judge_pairwise(questions, answers, demo["prompts"], make_client(server, max_retries=1), "m", "x")
    failed = [r for r in rows if r["winner"] is None]
    assert [(r["question_id"], r["turn"]) for r in failed] == [(1, 1)]
    assert failed[0]["g1_winner"] == "model_1" and failed[0]["g2_winner"] == "error"
    assert failed[0]["failure"].startswith("invalid_answer") and report["n_failed"] == 1
    assert pairwise_win_rate(rows, "m") == {"wins": 0, "losses": 0, "ties": 5, "n": 5, "n_failed": 1,
                                            "win_rate": 0.5}


def test_pairwise_win_rate_hand_checked():
    def row(g1, g2, winner):
        return {"model_1": "a", "model_2": "b", "g1_winner": g1, "g2_winner": g2, "winner": winner}

    rows = [row("model_1", "model_1", "a"), row("model_1", "model_1", "a"), row("model_2", "model_2", "b"),
            row("model_1", "model_2", "tie"), row("tie", "tie", "tie"), row("model_1", "error", None)]
    # a: 2 wins, 1 loss, 2 ties over 5 valid pairs -> (2 + 0.5 * 2) / 5 = 0.6
    assert pairwise_win_rate(rows, "a") == {"wins": 2, "losses": 1, "ties": 2, "n": 5, "n_failed": 1, "win_rate": 0.6}
    assert pairwise_win_rate(rows, "b")["win_rate"] == pytest.approx(0.4)
    assert pairwise_win_rate(rows, "c")["win_rate"] is None


# ---- scores -------------------------------------------------------------------------------------------

def test_score_single_hand_checked():
    def row(model, qid, turn, score, category):
        return {"model": model, "question_id": qid, "turn": turn, "score": score, "category": category}

    rows = [row("a", 1, 1, 8.0, "writing"), row("a", 1, 2, 6.0, "writing"), row("a", 2, 1, 10.0, "math"),
            row("a", 2, 2, None, "math"), row("a", 3, 1, -1, "math"),  # a failure in ours, and FastChat's -1
            row("b", 1, 1, 3.0, "writing"), row("b", 1, 2, 5.0, "writing")]
    scores = score_single(rows)
    # a: turn 1 = (8 + 10) / 2 = 9; turn 2 = 6; overall over valid judgments = (8 + 6 + 10) / 3 = 8
    assert scores["a"] == {"turn_1": 9.0, "turn_2": 6.0, "overall": 8.0, "n_judgments": 3, "n_failed": 2,
                           "by_category": {"math": 10.0, "writing": 7.0}}
    assert scores["b"] == {"turn_1": 3.0, "turn_2": 5.0, "overall": 4.0, "n_judgments": 2, "n_failed": 0,
                           "by_category": {"writing": 4.0}}
    assert score_single([]) == {}


# ---- the simulated judge ---------------------------------------------------------------------------

def test_simulated_judge_rating_formula():
    judge = SimulatedMTBenchJudge(noise=0.0, center=2.0, scale=1.0)
    # 1 + 9 sigmoid(0) = 5.5 -> 6 (half to even); 1 + 9 sigmoid(3) = 9.57 -> 10; 1 + 9 sigmoid(-3) = 1.43 -> 1
    assert [judge.rating(g, None) for g in (2.0, 5.0, -1.0)] == [6, 10, 1]
    assert judge.verdict(1.0, 1.0, None) == "C"
    body = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hello"}]}
    with pytest.raises(ValueError, match="not an MT-Bench judge prompt"):
        judge.read_prompt("hello")
    with pytest.raises(HTTPFault):  # the server answers 422: the client fails it without retrying
        judge.respond(body)


def test_simulated_judge_reads_demo_and_fastchat_layouts(demo):
    judge = SimulatedMTBenchJudge()
    question = Question(1, "writing", ["Tell me about bees.", "Thanks. Write a short poem about it."])
    answer = {1: ["Bees make honey in the hive because of pollen.", "Honey in the hive,\nPollen bright,\nBees"]}
    real = shared_data("mt_bench")
    prompt_sets = [demo["prompts"]] + ([load_judge_prompts(real / "judge_prompts.jsonl")] if real else [])
    for prompts in prompt_sets:
        requests, _, _ = build_single_requests([question], answer, "m", prompts)
        for request in requests:
            fields = judge.read_prompt(request.messages[1]["content"])
            assert fields.get("question", fields.get("question_2")) in question.turns
            assert fields.get("answer", fields.get("answer_2")) in answer[1]
