"""Simulated benchmark judges: offline stand-ins for GPT-4 on MT-Bench and AlpacaEval.

Both read the tiny world's gold reward (:func:`starling_lib.data.gold.gold_reward`) of what
they are shown, add seeded noise, and answer in the format the real judge would, so the whole
pipeline (prompts, HTTP, parsing, swaps, caching, scores) runs without network or key. Plug
``.respond`` into :func:`starling_lib.judge.endpoint.open_judge` (``simulated=``), which serves it
on a local OpenAI-compatible server. Every draw is seeded by the judge's seed and the request, so
a repeated request gets the same answer.

- :class:`SimulatedMTBenchJudge` reads the question(s) and answer(s) back out of an MT-Bench judge
  prompt (the demo set's templates, or FastChat's real ones by their ``[The Start of ...]`` /
  ``### User:`` markers) and writes ``Rating: [[r]]`` or a ``[[A]]`` / ``[[B]]`` / ``[[C]]`` verdict.
- :class:`SimulatedAlpacaJudge` answers this project's AlpacaEval prompts: token log-probabilities
  of ``m`` / ``M`` (weighted), or ``Output (a)`` / ``Output (b)`` (ranking).

The K-wise ranking judge of the positional-bias study is :mod:`starling_lib.judge.simulated`: it
sits below evaluation because the bias study uses it, while these two read the benchmarks' prompt
formats, which live here in evaluation.
"""

from __future__ import annotations

import json
import math
import re
import string

import numpy as np

from starling_lib.data.chat import messages_to_prompt
from starling_lib.data.gold import gold_attributes, gold_reward, reward_from_attributes
from starling_lib.data.tinyworld import render_prompt
from starling_lib.evaluation.alpaca_eval import RANKING_LABELS, parse_messages
from starling_lib.evaluation.mt_bench.demo import DEMO_JUDGE_PROMPTS
from starling_lib.judge.server import HTTPFault
from starling_lib.rng import seeded_rng

# ---- MT-Bench ------------------------------------------------------------------------------------

# FastChat's templates reduced to their markers (the instructions before them are skipped), so
# the judge reads real MT-Bench requests without a copy of FastChat's prompt text.
_FC_ANSWER = "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
_FC_REF = "[The Start of Reference Answer]\n{ref_answer_1}\n[The End of Reference Answer]\n\n"
_FC_PAIR = ("[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
            "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]")


def _fc_conversation(who: str, a1: str, a2: str) -> str:
    return (f"<|The Start of Assistant {who}'s Conversation with User|>\n\n### User:\n{{question_1}}\n\n"
            f"### Assistant {who}:\n{{{a1}}}\n\n### User:\n{{question_2}}\n\n### Assistant {who}:\n{{{a2}}}"
            f"\n\n<|The End of Assistant {who}'s Conversation with User|>")


FASTCHAT_LAYOUTS = (
    "[Question]\n{question}\n\n" + _FC_REF + _FC_ANSWER,
    "[Question]\n{question}\n\n" + _FC_ANSWER,
    "[User Question]\n{question}\n\n" + _FC_REF + _FC_PAIR,
    "[User Question]\n{question}\n\n" + _FC_PAIR,
    _fc_conversation("A", "answer_1", "answer_2"),
    _fc_conversation("A", "answer_a_1", "answer_a_2") + "\n\n\n" + _fc_conversation("B", "answer_b_1", "answer_b_2"),
)


