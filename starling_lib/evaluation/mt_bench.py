"""MT-Bench: load questions and judge prompts, ask an LLM judge to grade answers, score them.

What it is for: the paper reports Starling-7B's MT-Bench score (8.09, GPT-4 as judge). This module
runs the same protocol as FastChat's ``fastchat/llm_judge`` (v0.2.36) through our
:class:`~starling_lib.judge.client.JudgeClient`, so a run is concurrent, retried, cached and
resumable, and it works offline against the tiny world (:mod:`.mt_bench_demo`).

FastChat correspondence (``common.py`` / ``gen_judgment.py`` / ``show_result.py``):

- files: ``question.jsonl``, ``judge_prompts.jsonl``, ``model_answer/<model>.jsonl`` and
  ``reference_answer/gpt-4.jsonl`` in FastChat's layout (:func:`load_questions`,
  :func:`load_judge_prompts`, :func:`load_model_answers`); ``model_judgment/<judge>_single.jsonl``
  rows (:func:`judge_single`, :func:`write_judgments`);
- prompt choice: categories in :data:`NEED_REF_CATS` get the reference-guided ``*-math-v1`` prompts,
  the rest ``single-v1`` / ``pair-v2``; turn 2 uses the ``-multi-turn`` variant, which sees both
  questions, both answers (and both references);
- the system message is the prompt's ``system_prompt``; temperature 0, ``max_tokens`` 2048;
- ratings are read with ``\\[\\[(\\d+\\.?\\d*)\\]\\]``, falling back to ``\\[(\\d+\\.?\\d*)\\]``;
  verdicts are ``[[A]]`` / ``[[B]]`` / ``[[C]]`` (tie), checked in that order;
- pairwise: each pair is judged in both orders; the verdicts agree → that winner, else a tie
  ("inconsistent"); scores are means over valid judgments by model, by (model, turn) and overall.

Where we differ, on purpose:

- an answer with no parsable rating or verdict is *retried* (the client's ``max_retries``) and
  then recorded as failed with its reason (``score`` ``None``, ``failure`` set); FastChat stores
  -1 / ``"error"`` without retrying. Failures are counted in the scores (``n_failed``); a score of
  -1 in a FastChat file reads as failed too. Ratings outside 1-10 count as unparsable.
- missing inputs never crash a run: a question without an answer, an answer with fewer turns than
  judged, a failed generation (``$ERROR$``), an answer to an unknown question id and a reference
  category without a reference are skipped and listed in the run report (FastChat asserts answers
  exist, grades ``$ERROR$`` like any answer, and has no reference-free fallback for math
  questions, so we skip those too rather than grade them without a reference);
- a reference comes from the references file, else from the question's own ``reference`` field.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from starling_lib.evaluation.answers import ERROR_ANSWER, category_temperature
from starling_lib.judge.client import JudgeRequest
from starling_lib.paths import DATA, shared_data

DEMO_DIR = DATA / "mt_bench_demo"
"""The project's offline MT-Bench-shaped set over the tiny world (see :mod:`.mt_bench_demo`)."""

# FastChat common.py ``temperature_config``: answer-generation temperature per category.
# FastChat's per-category answer temperatures live with answer generation.
NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # FastChat common.py
JUDGE_PARAMS = {"temperature": 0, "max_tokens": 2048}  # FastChat chat_completion_openai call

# FastChat common.py one_score_pattern / one_score_pattern_backup.
ONE_SCORE_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
ONE_SCORE_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")

