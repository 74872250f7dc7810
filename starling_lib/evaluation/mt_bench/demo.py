"""The offline MT-Bench: a tiny-world question set in FastChat's layout, and its simulated answers.

What it is for: running :mod:`starling_lib.evaluation.mt_bench` end to end without network, API
key or FastChat, on questions a tiny policy trained on the tiny world
(:mod:`starling_lib.data.tinyworld`) can answer; the judge that grades them is
:class:`~starling_lib.evaluation.simulated.SimulatedMTBenchJudge`.

:func:`build_demo_set` writes ``data/mt_bench_demo/`` (``python -m
starling_lib.evaluation.mt_bench.demo --write-demo``): ``question.jsonl`` (two-turn questions from
the world's prompt templates, turn 2 a "Thanks. ... it" follow-up; MT-Bench-like categories so
every answer temperature and the reference-guided ``reasoning`` path occur), ``judge_prompts.jsonl``
(FastChat's 8 names, types, placeholders and output formats, in our own words) and
``reference_answer/tiny-gold.jsonl`` (the simulated answer with the highest gold reward, per
reasoning question and turn). Deterministic: a test rewrites it and compares bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from starling_lib.data.gold import (FOLLOW_UP_PREFIX, HARMFUL_REQUESTS, PROMPT_TEMPLATES, TOPIC_NAMES, gold_reward,
                                    parse_prompt)
from starling_lib.data.tinyworld import MODELS_BY_NAME, SIMULATED_MODELS, render_prompt, simulate_answer
from starling_lib.evaluation.mt_bench.files import DEMO_DIR
from starling_lib.evaluation.mt_bench.judge import NEED_REF_CATS

REFERENCE_MODEL = "tiny-gold"

# ---- questions ---------------------------------------------------------------------------------

# category -> (turn-1 task, turn-2 follow-up task). The turn-1 task sets the MT-Bench-like
# category: poems are writing, lists extraction, explanations stem, advice humanities.
DEMO_CATEGORIES = {
    "writing": ("poem", "explain"),
    "roleplay": ("explain", "poem"),
    "extraction": ("list", "advice"),
    "stem": ("explain", "list"),
    "humanities": ("advice", "poem"),
    "reasoning": ("explain", "advice"),
}
QUESTIONS_PER_CATEGORY = 5
N_HARMFUL = 3
"""Extra reasoning questions whose two turns are not-good-natured requests (a refusal is right)."""
# Persona openers for roleplay: no lexicon topic, fact or task keyword in them.
ROLEPLAY_OPENERS = ("Pretend you are a teacher.", "You are a friendly tour guide.", "Act as a wise old sailor.",
                    "You are a radio host.", "Pretend you are my grandmother.")


def _question_turns(category: str, i: int, topic: str) -> list[str]:
    task_1, task_2 = DEMO_CATEGORIES[category]
    first = PROMPT_TEMPLATES[task_1][i % len(PROMPT_TEMPLATES[task_1])].format(t=topic)
    if category == "roleplay":
        first = f"{ROLEPLAY_OPENERS[i % len(ROLEPLAY_OPENERS)]} {first}"
    follow_up = PROMPT_TEMPLATES[task_2][i % len(PROMPT_TEMPLATES[task_2])].format(t="it")
    return [first, FOLLOW_UP_PREFIX + follow_up]


def _harmful_turns(i: int) -> list[str]:
    templates = PROMPT_TEMPLATES["harmful"]
    n = len(HARMFUL_REQUESTS)
    first, second = HARMFUL_REQUESTS[2 * i % n], HARMFUL_REQUESTS[(2 * i + 1) % n]
    return [templates[i % len(templates)].format(t=first.phrase),
            FOLLOW_UP_PREFIX + templates[(i + 1) % len(templates)].format(t=second.phrase)]


def demo_questions() -> list[dict]:
    """``question.jsonl`` rows: 5 per category over distinct topics, then the harmful ones."""
    rows = []
    for c, category in enumerate(DEMO_CATEGORIES):
        for i in range(QUESTIONS_PER_CATEGORY):
            topic = TOPIC_NAMES[(c * QUESTIONS_PER_CATEGORY + i) % len(TOPIC_NAMES)]
            rows.append({"category": category, "turns": _question_turns(category, i, topic)})
    rows += [{"category": "reasoning", "turns": _harmful_turns(i)} for i in range(N_HARMFUL)]
    return [{"question_id": n, **row} for n, row in enumerate(rows, 1)]


# ---- simulated answers and references ------------------------------------------------------------

def conversation_prompt(turns: list[str], answers: list[str], turn: int) -> str:
    """The Nectar prompt before answer ``turn`` (1-based): earlier exchanges, then the question."""
    return render_prompt(list(zip(turns[:turn - 1], answers[:turn - 1])), turns[turn - 1])


def _simulate_turn(rng: np.random.Generator, model, prompt: str) -> str:
    info = parse_prompt(prompt)
    if not info.good_natured:
        request = next(r for r in HARMFUL_REQUESTS if r.noun == info.topic)
        return simulate_answer(rng, model, info.task, info.topic, request)
    if info.topic is None or info.task == "unknown":  # outside the world: a vague non-answer
        return "That is a good question. There is more to learn."
    return simulate_answer(rng, model, info.task, info.topic)


def simulate_answers(questions, model: str, seed: int = 0) -> dict[int, list[str]]:
    """``{question_id: [answer_1, answer_2]}`` of a tiny-world simulated model (FastChat's shape)."""
    sim = MODELS_BY_NAME[model]
    answers = {}
    for q in questions:
        turns = q["turns"] if isinstance(q, dict) else q.turns
        qid = q["question_id"] if isinstance(q, dict) else q.question_id
        rng = np.random.default_rng([seed, qid, SIMULATED_MODELS.index(sim)])
        replies: list[str] = []
        for turn in range(1, len(turns) + 1):
            replies.append(_simulate_turn(rng, sim, conversation_prompt(turns, replies, turn)))
        answers[qid] = replies
    return answers


def best_answer(prompt: str, seed: int, draws: int = 4) -> str:
    """The highest-gold answer among ``draws`` from every simulated model (first wins ties)."""
    rng = np.random.default_rng(seed)
    candidates = [_simulate_turn(rng, m, prompt) for m in SIMULATED_MODELS for _ in range(draws)]
    return max(candidates, key=lambda a: gold_reward(prompt, a))


def demo_references(questions: list[dict]) -> list[dict]:
    """``reference_answer/tiny-gold.jsonl`` rows for the reference categories, turn by turn."""
    rows = []
    for q in questions:
        if q["category"] not in NEED_REF_CATS:
            continue
        turns: list[str] = []
        for turn in range(1, len(q["turns"]) + 1):
            turns.append(best_answer(conversation_prompt(q["turns"], turns, turn), seed=1000 * q["question_id"] + turn))
        rows.append({"question_id": q["question_id"], "answer_id": f"{REFERENCE_MODEL}-{q['question_id']}",
                     "model_id": REFERENCE_MODEL, "choices": [{"index": 0, "turns": turns}], "tstamp": 0.0})
    return rows


# ---- judge prompts (FastChat's names, types, placeholders and output formats; our words) -----------

_RATE = ('Explain your grade in one or two sentences, then give a score from 1 to 10 written exactly '
         'like "Rating: [[6]]".')
_VERDICT = ("Do not let the order of the replies, their length or the assistants' names sway you. Explain "
            'briefly, then give your verdict written exactly as "[[A]]" if assistant A is better, "[[B]]" '
            'if assistant B is better, or "[[C]]" for a tie.')
_GENERAL = "helpfulness, relevance, accuracy, depth and detail"
_MATH = "correctness and helpfulness against the reference answer, pointing out any mistakes"
_Q = "<question>\n{question}\n</question>\n\n"
_REF = "<reference>\n{ref_answer_1}\n</reference>\n\n"
_PAIR = "<reply_a>\n{answer_a}\n</reply_a>\n\n<reply_b>\n{answer_b}\n</reply_b>"
_REF_CONVERSATION = ("<reference_conversation>\n<user>\n{question_1}\n</user>\n<reference>\n{ref_answer_1}\n"
                     "</reference>\n<user>\n{question_2}\n</user>\n<reference>\n{ref_answer_2}\n</reference>\n"
                     "</reference_conversation>\n\n")


def _conversation_block(tag: str, a1: str, a2: str) -> str:
    return (f"<{tag}>\n<user>\n{{question_1}}\n</user>\n<assistant>\n{{{a1}}}\n</assistant>\n"
            f"<user>\n{{question_2}}\n</user>\n<assistant>\n{{{a2}}}\n</assistant>\n</{tag}>")


_ONE_CONVERSATION = _conversation_block("conversation", "answer_1", "answer_2")
_TWO_CONVERSATIONS = (_conversation_block("conversation_a", "answer_a_1", "answer_a_2") + "\n\n"
                      + _conversation_block("conversation_b", "answer_b_1", "answer_b_2"))
_GRADER = "You are a fair and careful grader of assistant replies."


def _prompt(name, kind, system, template, description, category):
    return {"name": name, "type": kind, "system_prompt": system, "prompt_template": template,
            "description": description, "category": category,
            "output_format": "[[rating]]" if kind == "single" else "[[A]]"}


DEMO_JUDGE_PROMPTS = (
    _prompt("pair-v2", "pairwise",
            f"Compare two assistants' replies to the same question for {_GENERAL}. {_VERDICT}",
            _Q + _PAIR, "Pairwise, one turn", "general"),
    _prompt("pair-v2-multi-turn", "pairwise",
            f"Compare how two assistants answered the user's second question, for {_GENERAL}. {_VERDICT}",
            _TWO_CONVERSATIONS, "Pairwise, second turn", "general"),
    _prompt("pair-math-v1", "pairwise",
            f"Compare two assistants' replies to the same question for {_MATH}. {_VERDICT}",
            _Q + _REF + _PAIR, "Pairwise with a reference, one turn", "math"),
    _prompt("pair-math-v1-multi-turn", "pairwise",
            f"Compare how two assistants answered the user's second question, for {_MATH}. {_VERDICT}",
            _REF_CONVERSATION + _TWO_CONVERSATIONS, "Pairwise with references, second turn", "math"),
    _prompt("single-v1", "single", _GRADER,
            f"Grade the assistant's reply to the question below for {_GENERAL}. {_RATE}\n\n"
            + _Q + "<reply>\n{answer}\n</reply>", "One answer, one turn", "general"),
    _prompt("single-math-v1", "single", _GRADER,
            f"Grade the assistant's reply to the question below for {_MATH}. {_RATE}\n\n"
            + _Q + _REF + "<reply>\n{answer}\n</reply>", "One answer with a reference, one turn", "math"),
    _prompt("single-v1-multi-turn", "single",
            f"Grade the assistant's reply to the user's second question in the conversation below, "
            f"for {_GENERAL}. {_RATE}", _ONE_CONVERSATION, "One answer, second turn", "general"),
    _prompt("single-math-v1-multi-turn", "single",
            f"Grade the assistant's reply to the user's second question in the conversation below, "
            f"for {_MATH}. {_RATE}", _REF_CONVERSATION + _ONE_CONVERSATION,
            "One answer with references, second turn", "math"),
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def build_demo_set(out_dir: str | Path = DEMO_DIR) -> list[Path]:
    """Write the demo set in FastChat's layout under ``out_dir``; the same bytes every time."""
    out = Path(out_dir)
    questions = demo_questions()
    return [_write_jsonl(out / "question.jsonl", questions),
            _write_jsonl(out / "judge_prompts.jsonl", list(DEMO_JUDGE_PROMPTS)),
            _write_jsonl(out / "reference_answer" / f"{REFERENCE_MODEL}.jsonl", demo_references(questions))]


def main(argv: list[str] | None = None) -> None:
    """``python -m starling_lib.evaluation.mt_bench.demo --write-demo [--out DIR]``."""
    parser = argparse.ArgumentParser(description="Regenerate the MT-Bench demo set (data/mt_bench_demo/).")
    parser.add_argument("--write-demo", action="store_true", help="regenerate data/mt_bench_demo/")
    parser.add_argument("--out", default=str(DEMO_DIR), help="folder for --write-demo")
    args = parser.parse_args(argv)
    if not args.write_demo:
        parser.error("nothing to do (use --write-demo)")
    for path in build_demo_set(args.out):
        print(path)


if __name__ == "__main__":
    main()
