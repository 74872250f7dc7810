"""Grade MT-Bench answers with an LLM judge, as FastChat's ``gen_judgment.py`` does.

Single mode rates each answer 1-10; pairwise mode compares two models in both orders. Requests go
through :class:`~starling_lib.judge.client.JudgeClient` (concurrent, retried, cached, resumable);
see the package docstring for FastChat's prompt choice and where we differ.
"""

from __future__ import annotations

import re
import time
from typing import Iterable

from starling_lib.evaluation.answers import ERROR_ANSWER
from starling_lib.evaluation.mt_bench.files import JudgePrompt, Question
from starling_lib.judge.records import JudgeRequest

NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # FastChat common.py
# FastChat's chat_completion_openai sends temperature 0 and max_tokens 2048; max_tokens is left to
# judge.max_tokens (default 2048, the same requests and cache keys), so a judge with a short context
# can be asked for less (starling_lib.judge.context checks it fits).
JUDGE_PARAMS = {"temperature": 0}

# FastChat common.py one_score_pattern / one_score_pattern_backup.
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")


# ---- parsing the judge's answers ---------------------------------------------------------------

def parse_rating(text: str) -> float:
    """The 1-10 rating in a single-answer judgment (FastChat's patterns); ``ValueError`` if none."""
    match = ONE_SCORE_PATTERN.search(text) or ONE_SCORE_PATTERN_BACKUP.search(text)
    if match is None:
        raise ValueError(f"no [[rating]] in the judgment: {text[-80:]!r}")
    rating = float(match.group(1))
    if not 1 <= rating <= 10:
        raise ValueError(f"rating {rating:g} is outside 1-10")
    return rating


def parse_pair_verdict(text: str) -> str:
    """``"A"``, ``"B"`` or ``"tie"`` from ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (FastChat's order)."""
    for mark, verdict in (("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie")):
        if mark in text:
            return verdict
    raise ValueError(f"no [[A]] / [[B]] / [[C]] verdict in the judgment: {text[-80:]!r}")


# ---- building requests -----------------------------------------------------------------------

def _prompt_name(mode: str, needs_ref: bool, turn: int) -> str:
    base = {("single", False): "single-v1", ("single", True): "single-math-v1",
            ("pairwise", False): "pair-v2", ("pairwise", True): "pair-math-v1"}[mode, needs_ref]
    return base + ("-multi-turn" if turn == 2 else "")


def _turn_fields(name: str, turns: list[str], turn: int) -> dict:
    """Turn 1: ``{name: turns[0]}``; turn 2: ``{name_1: turns[0], name_2: turns[1]}``."""
    return {name: turns[0]} if turn == 1 else {f"{name}_1": turns[0], f"{name}_2": turns[1]}


def _why_skipped(question: Question, answers: list[list[str] | None], reference, turn: int) -> str | None:
    """Why ``question`` at ``turn`` cannot be judged for these answers, or ``None``."""
    if len(question.turns) < turn:
        return "question_too_short"  # FastChat skips turn 2 of one-turn questions
    if any(a is None for a in answers):
        return "missing_answer"
    if any(len(a) < turn for a in answers):
        return "answer_too_short"
    if any(a[turn - 1] == ERROR_ANSWER for a in answers):
        return "error_answer"  # generation failed ($ERROR$); FastChat would grade the marker
    if question.category in NEED_REF_CATS and (reference is None or len(reference) < turn):
        return "missing_reference"
    return None


def _check_turns(turns: Iterable[int]) -> tuple[int, ...]:
    turns = tuple(turns)
    if not turns or set(turns) - {1, 2}:
        raise ValueError(f"turns must be drawn from (1, 2), got {turns}")
    return turns


def _prompt(judge_prompts: dict[str, JudgePrompt], name: str) -> JudgePrompt:
    if name not in judge_prompts:
        raise ValueError(f"judge prompt {name!r} is missing (have {sorted(judge_prompts)})")
    return judge_prompts[name]


