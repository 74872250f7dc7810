"""Read a judge's K-wise ranking out of free text.

GPT-4 was asked to answer ``[['_', '_', ...]]`` with the letters of the answers, best first, but
the real logs (``../shared/data/starling_ratings``) show many shapes around that:

- ``[['E', 'G', 'F', 'D', 'A', 'C', 'B']]`` at the end of prose (most rows);
- a labelled line: ``Final Ranking: ['B', 'A', ...]``, ``Final Rankings: E, D, A, F, G, C, B``,
  ``Ranking from best to worst: C, D, B, E, G, F, A.``,
  ``Final ranking based on pairwise comparison results: [...]``;
- pairwise verdicts such as ``('A', 'B'): A`` earlier in the text, which must not be mistaken for
  the ranking;
- lowercase letters, double quotes, extra spaces, and rankings with fewer than K letters.

:func:`parse_ranking` returns the input positions best first (``A`` = 0) as a
:class:`ParsedRanking` (a list with ``complete`` / ``missing`` / ``pattern`` attributes).
Text with no ranking raises :class:`RankingParseError` with a reason code, so a caller can record
the row as unparseable and carry on.
"""

from __future__ import annotations

import re
import string

LETTERS = string.ascii_uppercase


class RankingParseError(ValueError):
    """No usable ranking in a judge's text. ``reason`` is a short code, the message says more."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class ParsedRanking(list):
    """Input positions best first (``A`` = 0), plus how they were found.

    ``complete``: all K positions present once. ``missing``: positions absent from the text
    (appended last, in input order, when ``fill_missing=True``). ``duplicates``: letters named more
    than once (only the first mention counts). ``pattern``: which form was read
    (``double_bracket``, ``labelled``, ``bare``).
    """

    def __init__(self, order, *, k: int, missing=(), duplicates=(), pattern: str = "", filled: bool = False):
        super().__init__(order)
        self.k = k
        self.missing = list(missing)
        self.duplicates = list(duplicates)
        self.pattern = pattern
        self.filled = filled

    @property
    def complete(self) -> bool:
        return not self.missing and not self.duplicates

    @property
    def letters(self) -> list[str]:
        return [LETTERS[i] for i in self]

    def __repr__(self) -> str:
        extra = "" if self.complete else f", missing={self.missing}, duplicates={self.duplicates}"
        return f"ParsedRanking({list(self)}, pattern={self.pattern!r}{extra})"


# One item of a list of answer labels: an optional "Model"/"Assistant" prefix, optional quotes, a
# single letter. Items are separated by commas, '>', semicolons or "and". The segment is split
# first and each piece matched whole, so the time is linear in the line (a single regex over the
# whole list backtracks exponentially on long lines that almost match).
_ITEM = re.compile(r"""(?:(?:model|assistant|response|answer)\s+)?(['"`]?)\s*([A-Za-z])\s*\1""", re.IGNORECASE)
_SEP = re.compile(r"\s*(?:,|>|;|\band\b)\s*", re.IGNORECASE)
_DOUBLE_BRACKET = re.compile(r"\[\s*\[(.*?)\]\s*\]", re.DOTALL)
# "Final Ranking:", "Final rankings:", "Ranking from best to worst:", "Ranking:",
# "Final ranking based on pairwise comparison results:" ... up to the colon.
_LABELLED = re.compile(r"^[^\n:]*\brank(?:ing|ings|ed)?\b[^\n:]*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _letters_of(segment: str) -> list[str] | None:
    """The letters of ``segment`` if it is only a list of answer labels, else ``None``."""
    body = segment.strip().rstrip(".").strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1].strip()
    parts = _SEP.split(body)
    if len(parts) > 1 and parts[-1] == "":  # a trailing comma
        parts.pop()
    letters = []
    for part in parts:
        match = _ITEM.fullmatch(part)
        if match is None:
            return None
        letters.append(match.group(2).upper())
    return letters


def parse_ranking(text: str, k: int, *, fill_missing: bool = False, allow_incomplete: bool = True) -> ParsedRanking:
    """Input positions best first from a judge's ranking text.

    Looks, in order, for the last ``[[...]]`` holding letters, then the last line labelled as a
    ranking (``Final Ranking: ...``), then the last line that is nothing but a list of letters.
    Raises :class:`RankingParseError` (reasons: ``empty``, ``no_ranking``, ``out_of_range``,
    ``incomplete``) when none gives a ranking of answer letters ``A``..``K``.
    """
    if not isinstance(text, str) or not text.strip():
        raise RankingParseError("empty", "the judge returned no text")
    if k < 2 or k > len(LETTERS):
        raise ValueError(f"k must be between 2 and {len(LETTERS)}, got {k}")

    letters, pattern = None, ""
    for match in reversed(list(_DOUBLE_BRACKET.finditer(text))):
        letters = _letters_of(match.group(1))
        if letters:
            pattern = "double_bracket"
            break
    if not letters:
        for match in reversed(list(_LABELLED.finditer(text))):
            letters = _letters_of(match.group(1))
            if letters:
                pattern = "labelled"
                break
    if not letters:
        for line in reversed(text.strip().splitlines()):
            candidate = _letters_of(line)
            if candidate and len(candidate) >= 2:
                letters, pattern = candidate, "bare"
                break
    if not letters:
        tail = text.strip()[-80:].replace("\n", " ")
        raise RankingParseError("no_ranking", f"no list of answer letters found (text ends: {tail!r})")

    valid = LETTERS[:k]
    bad = sorted({c for c in letters if c not in valid})
    if bad:
        raise RankingParseError("out_of_range", f"letters {bad} are not among the {k} answers {valid[0]}-{valid[-1]}")
    order, seen, duplicates = [], set(), []
    for c in letters:
        if c in seen:
            duplicates.append(c)
            continue
        seen.add(c)
        order.append(valid.index(c))
    missing = [i for i in range(k) if valid[i] not in seen]
    if missing and not allow_incomplete:
        raise RankingParseError("incomplete", f"ranking names {len(order)} of {k} answers; missing "
                                              f"{[valid[i] for i in missing]}")
    if missing and fill_missing:
        return ParsedRanking(order + missing, k=k, missing=missing, duplicates=duplicates, pattern=pattern, filled=True)
    return ParsedRanking(order, k=k, missing=missing, duplicates=duplicates, pattern=pattern)
