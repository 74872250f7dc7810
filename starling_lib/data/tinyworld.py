"""A synthetic preference world in the Nectar schema, with a known gold reward.

What it is for: making RLHF measurable offline. Real Nectar ranks come from GPT-4 and the
"true" quality of an answer is unknown; here every answer is scored by :func:`gold_reward`, a
pure, deterministic function of ``(prompt text, answer text)``. Because it reads only text, it
also scores text that a tiny policy LM generates, so later stages can train reward models on the
ranks and measure them against gold, and watch a policy over-optimise a proxy reward.

The world:

- **Prompts** of five task types over a small lexicon: explain a topic, list facts, give
  advice, write a short poem, and not-good-natured requests (steal, cheat, ...). A fraction is
  multi-turn (an earlier Human/Assistant exchange; the last question may say "it" for the
  earlier topic). Prompts use Nectar's ``"\\n\\nHuman: ...\\n\\nAssistant: "`` format.
- **Simulated models** (:data:`SIMULATED_MODELS`) answer with short template-built English from a
  small vocabulary; they differ in how often they stay on topic, include fact words, use the
  task's structure, refuse, comply with harmful requests, and pad.
- **Gold reward** (:func:`starling_lib.data.gold.gold_reward`, with the lexicon in the same module):
  interpretable attributes read from the text, weighted by its ``W_*`` constants.
- **Ranks**: Plackett-Luce samples from the gold rewards at ``cfg.temperature`` (a noisy judge).

Reading a prompt (:func:`~starling_lib.data.gold.parse_prompt`): the *last* Human turn sets the task and whether the
request is harmful; its topic is the first lexicon topic it names, else the latest topic named
in an earlier Human turn (so "Now write a poem about it." works). Text outside the lexicon has
``topic=None`` (on_topic and fact coverage are 0), ``task="unknown"`` when no task keyword
appears (structure is 0), and is treated as good natured.

Everything is driven by one ``numpy.random.default_rng(cfg.seed)``: same seed, same bytes.
Regenerate the committed sample with ``python -m starling_lib.data.tinyworld``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable

import datasets
import numpy as np

from starling_lib.config import TinyWorldConfig
from starling_lib.data.gold import (TOPICS, TOPIC_NAMES, BENIGN_TASKS, HarmfulRequest, HARMFUL_REQUESTS, PROMPT_TEMPLATES, FOLLOW_UP_PREFIX,
                                     INTROS, LIST_ITEMS, FACT_SENTENCES, GENERIC_TOPIC_SENTENCES,
                                     BECAUSE_SENTENCE, BECAUSE_SENTENCE_NO_FACT, ADVICE_SENTENCES,
                                     ADVICE_NO_FACT, POEM_LINES, FILLERS, PADDING, POLITE_REFUSALS,
                                     BLUNT_REFUSALS, HARM_REASON, SAFE_OFFER, FACTS_FOR_FULL_CREDIT,
                                     parse_prompt, gold_reward)
from starling_lib.data.schema import ANSWER_FIELDS, ASSISTANT, HUMAN, NECTAR_FEATURES, NECTAR_FIELDS
from starling_lib.paths import DATA

# ----------------------------------------------------------------------------------------------
# Simulated models.

@dataclasses.dataclass(frozen=True)
class SimulatedModel:
    """How one synthetic answerer behaves; each probability is drawn per answer."""

    name: str
    p_on_topic: float
    """Answers about the asked topic (else about another topic)."""
    p_fact: float
    """Each of three fact slots is filled with a fact word of the subject."""
    p_structure: float
    """Uses the task's structure (numbered list, 'because', advice verbs, poem lines)."""
    p_refuse_benign: float
    """Refuses a benign request."""
    p_comply_harmful: float
    """Complies with a not-good-natured request."""
    p_polite: float
    """A refusal is polite (sorry, reason, offer)."""
    extra_sentences: tuple[int, int]
    """Inclusive range of generic filler sentences appended (length profile)."""
    p_padding: float
    """Appends a padding sentence repeated 2-3 times."""


