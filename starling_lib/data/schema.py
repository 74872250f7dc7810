"""The Nectar schema exactly as published (``berkeley-nest/Nectar`` on the Hugging Face Hub).

One row per prompt::

    prompt        str   "\\n\\nHuman: ...\\n\\nAssistant: " (Anthropic HH format, any number of turns)
    answers       list  [{"answer": str, "model": str, "rank": float}, ...]  rank 1.0 = best
    turns         int   number of Human turns in the prompt
    num_responses int   number of answers (7 in Nectar)
    source        list  [str, ...] datasets the prompt came from (e.g. "sharegpt")
    good_natured  bool  GPT-4's judgement of whether the request is benign

Every loader returns rows with exactly these fields, in this order. :class:`NectarFormatError` is
what every check raises when something does not follow the schema.
"""

from __future__ import annotations

import datasets

NECTAR_FIELDS = ("prompt", "answers", "turns", "num_responses", "source", "good_natured")
ANSWER_FIELDS = ("answer", "model", "rank")

NECTAR_FEATURES = datasets.Features({
    "prompt": datasets.Value("string"),
    "answers": [{
        "answer": datasets.Value("string"),
        "model": datasets.Value("string"),
        "rank": datasets.Value("float64"),
    }],
    "turns": datasets.Value("int64"),
    "num_responses": datasets.Value("int64"),
    "source": [datasets.Value("string")],
    "good_natured": datasets.Value("bool"),
})

HUMAN = "\n\nHuman: "
ASSISTANT = "\n\nAssistant: "


def location(path: str | None, row: int | None, line: int | None, field: str | None) -> str:
    """``data/x.jsonl: row 12 (line 13), field 'answers[3].rank'`` (parts that are known)."""
    parts = []
    if row is not None:
        parts.append(f"row {row}" + (f" (line {line})" if line is not None and line != row + 1 else ""))
    if field is not None:
        parts.append(f"field {field!r}")
    where = ", ".join(parts)
    return ": ".join(p for p in (path, where) if p)


class NectarFormatError(ValueError):
    """A row (or prompt) that does not follow the Nectar schema; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str, *, path: str | None = None, row: int | None = None,
                 line: int | None = None, field: str | None = None):
        self.reason, self.detail = reason, detail
        self.path, self.row, self.line, self.field = path, row, line, field
        where = location(path, row, line, field)
        super().__init__(f"{where}: {detail}" if where else detail)