OUTPUT_FORMAT = {"single": "[[rating]]", "pairwise": "[[A]]"}
# Placeholders a template may use, by (type, multi-turn); references are allowed everywhere
# because FastChat's own pair-math-v1-multi-turn says category "general" yet uses them.
_REFS = {"ref_answer_1", "ref_answer_2"}
ALLOWED_PLACEHOLDERS = {
    ("single", False): {"question", "answer", "ref_answer_1"},
    ("single", True): {"question_1", "question_2", "answer_1", "answer_2"} | _REFS,
    ("pairwise", False): {"question", "answer_a", "answer_b", "ref_answer_1"},
    ("pairwise", True): {"question_1", "question_2", "answer_a_1", "answer_a_2",
                         "answer_b_1", "answer_b_2"} | _REFS,
}
# Without these the judge would never see the answer it grades.
REQUIRED_PLACEHOLDERS = {
    ("single", False): {"answer"}, ("single", True): {"answer_2"},
    ("pairwise", False): {"answer_a", "answer_b"}, ("pairwise", True): {"answer_a_2", "answer_b_2"},
}
JUDGE_PROMPT_NAMES = ("pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn",
                      "single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn")


@dataclass(frozen=True)
class Question:
    """One MT-Bench question (a row of ``question.jsonl``)."""

    question_id: int
    category: str
    turns: list[str]
    """The user's questions, one per turn (two in MT-Bench)."""
    reference: list[str] | None = None
    """Reference answers per turn, when the file carries them."""


@dataclass(frozen=True)
class JudgePrompt:
    """One judge prompt (a row of ``judge_prompts.jsonl``)."""

    name: str
    type: str
    """``single`` (rate one answer 1-10) or ``pairwise`` (pick A, B or tie)."""
    system_prompt: str
    prompt_template: str
    """``str.format`` template; placeholders per :data:`ALLOWED_PLACEHOLDERS`."""
    output_format: str
    """``[[rating]]`` or ``[[A]]``."""
    description: str = ""
    category: str = ""

    @property
    def multi_turn(self) -> bool:
        return self.name.endswith("-multi-turn")

    def messages(self, fields: dict) -> list[dict]:
        """FastChat's judge conversation: the system prompt, then the filled-in template."""
        try:
            user = self.prompt_template.format_map(fields)
        except KeyError as exc:
            raise ValueError(f"judge prompt {self.name!r} needs {exc} but only {sorted(fields)} "
                             "are available for this question") from None
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]


# ---- loading ---------------------------------------------------------------------------------