SIMULATED_MODELS: tuple[SimulatedModel, ...] = (
    SimulatedModel("tiny-gpt-4", 0.98, 0.90, 0.95, 0.01, 0.02, 0.95, (0, 1), 0.00),
    SimulatedModel("tiny-gpt-3.5", 0.95, 0.75, 0.85, 0.03, 0.08, 0.85, (0, 1), 0.05),
    SimulatedModel("tiny-mistral", 0.90, 0.60, 0.70, 0.02, 0.30, 0.60, (0, 1), 0.10),
    SimulatedModel("tiny-llama-2", 0.92, 0.55, 0.60, 0.20, 0.02, 0.90, (0, 1), 0.05),
    SimulatedModel("tiny-rambler", 0.85, 0.50, 0.50, 0.02, 0.30, 0.50, (1, 3), 0.90),
    SimulatedModel("tiny-refuser", 0.90, 0.45, 0.50, 0.60, 0.00, 0.70, (0, 1), 0.00),
    SimulatedModel("tiny-offtopic", 0.15, 0.40, 0.40, 0.05, 0.50, 0.30, (0, 1), 0.10),
)
MODELS_BY_NAME = {m.name: m for m in SIMULATED_MODELS}


def _pick(rng: np.random.Generator, options: tuple | list):
    return options[int(rng.integers(len(options)))]


def _fill(template: str, subject: str, fact: str = "") -> str:
    return template.format(s=subject, S=subject.capitalize(), f=fact)


def _join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _list_items(rng, subject: str, facts: list[str]) -> list[str]:
    # Distinct templates per answer: a well-written answer should not pay the repetition penalty.
    templates = [LIST_ITEMS[int(i)] for i in rng.permutation(len(LIST_ITEMS))]
    return [_fill(template, subject, fact) for template, fact in zip(templates, facts)]


def _benign_body(rng, task: str, subject: str, facts: list[str], structured: bool) -> str:
    """The task-specific part of an answer about ``subject`` using ``facts``."""
    if task == "list" and structured:
        items = _list_items(rng, subject, facts)
        while len(items) < 2:
            items.append(_fill(GENERIC_TOPIC_SENTENCES[len(items)], subject))
        numbered = "\n".join(f"{i}. {item}" for i, item in enumerate(items, 1))
        return f"Here are some facts about {subject}:\n{numbered}"
    if task == "poem":
        if not structured:
            return f"Here is a poem. {subject.capitalize()} are nice and so is {facts[0] if facts else 'life'}."
        lines = [_fill(POEM_LINES[i], subject, (facts[i] if i < len(facts) else subject).capitalize())
                 for i in range(len(POEM_LINES))]
        return "\n".join([f"A poem about {subject}:"] + lines)
    sentences = [_fill(_pick(rng, INTROS), subject)]
    if task == "advice" and structured:
        sentences += [_fill(ADVICE_SENTENCES[i], subject, f) for i, f in enumerate(facts)]
        sentences += [] if facts else [_fill(ADVICE_NO_FACT, subject)]
        return " ".join(sentences)
    if facts:  # prose names all its facts in one sentence: "Think of honey, hive and wings."
        sentences.append(_fill(_pick(rng, FACT_SENTENCES), subject, _join_words(facts)))
    if task == "explain" and structured:
        sentences.append(_fill(BECAUSE_SENTENCE, subject, facts[0]) if facts
                         else _fill(BECAUSE_SENTENCE_NO_FACT, subject))
    return " ".join(sentences)


def _refusal(rng, model: SimulatedModel, harmful: bool) -> str:
    if rng.random() >= model.p_polite:
        return _pick(rng, BLUNT_REFUSALS)
    parts = [_pick(rng, POLITE_REFUSALS)] + ([HARM_REASON, SAFE_OFFER] if harmful else [])
    return " ".join(parts)


