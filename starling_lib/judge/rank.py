"""Rank Nectar-format rows with a judge: build the prompts, ask, parse, map back.

:func:`rank_rows` is the loop of the positional-bias study and of any K-wise labelling run:

1. :func:`~starling_lib.judge.prompts.build_ranking_request` shuffles each row's answers
   (recording the permutation) and writes the strategy's prompt;
2. the judge answers: a :class:`~starling_lib.judge.simulated.SimulatedJudge` in-process, or a
   :class:`~starling_lib.judge.client.JudgeClient` (the local server with a simulated judge, or
   any real endpoint, with its cache, retries and cost accounting);
3. :func:`~starling_lib.judge.parse.parse_ranking` reads the ranking; rows whose text cannot be
   parsed or whose request failed are kept with their status and reason, never dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .parse import LETTERS, ParsedRanking, RankingParseError, parse_ranking
from .prompts import RankingRequest, build_ranking_request


@dataclass
class RankedItem:
    """The judge's verdict on one row."""

    id: str
    strategy: str
    status: str
    """``ok`` (full ranking), ``incomplete`` (fewer than K letters), ``unparseable`` or ``failed``
    (the request itself failed after its retries)."""
    positions: list[int] | None
    """Input positions best first (partial when incomplete, unless ``fill_missing``)."""
    permutation: list[int]
    """``permutation[pos]`` = the row's answer index shown at input position ``pos``."""
    reason: str | None = None
    """Why the row is not ``ok``."""
    text: str | None = None
    """The judge's raw answer."""

    @property
    def answer_order(self) -> list[int] | None:
        """The row's answer indices best first."""
        return None if self.positions is None else [self.permutation[p] for p in self.positions]


@dataclass
class RankingRun:
    """All verdicts of one strategy, plus the client's report when a client was used."""

    strategy: str
    items: list[RankedItem]
    judge_report: object | None = None

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(Counter(item.status for item in self.items))

    def orders(self, *, complete_only: bool = True) -> list[list[int]]:
        """Input positions best first for each ranked row (``complete_only=False`` adds incomplete ones)."""
        keep = ("ok",) if complete_only else ("ok", "incomplete")
        return [item.positions for item in self.items if item.status in keep and item.positions]


def _answers_of(row: dict, where: str) -> list[str]:
    answers = row.get("answers")
    if not isinstance(answers, list) or not answers:
        raise ValueError(f"{where}: field 'answers' must be a non-empty list")
    out = []
    for j, a in enumerate(answers):
        text = a.get("answer") if isinstance(a, dict) else a
        if not isinstance(text, str):
            raise ValueError(f"{where}: answers[{j}].answer must be a string, got {type(text).__name__}")
        out.append(text)
    return out


def _item_from_text(req: RankingRequest, text: str | None, *, fill_missing: bool) -> RankedItem:
    try:
        parsed: ParsedRanking = parse_ranking(text or "", req.k, fill_missing=fill_missing)
    except RankingParseError as err:
        return RankedItem(req.id, req.strategy, "unparseable", None, req.permutation, reason=str(err), text=text)
    status = "ok" if parsed.complete else "incomplete"
    reason = None if parsed.complete else (
        f"missing {[LETTERS[i] for i in parsed.missing]}" + (f", repeated {parsed.duplicates}" if parsed.duplicates else ""))
    return RankedItem(req.id, req.strategy, status, list(parsed), req.permutation, reason=reason, text=text)


def build_requests(rows, strategy: str, *, seed: int = 0, shuffle: bool = True, static_tiebreak: str | None = None,
                   system_prompt_text: str | None = None) -> list[RankingRequest]:
    """One :class:`RankingRequest` per row; ids are ``row['id']`` when present, else the row index."""
    requests = []
    for i, row in enumerate(rows):
        item_id = str(row.get("id", i))
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError(f"row {i}: field 'prompt' must be a string")
        requests.append(build_ranking_request(
            prompt, _answers_of(row, f"row {i}"), strategy, item_id=item_id, seed=seed, shuffle=shuffle,
            static_tiebreak=static_tiebreak, system_prompt_text=system_prompt_text))
    return requests


def rank_rows(rows, strategy: str, judge, *, seed: int = 0, shuffle: bool = True, fill_missing: bool = False,
              static_tiebreak: str | None = None, system_prompt_text: str | None = None,
              desc: str | None = None) -> RankingRun:
    """Rank every row under ``strategy`` with ``judge`` and parse the verdicts.

    ``judge``: a ``SimulatedJudge`` (anything with ``respond(request_json) -> str``) or a
    ``JudgeClient`` (anything with ``run(requests)``). Ids sent to a client are
    ``"<strategy>/<row id>"`` so one cache serves every strategy.
    """
    requests = build_requests(rows, strategy, seed=seed, shuffle=shuffle, static_tiebreak=static_tiebreak,
                              system_prompt_text=system_prompt_text)
    if hasattr(judge, "run"):
        from .records import JudgeRequest

        report = judge.run([JudgeRequest(id=f"{strategy}/{r.id}", messages=r.messages) for r in requests],
                           desc=desc or strategy)
        items = []
        for req, result in zip(requests, report.results):
            if result.status != "ok":
                items.append(RankedItem(req.id, strategy, "failed", None, req.permutation, reason=result.reason))
            else:
                items.append(_item_from_text(req, result.text, fill_missing=fill_missing))
        return RankingRun(strategy, items, judge_report=report)
    if hasattr(judge, "respond"):
        items = [_item_from_text(req, judge.respond({"messages": req.messages}), fill_missing=fill_missing)
                 for req in requests]
        return RankingRun(strategy, items)
    raise TypeError(f"judge must have .run(requests) (a JudgeClient) or .respond(request) (a SimulatedJudge), "
                    f"got {type(judge).__name__}")


def ranking_validator(k: int):
    """A ``validate`` hook for :class:`JudgeClient`: reject answers with no parseable ranking so the
    client retries them (bounded) instead of caching them. Incomplete rankings are accepted."""

    def validate(text: str) -> None:
        parse_ranking(text, k)

    return validate
