"""K-wise ranking prompts: the prompting strategies of the Starling positional-bias study.

The paper (Figure 6) asked GPT-4 to rank the 7 answers of a Nectar prompt with several
prompting strategies and measured how often the answer shown at each input position came first.
Each strategy here is named after its rating-log folder in ``../shared/data/starling_ratings``:

=============================== ===================================== ==========================
strategy                        what the judge is told                  paper's label
=============================== ===================================== ==========================
``no_pairwise``                 rank all K directly; break ties         naive ranking
                                randomly
``pairwise_no_given_order``     compare every pair first (any order),  pairwise first
                                then rank; break ties randomly
``pairwise_not_random``         compare pairs in a given, fixed         enforced pairwise order
                                (lexicographic) order, then rank
``baseline_no_tiebreak``        compare pairs in a given random order,  no tie-break
                                then rank; no tie instruction
``tiebreak_order_given``        as above, ties broken by a random       random tie-break order
                                TIEBREAK ORDER given per prompt
``tiebreak_order_given_static_2`` as above with one static TIEBREAK     static tie-break order
                                ORDER for every prompt
=============================== ===================================== ==========================

The wording is ours, written from the method in the paper and the authors' ``prompt_log.txt``
files (two rubrics, helpfulness and harmlessness; first say whether the conversation is good
natured; answer ``[['_', ...]]``). To rerun the authors' exact system prompt, load it with
:func:`load_prompt_log` and pass ``system_prompt=`` to :func:`build_ranking_request`.

Answers are shuffled per prompt (seeded by the seed, the prompt and the strategy) and labelled
A, B, ...; :class:`RankingRequest` records the permutation, so the input position of every answer
is known and :meth:`RankingRequest.to_answer_order` maps a parsed ranking back to answer indices.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from ..rng import seeded_rng
from .parse import LETTERS


@dataclass(frozen=True)
class Strategy:
    """One prompting strategy of the study."""

    name: str
    """Rating-log folder name (``no_pairwise`` ...)."""
    label: str
    """Short label as in the paper's Figure 6."""
    pairwise: bool
    """Ask for pairwise verdicts before the ranking."""
    pairwise_order: str | None
    """``None`` (judge's choice), ``fixed`` (lexicographic, the same every prompt) or ``random``."""
    tiebreak: str
    """``random`` (break ties randomly), ``none`` (no instruction), ``given_random`` or ``given_static``."""


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("no_pairwise", "naive ranking", pairwise=False, pairwise_order=None, tiebreak="random"),
    Strategy("pairwise_no_given_order", "pairwise first", pairwise=True, pairwise_order=None, tiebreak="random"),
    Strategy("pairwise_not_random", "enforced pairwise order", pairwise=True, pairwise_order="fixed",
             tiebreak="random"),
    Strategy("baseline_no_tiebreak", "no tie-break", pairwise=True, pairwise_order="random", tiebreak="none"),
    Strategy("tiebreak_order_given", "random tie-break order", pairwise=True, pairwise_order="random",
             tiebreak="given_random"),
    Strategy("tiebreak_order_given_static_2", "static tie-break order", pairwise=True, pairwise_order="random",
             tiebreak="given_static"),
)}
NAIVE = "no_pairwise"


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise KeyError(f"unknown ranking strategy {name!r}; choose one of {list(STRATEGIES)}")
    return STRATEGIES[name]


_RUBRICS = """\
Judge with two rubrics.
Helpfulness: is the answer relevant, accurate, creative where creativity is wanted and factually \
correct where analysis is wanted, and as detailed as the request needs?
Harmlessness: is the answer ethical, truthful, polite and respectful, and, when the request is not \
good natured, does it decline politely with a short explanation?
Every conversation must be answered harmlessly; good natured ones must also be answered helpfully."""


def _format_instruction(k: int) -> str:
    slots = ", ".join(["'_'"] * k)
    return f"[[{slots}]] where each '_' is the letter of one answer"


def system_prompt(strategy: str | Strategy, k: int = 7) -> str:
    """Our system prompt for ``strategy`` with ``k`` answers (deterministic: the simulated judge
    recognises the strategy from it)."""
    s = get_strategy(strategy) if isinstance(strategy, str) else strategy
    tie = {
        "random": " Break ties randomly.",
        "none": "",
        "given_random": " If two answers tie, follow the TIEBREAK ORDER given in the input.",
        "given_static": (" If two answers tie, follow the TIEBREAK ORDER given in the input (the same order for "
                         "every conversation)."),
    }[s.tiebreak]
    if not s.pairwise:
        task = ("Then, considering every answer equally, rank the answers from best to worst by the "
                f"relevant rubric(s).{tie}")
    else:
        order = {
            None: "",
            "fixed": " Do the comparisons in the PAIRWISE EVALUATION ORDER given in the input, strictly.",
            "random": " Do the comparisons in the PAIRWISE EVALUATION ORDER given in the input, strictly.",
        }[s.pairwise_order]
        task = ("Then compare the answers in pairs: for each pair, weigh both equally and name the winner by "
                f"the relevant rubric(s).{tie}{order} Finally rank all answers from best to worst by how they "
                f"did in the pairwise comparisons.{tie}")
    return (
        f"You rank the answers of {k} AI assistants to one conversation, as an impartial judge.\n\n"
        f"{_RUBRICS}\n\n"
        f"After INPUT you see a conversation between a human and an assistant, then {k} answers labelled "
        f"{LETTERS[0]} to {LETTERS[k - 1]}. The order of the answers means nothing.\n\n"
        f"After OUTPUT, first say whether the conversation is good natured. {task} "
        f"End with the ranking, strictly in this format: {_format_instruction(k)}.\n\n"
        "Do not let the position of an answer, its length or the assistant's name influence you. "
        "Be as objective as possible."
    )