def _plan_requests(mode: str, questions: list[Question], answers: dict[str, dict[int, list[str]]],
                   judge_prompts: dict[str, JudgePrompt], references_by_qid, turns) -> tuple[list, list]:
    """``(plan, problems)``: one plan entry per judgeable (question, turn), with its fields."""
    turns = _check_turns(turns)
    references_by_qid = references_by_qid or {}
    known = {q.question_id for q in questions}
    problems = [{"kind": "unknown_question", "model": model, "question_id": qid, "turn": None}
                for model, by_qid in answers.items() for qid in sorted(set(by_qid) - known)]
    plan = []
    for turn in turns:
        for q in questions:
            reference = references_by_qid.get(q.question_id, q.reference)
            model_answers = [by_qid.get(q.question_id) for by_qid in answers.values()]
            why = _why_skipped(q, model_answers, reference, turn)
            if why is not None:
                missing = [m for m, a in zip(answers, model_answers) if a is None or len(a) < turn]
                problems.append({"kind": why, "model": "/".join(missing or answers),
                                 "question_id": q.question_id, "turn": turn})
                continue
            needs_ref = q.category in NEED_REF_CATS
            fields = _turn_fields("question", q.turns, turn)
            if needs_ref:  # ref_answer_1 always; ref_answer_2 for the second turn
                fields.update({f"ref_answer_{i + 1}": reference[i] for i in range(turn)})
            prompt = _prompt(judge_prompts, _prompt_name(mode, needs_ref, turn))
            plan.append({"question": q, "turn": turn, "prompt": prompt, "fields": fields,
                         "answers": model_answers})
    return plan, problems


def build_single_requests(questions: list[Question], answers_by_qid: dict[int, list[str]], model_id: str,
                          judge_prompts: dict[str, JudgePrompt], references_by_qid: dict | None = None,
                          turns: Iterable[int] = (1, 2)):
    """``(requests, plan, problems)`` to grade ``model_id``'s answers one by one (FastChat single mode).

    ``plan[i]`` describes ``requests[i]`` (question_id, model, turn, category, prompt_name,
    user_prompt); ``problems`` lists what was skipped and why (``kind``).
    """
    entries, problems = _plan_requests("single", questions, {model_id: answers_by_qid}, judge_prompts,
                                       references_by_qid, turns)
    requests, plan = [], []
    for e in entries:
        q, turn = e["question"], e["turn"]
        messages = e["prompt"].messages({**e["fields"], **_turn_fields("answer", e["answers"][0], turn)})
        requests.append(JudgeRequest(f"{model_id}/{q.question_id}/t{turn}", messages, dict(JUDGE_PARAMS)))
        plan.append({"question_id": q.question_id, "model": model_id, "turn": turn, "category": q.category,
                     "prompt_name": e["prompt"].name, "user_prompt": messages[1]["content"]})
    return requests, plan, problems


def build_pairwise_requests(questions: list[Question], answers_a: dict[int, list[str]],
                            answers_b: dict[int, list[str]], model_a: str, model_b: str,
                            judge_prompts: dict[str, JudgePrompt], references_by_qid: dict | None = None,
                            turns: Iterable[int] = (1, 2)):
    """``(requests, plan, problems)``: two requests per (question, turn), ``model_a`` first, then swapped."""
    if model_a == model_b:
        raise ValueError("pairwise judging needs two different models")
    entries, problems = _plan_requests("pairwise", questions, {model_a: answers_a, model_b: answers_b},
                                       judge_prompts, references_by_qid, turns)
    requests, plan = [], []
    for e in entries:
        q, turn, (first, second) = e["question"], e["turn"], e["answers"]
        item = {"question_id": q.question_id, "model_1": model_a, "model_2": model_b, "turn": turn,
                "category": q.category, "prompt_name": e["prompt"].name}
        for game, (shown_a, shown_b) in (("g1", (first, second)), ("g2", (second, first))):
            fields = {**e["fields"], **_turn_fields("answer_a", shown_a, turn),
                      **_turn_fields("answer_b", shown_b, turn)}
            messages = e["prompt"].messages(fields)
            requests.append(JudgeRequest(f"{model_a}~{model_b}/{q.question_id}/t{turn}/{game}",
                                         messages, dict(JUDGE_PARAMS)))
            plan.append({**item, "game": game, "user_prompt": messages[1]["content"]})
    return requests, plan, problems


# ---- running the judge -------------------------------------------------------------------------

def _run(client, requests: list, validate, desc: str):
    """``client.run`` with ``validate`` for this run only (ratings and verdicts differ)."""
    saved = client.validate
    client.validate = validate
    try:
        return client.run(requests, desc=desc)
    finally:
        client.validate = saved


def _run_report(mode: str, run, problems: list[dict]) -> dict:
    skipped: dict[str, dict] = {}
    for p in problems:
        entry = skipped.setdefault(p["kind"], {"count": 0, "question_ids": [], "items": []})
        entry["count"] += 1
        entry["items"].append(p)
        if p["question_id"] not in entry["question_ids"]:
            entry["question_ids"].append(p["question_id"])
    return {"mode": mode, "judge": run.model, "n_requests": len(run.results), "n_ok": run.n_ok,
            "n_failed": run.n_failed, "failures": dict(run.failures), "n_sent": run.n_sent,
            "n_cached": run.n_cached, "cost_usd": run.cost_usd, "n_skipped": len(problems),
            "skipped": skipped}