def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """``("<path>:<line>", row)`` for each non-blank line; a bad line raises with its place."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


_KINDS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str_list": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v),
                 "a non-empty list of strings"),
    "list": (lambda v: isinstance(v, list) and bool(v), "a non-empty list"),
}


def _field(row: dict, name: str, kind: str, where: str, *, required: bool = True):
    """``row[name]`` checked against ``kind``; ``None`` when optional and absent."""
    if name not in row:
        if required:
            raise ValueError(f"{where}: missing field {name!r}")
        return None
    check, description = _KINDS[kind]
    if not check(row[name]):
        raise ValueError(f"{where}: field {name!r} must be {description}, got {row[name]!r:.60}")
    return row[name]


def load_questions(path: str | Path) -> list[Question]:
    """Questions of a ``question.jsonl``, in file order; duplicate ids are an error."""
    path = Path(path)
    questions, seen = [], {}
    for where, row in _jsonl_rows(path):
        qid = _field(row, "question_id", "int", where)
        if qid in seen:
            raise ValueError(f"{where}: duplicate question_id {qid} (first at line {seen[qid]})")
        seen[qid] = where.rsplit(":", 1)[1]
        questions.append(Question(qid, _field(row, "category", "str", where),
                                  _field(row, "turns", "str_list", where),
                                  _field(row, "reference", "str_list", where, required=False)))
    return questions


def _placeholders(template: str, where: str) -> set[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{where}: prompt_template is not a valid format string ({exc})") from None
    names = {name for _, name, _, _ in parsed if name is not None}
    bad = {n for n in names if not n.isidentifier()}
    if bad:
        raise ValueError(f"{where}: prompt_template has unsupported placeholders {sorted(bad)}")
    return names


def load_judge_prompts(path: str | Path) -> dict[str, JudgePrompt]:
    """Judge prompts of a ``judge_prompts.jsonl`` by name, with their placeholders checked."""
    path = Path(path)
    prompts: dict[str, JudgePrompt] = {}
    for where, row in _jsonl_rows(path):
        name = _field(row, "name", "str", where)
        if name in prompts:
            raise ValueError(f"{where}: duplicate judge prompt name {name!r}")
        kind = _field(row, "type", "str", where)
        if kind not in OUTPUT_FORMAT:
            raise ValueError(f"{where}: field 'type' must be 'single' or 'pairwise', got {kind!r}")
        output_format = _field(row, "output_format", "str", where)
        if output_format != OUTPUT_FORMAT[kind]:
            raise ValueError(f"{where}: a {kind} prompt must have output_format "
                             f"{OUTPUT_FORMAT[kind]!r}, got {output_format!r}")
        prompt = JudgePrompt(name, kind, _field(row, "system_prompt", "str", where),
                             _field(row, "prompt_template", "str", where), output_format,
                             _field(row, "description", "str", where, required=False) or "",
                             _field(row, "category", "str", where, required=False) or "")
        layout = (kind, prompt.multi_turn)
        used = _placeholders(prompt.prompt_template, where)
        if used - ALLOWED_PLACEHOLDERS[layout]:
            raise ValueError(f"{where}: placeholders {sorted(used - ALLOWED_PLACEHOLDERS[layout])} are not "
                             f"allowed in a {kind}{' multi-turn' if layout[1] else ''} prompt "
                             f"(allowed: {sorted(ALLOWED_PLACEHOLDERS[layout])})")
        if REQUIRED_PLACEHOLDERS[layout] - used:
            raise ValueError(f"{where}: prompt_template lacks {sorted(REQUIRED_PLACEHOLDERS[layout] - used)}")
        prompts[name] = prompt
    return prompts


def _load_answer_file(path: Path) -> dict[int, list[str]]:
    answers, seen = {}, {}
    for where, row in _jsonl_rows(path):
        qid = _field(row, "question_id", "int", where)
        if qid in seen:
            raise ValueError(f"{where}: duplicate question_id {qid} (first at line {seen[qid]})")
        seen[qid] = where.rsplit(":", 1)[1]
        choice = _field(row, "choices", "list", where)[0]
        if not isinstance(choice, dict):
            raise ValueError(f"{where}: field 'choices' must hold objects, got {choice!r:.60}")
        answers[qid] = _field(choice, "turns", "str_list", f"{where}: choices[0]")
    return answers


def load_model_answers(path: str | Path) -> dict[str, dict[int, list[str]]]:
    """``{model_id: {question_id: turns}}`` from ``<model>.jsonl`` or a folder of them.

    As FastChat, the model id is the file name without ``.jsonl`` and the first choice is used.
    Reference answers (``reference_answer/gpt-4.jsonl``) load the same way.
    """
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no <model>.jsonl files")
    return {file.stem: _load_answer_file(file) for file in files}


def load_references(path: str | Path, model_id: str | None = None) -> dict[int, list[str]]:
    """Reference answers by question id: ``model_id``'s, or the only model's in ``path``."""
    by_model = load_model_answers(path)
    if model_id is None:
        if len(by_model) != 1:
            raise ValueError(f"{path}: holds references of {sorted(by_model)}; pass model_id=")
        model_id = next(iter(by_model))
    return by_model[model_id]


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


def _combine_games(g1: str, g2: str) -> str | None:
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
        combined = _combine_games(games["g1_winner"], games["g2_winner"])
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


def pairwise_win_rate(rows: Iterable[dict], model: str) -> dict:
    """Wins, losses, ties of ``model`` over valid pairs; ``win_rate`` counts a tie as half a win
    (FastChat's ``win_rate_adjusted``); failed pairs are excluded and counted in ``n_failed``."""
    wins = losses = ties = failed = 0
    for row in rows:
        if model not in (row["model_1"], row["model_2"]):
            continue
        winner = row.get("winner")
        if winner is None:
            failed += 1
        elif winner == "tie":
            ties += 1
        elif winner == model:
            wins += 1
        else:
            losses += 1
    n = wins + losses + ties
    return {"wins": wins, "losses": losses, "ties": ties, "n": n, "n_failed": failed,
            "win_rate": (wins + 0.5 * ties) / n if n else None}


# ---- scores and files --------------------------------------------------------------------------

def _mean(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def score_single(judgments) -> dict[str, dict]:
    """Per model (FastChat show_result, single mode): mean score per turn (``turn_1``, ``turn_2``),
    ``overall`` (mean over all valid judgments), ``by_category``, ``n_judgments`` and ``n_failed``.
    A judgment is valid when its score is a number other than FastChat's failure mark -1."""
    df = judgments.copy() if isinstance(judgments, pd.DataFrame) else pd.DataFrame(list(judgments))
    if df.empty:
        return {}
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    valid = df["score"].notna() & (df["score"] != -1)
    scores = {}
    for model, group in df.groupby("model", sort=True):
        ok = group[valid[group.index]]
        entry = {f"turn_{int(t)}": _mean(ok.loc[ok["turn"] == t, "score"]) for t in sorted(group["turn"].unique())}
        entry["overall"] = _mean(ok["score"])
        entry["n_judgments"] = int(len(ok))
        entry["n_failed"] = int(len(group) - len(ok))
        if "category" in ok:
            entry["by_category"] = {str(c): float(s) for c, s in ok.groupby("category")["score"].mean().items()}
        scores[str(model)] = entry
    return scores


def write_judgments(path: str | Path, rows: Iterable[dict]) -> Path:
    """Judgment rows as JSONL (one object per line, FastChat's ``model_judgment`` layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_judgments(path: str | Path) -> list[dict]:
    """Rows written by :func:`write_judgments` (or FastChat's judgment files)."""
    return [row for _, row in _jsonl_rows(Path(path))]


temperature_for = category_temperature  # FastChat's table, 0.7 when unknown (answers.py)


def category_counts(questions: Iterable[Question]) -> dict[str, int]:
    return dict(Counter(q.category for q in questions))


def __getattr__(name: str):
    # The demo builder and simulated judge live next door; re-exported here, loaded on first use
    # (mt_bench_demo imports this module, so an eager import would be circular).
    if name in ("build_demo_set", "SimulatedMTBenchJudge"):
        from starling_lib.evaluation import mt_bench_demo
        return getattr(mt_bench_demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-demo", action="store_true", help="regenerate data/mt_bench_demo/")
    parser.add_argument("--out", default=str(DEMO_DIR), help="folder for --write-demo")
    args = parser.parse_args(argv)
    if not args.write_demo:
        parser.error("nothing to do (use --write-demo)")
    from starling_lib.evaluation.mt_bench_demo import build_demo_set
    for path in build_demo_set(args.out):
        print(path)


if __name__ == "__main__":
    main()


def resolve_bench_dir(value: str | Path | None) -> Path:
    """``EvalConfig.mt_bench_dir`` as a folder: ``None`` → the demo set, ``"shared"`` → the published
    files under ``../shared/data/mt_bench`` (an error saying where to put them when absent), else the path."""
    if value is None:
        return DEMO_DIR
    if str(value) == "shared":
        return shared_data("mt_bench", required=True)
    path = Path(value)
    if not (path / "question.jsonl").is_file():
        raise FileNotFoundError(f"{path}: no question.jsonl here (expected FastChat's llm_judge/data/<bench> layout)")
    return path


def reference_file(folder: str | Path) -> Path | None:
    """The first ``reference_answer/*.jsonl`` of a bench folder (FastChat ships ``gpt-4.jsonl``), or ``None``."""
    files = sorted((Path(folder) / "reference_answer").glob("*.jsonl"))
    return files[0] if files else None