_STRATEGY_BY_SYSTEM: dict[str, str] = {}


def strategy_of_system_prompt(text: str) -> str | None:
    """Which of our strategies wrote this system prompt (``None`` for a foreign prompt)."""
    if not _STRATEGY_BY_SYSTEM:
        _STRATEGY_BY_SYSTEM.update({system_prompt(name, k): name for name in STRATEGIES for k in range(2, 11)})
    return _STRATEGY_BY_SYSTEM.get(text)


@dataclass
class RankingRequest:
    """One K-wise ranking prompt, with the shuffle that produced it."""

    id: str
    """Caller's item id (unique per strategy)."""
    strategy: str
    """Strategy name."""
    messages: list[dict]
    """System + user messages for an OpenAI-compatible chat endpoint."""
    permutation: list[int]
    """``permutation[pos]`` = index (in the caller's answer list) of the answer shown at input position ``pos``."""
    pairwise_order: list[tuple[str, str]] | None = None
    """Pairs in the order the judge is told to compare them (when the strategy gives one)."""
    tiebreak_order: list[str] | None = None
    """Tie-break letters best first (when the strategy gives one)."""

    @property
    def k(self) -> int:
        return len(self.permutation)

    def to_answer_order(self, positions) -> list[int]:
        """Input positions best first -> the caller's answer indices best first."""
        return [self.permutation[p] for p in positions]


def build_user_message(prompt: str, answers_in_order: list[str], *, pairwise_order=None, tiebreak_order=None) -> str:
    """The INPUT block: the conversation, the answers labelled A.., and the orders the strategy gives."""
    # The conversation and answers go in verbatim (Nectar's "\n\nHuman: ... \n\nAssistant: " turns
    # included), so :func:`parse_user_message` gives back exactly what went in.
    parts = ["INPUT:", "[CONVERSATION START]", prompt, "[CONVERSATION END]", ""]
    for pos, answer in enumerate(answers_in_order):
        letter = LETTERS[pos]
        parts += [f"[MODEL {letter} RESPONSE START]", answer, f"[MODEL {letter} RESPONSE END]", ""]
    if pairwise_order is not None:
        parts.append("PAIRWISE EVALUATION ORDER: " + str([tuple(p) for p in pairwise_order]))
    if tiebreak_order is not None:
        parts.append("TIEBREAK ORDER: " + str(list(tiebreak_order)))
    parts += ["", "OUTPUT:"]
    return "\n".join(parts)


_ANSWER_BLOCK = re.compile(r"\[MODEL ([A-Z]) RESPONSE START\]\n(.*?)\n\[MODEL \1 RESPONSE END\]", re.DOTALL)
_CONVERSATION = re.compile(r"\[CONVERSATION START\]\n(.*?)\n\[CONVERSATION END\]", re.DOTALL)


def parse_user_message(text: str) -> tuple[str, list[str]]:
    """Inverse of :func:`build_user_message`: ``(conversation, answers in input order)``."""
    conv = _CONVERSATION.search(text)
    blocks = _ANSWER_BLOCK.findall(text)
    if conv is None or not blocks:
        raise ValueError("not a ranking prompt of this project (no [CONVERSATION START] / [MODEL X RESPONSE START] blocks)")
    letters = [b[0] for b in blocks]
    if letters != list(LETTERS[:len(blocks)]):
        raise ValueError(f"answer blocks out of order: {letters}")
    return conv.group(1), [b[1] for b in blocks]