def _compliance(rng, request: HarmfulRequest, structured: bool) -> str:
    steps = [f"Get the {request.steps[0]}.", f"Use the {request.steps[1]}.", f"Watch the {request.steps[2]}."]
    if structured:
        return f"Sure, here is how to {request.phrase}:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return f"Sure, here is how to {request.phrase}. " + " ".join(steps)


def _tail(rng, model: SimulatedModel) -> list[str]:
    """Filler sentences (length profile) and repeated padding (the rambler's habit)."""
    lo, hi = model.extra_sentences
    n_extra = int(rng.integers(lo, hi + 1))
    tail = [FILLERS[int(i)] for i in rng.permutation(len(FILLERS))[:n_extra]]
    if rng.random() < model.p_padding:
        tail += [_pick(rng, PADDING)] * int(rng.integers(2, 4))
    return tail


def simulate_answer(rng: np.random.Generator, model: SimulatedModel, task: str, topic: str,
                    request: HarmfulRequest | None = None) -> str:
    """One answer of ``model`` to a ``task`` about ``topic`` (or to a harmful ``request``)."""
    structured = rng.random() < model.p_structure
    if request is not None:
        body = (_compliance(rng, request, structured) if rng.random() < model.p_comply_harmful
                else _refusal(rng, model, harmful=True))
    elif rng.random() < model.p_refuse_benign:
        body = _refusal(rng, model, harmful=False)
    else:
        subject = topic
        if rng.random() >= model.p_on_topic:
            others = [t for t in TOPIC_NAMES if t != topic]
            subject = _pick(rng, others)
        n_facts = int(rng.binomial(FACTS_FOR_FULL_CREDIT, model.p_fact))
        pool = TOPICS[subject]
        facts = [pool[int(i)] for i in rng.permutation(len(pool))[:n_facts]]
        body = _benign_body(rng, task, subject, facts, structured)
    tail = _tail(rng, model)
    # After a multi-line body (list, poem) each extra sentence gets its own line, so a poem's
    # lines stay short; the extra sentences still cost their words and repetition.
    return "\n".join([body] + tail) if "\n" in body else " ".join([body] + tail)


# ----------------------------------------------------------------------------------------------
# Prompts, ranks and rows.

def _question(rng, task: str, subject: str) -> str:
    return _pick(rng, PROMPT_TEMPLATES[task]).format(t=subject)


def simulate_prompt(rng: np.random.Generator, cfg: TinyWorldConfig) -> tuple[str, HarmfulRequest | None]:
    """A Nectar prompt string and its harmful request (None when benign)."""
    request = _pick(rng, HARMFUL_REQUESTS) if rng.random() < cfg.harmful_fraction else None
    exchanges = []
    if rng.random() < cfg.multi_turn_fraction:
        earlier_topic, earlier_task = _pick(rng, TOPIC_NAMES), _pick(rng, BENIGN_TASKS)
        earlier_answer = simulate_answer(rng, SIMULATED_MODELS[0], earlier_task, earlier_topic)
        exchanges.append((_question(rng, earlier_task, earlier_topic), earlier_answer))
        if request is None and rng.random() < 0.5:  # a follow-up about the same topic, by "it"
            question = FOLLOW_UP_PREFIX + _question(rng, _pick(rng, BENIGN_TASKS), "it")
            return render_prompt(exchanges, question), None
    if request is not None:
        question = _question(rng, "harmful", request.phrase)
    else:
        question = _question(rng, _pick(rng, BENIGN_TASKS), _pick(rng, TOPIC_NAMES))
    return render_prompt(exchanges, question), request


def render_prompt(exchanges: list[tuple[str, str]], question: str) -> str:
    """The Nectar prompt string: earlier ``(question, answer)`` exchanges, then ``question``."""
    earlier = "".join(f"{HUMAN}{q}{ASSISTANT}{a}" for q, a in exchanges)
    return f"{earlier}{HUMAN}{question}{ASSISTANT}"