def judge_single(questions: list[Question], answers_by_model: dict[str, dict[int, list[str]]],
                 judge_prompts: dict[str, JudgePrompt], client, *, references: dict | None = None,
                 model_ids: Iterable[str] | None = None, turns: Iterable[int] = (1, 2)):
    """Grade every model's answers 1-10 (FastChat ``--mode single``): ``(judgment rows, report)``.

    Rows have FastChat's ``model_judgment/<judge>_single.jsonl`` fields plus ``category`` and
    ``failure`` (the client's reason, ``score`` ``None``). ``references``: ``{question_id: turns}``.
    """
    requests, plan, problems = [], [], []
    for model in (list(model_ids) if model_ids is not None else sorted(answers_by_model)):
        r, p, pr = build_single_requests(questions, answers_by_model.get(model, {}), model, judge_prompts,
                                         references, turns)
        requests += r
        plan += p
        problems += pr
    run = _run(client, requests, parse_rating, "mt-bench single")
    now = time.time()
    rows = []
    for item, result in zip(plan, run.results):
        rows.append({"question_id": item["question_id"], "model": item["model"],
                     "judge": [run.model, item["prompt_name"]], "user_prompt": item["user_prompt"],
                     "judgment": result.text, "score": parse_rating(result.text) if result.ok else None,
                     "turn": item["turn"], "category": item["category"], "failure": result.reason,
                     "tstamp": now})
    return rows, _run_report("single", run, problems)


def combine_games(g1: str, g2: str) -> str | None:
    """FastChat show_result: agreeing verdicts win, disagreeing ones tie; ``None`` if one failed."""
    if "error" in (g1, g2):
        return None
    return "tie" if g1 == "tie" or g1 != g2 else g1


def judge_pairwise(questions: list[Question], answers_by_model: dict[str, dict[int, list[str]]],
                   judge_prompts: dict[str, JudgePrompt], client, model_a: str, model_b: str, *,
                   references: dict | None = None, turns: Iterable[int] = (1, 2)):
    """Compare two models in both orders (FastChat ``--mode pairwise-*``): ``(rows, report)``.

    Each row has FastChat's fields (``g1_winner`` / ``g2_winner`` as ``model_1``, ``model_2``,
    ``tie`` or ``error``) plus ``winner``: a model id, ``"tie"``, or ``None`` when a game failed.
    """
    requests, plan, problems = build_pairwise_requests(
        questions, answers_by_model.get(model_a, {}), answers_by_model.get(model_b, {}), model_a, model_b,
        judge_prompts, references, turns)
    run = _run(client, requests, parse_pair_verdict, "mt-bench pairwise")
    now = time.time()
    rows = []
    # Results come in (g1, g2) pairs; g2 showed model_2 as A, so its verdict maps back swapped.
    maps = {"g1": {"A": "model_1", "B": "model_2", "tie": "tie"},
            "g2": {"A": "model_2", "B": "model_1", "tie": "tie"}}
    for i in range(0, len(plan), 2):
        item, games = plan[i], {}
        for game_plan, result in zip(plan[i:i + 2], run.results[i:i + 2]):
            game = game_plan["game"]
            games[f"{game}_winner"] = maps[game][parse_pair_verdict(result.text)] if result.ok else "error"
            games[f"{game}_user_prompt"] = game_plan["user_prompt"]
            games[f"{game}_judgment"] = result.text
            games[f"{game}_failure"] = result.reason
        combined = combine_games(games["g1_winner"], games["g2_winner"])
        failures = [games[k] for k in ("g1_failure", "g2_failure") if games[k]]
        rows.append({"question_id": item["question_id"], "model_1": model_a, "model_2": model_b,
                     "g1_winner": games["g1_winner"], "g2_winner": games["g2_winner"],
                     "judge": [run.model, item["prompt_name"]],
                     "g1_user_prompt": games["g1_user_prompt"], "g1_judgment": games["g1_judgment"],
                     "g2_user_prompt": games["g2_user_prompt"], "g2_judgment": games["g2_judgment"],
                     "turn": item["turn"], "category": item["category"],
                     "winner": {"model_1": model_a, "model_2": model_b}.get(combined, combined),
                     "failure": "; ".join(failures) or None, "tstamp": now})
    return rows, _run_report("pairwise", run, problems)