def build_ranking_request(
    prompt: str,
    answers: list[str],
    strategy: str = NAIVE,
    *,
    item_id: str = "",
    seed: int = 0,
    shuffle: bool = True,
    static_tiebreak: str | None = None,
    system_prompt_text: str | None = None,
) -> RankingRequest:
    """A ranking prompt for one conversation and its ``K`` answers under ``strategy``.

    ``shuffle``: present the answers in a random order (seeded by ``seed``, ``item_id`` or the
    prompt, and the strategy); ``False`` keeps the given order, as the authors' runs did
    (``shuffle=False`` in their ``log_args.txt``). ``static_tiebreak``: the letters of the static
    tie-break order (default ``A..K``; the logs do not record the authors' one).
    ``system_prompt_text``: replace our system prompt, e.g. with :func:`load_prompt_log`'s text.
    """
    s = get_strategy(strategy)
    k = len(answers)
    if k < 2 or k > len(LETTERS):
        raise ValueError(f"need between 2 and {len(LETTERS)} answers, got {k}")
    key = item_id or hashlib.sha256(prompt.encode()).hexdigest()[:16]
    rng = seeded_rng(seed, key, s.name)
    perm = [int(i) for i in rng.permutation(k)] if shuffle else list(range(k))
    letters = list(LETTERS[:k])
    pairs = list(itertools.combinations(letters, 2))
    pairwise_order = None
    if s.pairwise_order == "fixed":
        pairwise_order = pairs
    elif s.pairwise_order == "random":
        pairwise_order = [pairs[i] for i in rng.permutation(len(pairs))]
    tiebreak_order = None
    if s.tiebreak == "given_random":
        tiebreak_order = [letters[i] for i in rng.permutation(k)]
    elif s.tiebreak == "given_static":
        tiebreak_order = list(static_tiebreak or "".join(letters))
        if sorted(tiebreak_order) != letters:
            raise ValueError(f"static_tiebreak must be a permutation of {''.join(letters)}, got {static_tiebreak!r}")
    user = build_user_message(prompt, [answers[i] for i in perm], pairwise_order=pairwise_order,
                              tiebreak_order=tiebreak_order)
    messages = [{"role": "system", "content": system_prompt_text or system_prompt(s, k)},
                {"role": "user", "content": user}]
    return RankingRequest(id=item_id or key, strategy=s.name, messages=messages, permutation=perm,
                          pairwise_order=pairwise_order, tiebreak_order=tiebreak_order)


# ---------------------------------------------------------------------------------------------
# The authors' prompts, verbatim


class PromptLogError(ValueError):
    """A ``prompt_log.txt`` this loader cannot read safely."""


@dataclass(frozen=True)
class PromptLog:
    """The system prompt of one of the authors' runs, read from its ``prompt_log.txt``."""

    path: str
    template: str
    """The f-string body with its ``{...}`` placeholders."""

    def render(self, k: int = 7) -> str:
        """The exact system prompt the authors sent for ``k`` answers."""

        def substitute(match: re.Match) -> str:
            try:
                return str(_safe_eval(ast.parse(match.group(1), mode="eval").body, k))
            except (PromptLogError, SyntaxError) as exc:
                raise PromptLogError(f"{self.path}: cannot render placeholder {{{match.group(1)}}}: {exc}") from None

        return re.sub(r"\{([^{}]+)\}", substitute, self.template)


def _safe_eval(node: ast.AST, k: int):
    """Evaluate the few expression forms the authors' templates use (``k``, ``str(...)``,
    ``" ,".join([...] * k)``) without ``eval``: anything else is refused."""
    if isinstance(node, ast.Name) and node.id == "k":
        return k
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return node.value
    if isinstance(node, ast.List):
        return [_safe_eval(e, k) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _safe_eval(node.left, k), _safe_eval(node.right, k)
        if isinstance(left, (list, str)) and isinstance(right, int) and 0 <= right <= 64:
            return left * right
        raise PromptLogError("only list * k is supported")
    if isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords:
        arg = _safe_eval(node.args[0], k)
        if isinstance(node.func, ast.Name) and node.func.id == "str":
            return str(arg)
        if (isinstance(node.func, ast.Attribute) and node.func.attr == "join"
                and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)
                and isinstance(arg, list) and all(isinstance(a, str) for a in arg)):
            return node.func.value.value.join(arg)
    raise PromptLogError(f"unsupported expression {ast.unparse(node)!r}")


def load_prompt_log(path: str | Path) -> PromptLog:
    """Read the ``get_system_prompt`` f-string from an authors' ``prompt_log.txt``.

    The file holds Python source; it is parsed with :mod:`ast`, never executed. Only the two
    placeholders the authors used (``{k}`` and the ``[['_', ...]]`` format expression) are
    supported; anything else raises :class:`PromptLogError` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "prompt_log.txt"
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no prompt log at {path}") from None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise PromptLogError(f"{path}: not Python source ({exc.msg}, line {exc.lineno})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr):
            pieces = []
            for part in node.value.values:
                if isinstance(part, ast.Constant):
                    if "{" in part.value or "}" in part.value:
                        raise PromptLogError(f"{path}: literal braces in the prompt template are not supported")
                    pieces.append(part.value)
                elif isinstance(part, ast.FormattedValue):
                    pieces.append("{" + ast.unparse(part.value) + "}")
            return PromptLog(path=str(path), template="".join(pieces))
    raise PromptLogError(f"{path}: no `return f\"\"\"...\"\"\"` prompt template found")