def sample_plackett_luce_ranks(gold: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """Ranks (floats 1.0..K, 1.0 best) drawn from Plackett-Luce with scores ``gold / temperature``.

    Gumbel-max trick: sorting ``gold / T + Gumbel(0, 1)`` noise descending gives a full
    Plackett-Luce ranking (Yellott 1977). ``T == 0`` is the exact gold order, ties broken by index.
    """
    gold = np.asarray(gold, dtype=np.float64)
    keys = gold if temperature == 0 else gold / temperature + rng.gumbel(size=gold.shape)
    order = np.argsort(-keys, kind="stable")  # best first
    ranks = np.empty(len(gold), dtype=np.float64)
    ranks[order] = np.arange(1, len(gold) + 1, dtype=np.float64)
    return ranks


def _simulate_row(rng: np.random.Generator, cfg: TinyWorldConfig) -> dict:
    prompt, request = simulate_prompt(rng, cfg)
    info = parse_prompt(prompt)
    # Models in a random order: the presentation order carries no information about quality.
    n = len(SIMULATED_MODELS)
    chosen = rng.permutation(n)[:cfg.k] if cfg.k <= n else rng.integers(n, size=cfg.k)
    models = [SIMULATED_MODELS[int(i)] for i in chosen]
    texts = [simulate_answer(rng, m, info.task, info.topic, request) for m in models]
    gold = np.array([gold_reward(prompt, t) for t in texts])
    ranks = sample_plackett_luce_ranks(gold, cfg.temperature, rng)
    return {
        "prompt": prompt,
        "answers": [{"answer": t, "model": m.name, "rank": float(r)} for t, m, r in zip(texts, models, ranks)],
        "turns": prompt.count(HUMAN),
        "num_responses": cfg.k,
        "source": ["tinyworld"],
        "good_natured": info.good_natured,
    }


def generate_world(cfg: TinyWorldConfig) -> list[dict]:
    """``cfg.n_prompts`` Nectar rows (keys in NECTAR_FIELDS order), deterministic in ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    return [_simulate_row(rng, cfg) for _ in range(cfg.n_prompts)]


def world_dataset(cfg: TinyWorldConfig) -> datasets.Dataset:
    """:func:`generate_world` as a ``datasets.Dataset`` with Nectar's features."""
    return datasets.Dataset.from_list(generate_world(cfg), features=NECTAR_FEATURES)


def with_gold(data: datasets.Dataset | list[dict]) -> datasets.Dataset | list[dict]:
    """A copy with ``gold_rewards``: one float per answer, aligned with ``answers``."""
    if isinstance(data, datasets.Dataset):
        gold = [[gold_reward(p, a["answer"]) for a in answers] for p, answers in zip(data["prompt"], data["answers"])]
        return data.add_column("gold_rewards", gold)
    return [{**row, "gold_rewards": [gold_reward(row["prompt"], a["answer"]) for a in row["answers"]]}
            for row in data]


def _ordered_row(row: dict) -> dict:
    """Schema fields first in schema order, answers' fields in their order, then any extras."""
    ordered = {key: row[key] for key in NECTAR_FIELDS}
    ordered["answers"] = [{key: a[key] for key in ANSWER_FIELDS} for a in row["answers"]]
    ordered.update({key: value for key, value in row.items() if key not in ordered})
    return ordered


def write_world_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    """One compact JSON object per line, keys in schema order, UTF-8, ``\\n`` endings: deterministic bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(_ordered_row(row), ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


def corpus_texts(cfg: TinyWorldConfig) -> list[str]:
    """Every prompt and answer text of the world, for training a tokenizer."""
    texts = []
    for row in generate_world(cfg):
        texts.append(row["prompt"])
        texts.extend(a["answer"] for a in row["answers"])
    return texts


SAMPLE_CONFIG = TinyWorldConfig(n_prompts=200, seed=0)
"""The exact config of the committed sample; tests regenerate it and compare bytes."""
SAMPLE_PATH = DATA / "tinyworld_sample.jsonl"


if __name__ == "__main__":
    print(write_world_jsonl(generate_world(SAMPLE_CONFIG), SAMPLE_PATH))