def template_regex(template: str) -> re.Pattern:
    """A regex that reads the placeholders back out of a filled-in template (matched at the end)."""
    parts, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is not None:
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
            seen.add(name)
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class SimulatedMTBenchJudge:
    """An MT-Bench judge whose taste is the tiny world's gold reward, plus seeded noise.

    Single: ``r = clip(round(1 + 9 sigmoid((gold - center) / scale) + noise N(0, 1)), 1, 10)``;
    ``center=2, scale=1`` put a refusal of a benign question (gold about -1) near 1, an untrained
    or off-topic reply (about 0.5-1) near 3 and a strong answer (about 4-5) at 9-10.
    Pairwise: A wins with probability ``sigmoid((gold_A - gold_B) / scale + position_bias)``
    (Bradley-Terry; ``position_bias > 0`` favours the first slot); equal golds with no bias tie.
    Draws are seeded by sha256 of ``(seed, messages)``, so a request always gets the same answer.
    """

    def __init__(self, seed: int = 0, center: float = 2.0, scale: float = 1.0, noise: float = 0.5,
                 position_bias: float = 0.0, templates=()):
        """``templates``: extra prompt templates to read (the demo's and FastChat's are built in)."""
        self.seed, self.center, self.scale, self.noise, self.position_bias = seed, center, scale, noise, position_bias
        layouts = list(templates) + [p["prompt_template"] for p in DEMO_JUDGE_PROMPTS] + list(FASTCHAT_LAYOUTS)
        # Most placeholders first: a layout without a reference would also match one with it.
        layouts.sort(key=lambda t: -len({n for _, n, _, _ in string.Formatter().parse(t) if n}))
        self.patterns = [template_regex(t) for t in layouts]

    def _rng(self, body: dict) -> np.random.Generator:
        # One JSON part, big-endian: the layout the committed demo results were drawn with.
        blob = json.dumps([self.seed, body.get("messages")], sort_keys=True, ensure_ascii=False)
        return seeded_rng(blob, byteorder="big")

    def read_prompt(self, text: str) -> dict:
        """The placeholders' values in a judge prompt; ``ValueError`` when no layout fits."""
        for pattern in self.patterns:
            match = pattern.search(text)
            if match:
                return match.groupdict()
        raise ValueError(f"not an MT-Bench judge prompt: {text[:80]!r}")

    @staticmethod
    def last_exchange(fields: dict, side: str = "") -> tuple[str, str]:
        """``(Nectar prompt, answer)`` of one assistant's last turn, earlier turn included."""
        answer = f"answer_{side}" if side else "answer"
        if "question" in fields:
            return render_prompt([], fields["question"]), fields[answer]
        prompt = render_prompt([(fields["question_1"], fields[f"{answer}_1"])], fields["question_2"])
        return prompt, fields[f"{answer}_2"]

    def rating(self, gold: float, rng: np.random.Generator) -> int:
        mean = 1 + 9 * _sigmoid((gold - self.center) / self.scale)
        if self.noise:
            mean += self.noise * rng.standard_normal()
        return int(np.clip(round(mean), 1, 10))

    def verdict(self, gold_a: float, gold_b: float, rng: np.random.Generator) -> str:
        if abs(gold_a - gold_b) < 1e-9 and self.position_bias == 0:
            return "C"
        return "A" if rng.random() < _sigmoid((gold_a - gold_b) / self.scale + self.position_bias) else "B"

    def respond(self, body: dict) -> str:
        """The judge's reply to an OpenAI chat request (a fake-server responder); an unknown
        prompt layout raises :class:`~starling_lib.judge.server.HTTPFault` 422."""
        user = next(m["content"] for m in reversed(body["messages"]) if m.get("role") == "user")
        try:
            fields = self.read_prompt(user)
        except ValueError as exc:  # a client bug, not a judge hiccup: fail at once, no retries
            raise HTTPFault(422, str(exc)) from None
        rng = self._rng(body)
        if "answer_a" in fields or "answer_a_2" in fields:
            gold_a = gold_reward(*self.last_exchange(fields, "a"))
            gold_b = gold_reward(*self.last_exchange(fields, "b"))
            return (f"Assistant A's reply scores {gold_a:.2f} and assistant B's {gold_b:.2f} on the tiny "
                    f"world's gold reward. [[{self.verdict(gold_a, gold_b, rng)}]]")
        attrs = gold_attributes(*self.last_exchange(fields))
        gold = reward_from_attributes(attrs)
        return (f"The reply is {'on' if attrs['on_topic'] else 'off'} topic with fact coverage "
                f"{attrs['fact_coverage']:.2f}; gold reward {gold:.2f}. Rating: [[{self.rating(gold, rng)}]]")


# ---- AlpacaEval ----------------------------------------------------------------------------------

def _nectar_prompt(instruction: str) -> str:
    if instruction.startswith("\n\nHuman: ") or instruction.startswith("Human: "):
        return instruction
    return messages_to_prompt([{"role": "user", "content": instruction}])


class SimulatedAlpacaJudge:
    """An offline AlpacaEval judge for the tiny world: Bradley-Terry on the gold reward.

    ``P(second better) = σ((gold(second) - gold(first)) / temperature + position_bias)``. Weighted
    requests get that probability as the logprobs of ``m`` / ``M``; ranking requests get a verdict
    drawn with a generator seeded by ``sha256(seed, request)``, so a repeated request gets the same
    answer. Anything else gets a reply that names no verdict.
    """

    def __init__(self, seed: int = 0, temperature: float = 0.5, position_bias: float = 0.0):
        self.seed, self.temperature, self.position_bias = seed, temperature, position_bias

    def logit_second(self, instruction: str, first: str, second: str) -> float:
        prompt = _nectar_prompt(instruction)
        gap = gold_reward(prompt, second) - gold_reward(prompt, first)
        return gap / max(self.temperature, 1e-9) + self.position_bias

    def respond(self, body: dict) -> str | dict:
        try:
            style, instruction, first, second = parse_messages(body.get("messages") or [])
        except (ValueError, KeyError, TypeError):
            return "I can only compare responses given in this project's AlpacaEval prompt."
        z = self.logit_second(instruction, first, second)
        lp_second, lp_first = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)  # log σ(z), log σ(-z)
        if style == "ranking" and not body.get("logprobs"):
            u = seeded_rng(self.seed, json.dumps(body, sort_keys=True)).random()
            return RANKING_LABELS[int(u < float(np.exp(lp_second)))]
        top = sorted([{"token": "m", "logprob": float(lp_first), "bytes": [109]},
                      {"token": "M", "logprob": float(lp_second), "bytes": [77]}], key=lambda t: -t["logprob"])
        return {"text": top[0]["token"],
                "logprobs": {"content": [{**top[0], "top_logprobs": top}], "refusal": None}}
