"""Row checks for Nectar rows and Starling judge logs, and the report of what a source held.

:func:`check_records` validates parsed records (``(row, line, value, why it is not JSON)``, as the
readers in ``nectar.py`` yield them) one row at a time, collecting every problem of a row with the
field it concerns and a reason code (``duplicate_rank``, ``missing_field``...). Three kinds of file
(:func:`detect_kind`, from the keys of the first record):

- ``nectar``: Nectar rows (``schema.py``);
- ``rating-log``: a K-wise ranking log of the authors' judge runs (``rating_text``, ``ranking_order``,
  ``model_ranking``, ``k``; the Nectar fields it lacks are derived). ``k`` may differ between rows
  (the agreement logs hold k = 2..7 for each prompt);
- ``pointwise-log``: one row per rated answer: ``prompt``, one ``answers`` object, ``model``, GPT-4's
  score of that answer alone in ``rank``, and ``rating_text``.

What is kept rather than refused: representation quirks (rank ``"7.0"`` or ``7``, counts as numeric
strings, ``source`` as one string, ``good_natured`` as ``"true"``) are normalised and counted; fields
outside the schema are kept on the row and counted per name (``unknown="reject"`` makes them
errors); answers without any ``rank`` are valid (rank ``None``) for everything that does not need
Nectar's rank, and such an unrated Nectar row may lack ``good_natured`` (GPT-4 sets both when it
ranks); in a ranking log, distinct whole ranks other than 1..K are the Nectar ranks of a subset of a
larger ranking; an empty answer in a judge log is what the judge was shown (an error in Nectar rows).
``strict=True`` raises :class:`NectarFormatError` at the first bad row;
``strict=False`` drops bad rows into the :class:`ValidationReport`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from starling_lib.data.chat import prompt_to_messages
from starling_lib.data.schema import ANSWER_FIELDS, NECTAR_FIELDS, NectarFormatError, location

RATING_FIELDS = ("rating_text", "ranking_order", "model_ranking", "k")
POINTWISE_FIELDS = ("prompt", "answers", "model", "rank", "rating_text")
POINTWISE_ROW = ("prompt", "answer", "model", "score", "rating_text", "good_natured")
"""Fields of a row read from a pointwise log (``score`` is the log's ``rank``)."""
KINDS = {"nectar": "Nectar rows", "rating-log": "ranking log", "pointwise-log": "pointwise log",
         "hub": "Nectar rows, hub"}
UNKNOWN = ("keep", "reject")
MAX_PROBLEMS = 50  # problems kept in a report; `dropped` still counts every bad row

# GPT-4 opens its reply with its verdict ("This is a [not] good natured conversation", once just
# "good natured\n[[..."); the first mention decides, so a later "not good natured" about one answer
# does not flip it.
_GOOD_NATURED = re.compile(r"(not (?:a )?)?good[ -]?natured", re.IGNORECASE)

Record = tuple[int, int | None, Any, str | None]  # (row, line, parsed value, why it is not JSON)


# ---------------------------------------------------------------------------------------- report

@dataclass
class RowProblem:
    """One thing wrong with one row: where (row, JSONL line, field), a reason code, and a sentence."""

    row: int
    line: int | None
    field: str | None
    reason: str
    detail: str

    def to_error(self, path: str | None) -> NectarFormatError:
        return NectarFormatError(self.reason, self.detail, path=path, row=self.row, line=self.line,
                                 field=self.field)


@dataclass
class ValidationReport:
    """What a source held: rows read and kept, bad rows per reason, quirks normalised."""

    path: str
    format: str
    """The kind of file: ``"nectar"``, ``"rating-log"``, ``"pointwise-log"`` or ``"hub"``."""
    n_rows: int = 0
    n_valid: int = 0
    n_prompts: int = 0
    """Distinct prompts among the kept rows (a pointwise log has one row per rated answer)."""
    answers_per_row: dict[int, int] = field(default_factory=dict)
    """Number of answers (k) -> kept rows; several keys when k varies inside the file."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Reason code -> number of bad rows (each row counted once, under its first problem)."""
    problems: list[RowProblem] = field(default_factory=list)
    """The first ``MAX_PROBLEMS`` problems, several per row where a row has several."""
    normalised: dict[str, int] = field(default_factory=dict)
    """Quirk -> number of kept rows it was normalised in (e.g. ``rank_as_string``)."""
    unknown_fields: dict[str, int] = field(default_factory=dict)
    """Field outside the schema -> kept rows holding it (kept on those rows; ``answers[].x`` inside answers)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def format_text(self) -> str:
        lines = [f"{self.path}: {self.n_rows} rows, {self.n_valid} valid ({KINDS.get(self.format, self.format)})"]
        if self.format == "pointwise-log":
            lines.append(f"rated answers of {self.n_prompts} prompts, one score each")
        elif len(self.answers_per_row) > 1:
            lines.append("rows per k: " + ", ".join(f"{k}: {n}" for k, n in sorted(self.answers_per_row.items())))
        if self.unknown_fields:
            lines.append("fields outside the schema, kept: " + counts_text(self.unknown_fields))
        if self.dropped:
            lines.append("dropped: " + counts_text(self.dropped))
        if self.normalised:
            lines.append("normalised: " + counts_text(self.normalised))
        lines += [f"  {location(None, p.row, p.line, p.field)}: [{p.reason}] {p.detail}" for p in self.problems]
        return "\n".join(lines)

    def _add_bad_row(self, problems: list[RowProblem]) -> None:
        self.dropped[problems[0].reason] = self.dropped.get(problems[0].reason, 0) + 1
        self.problems.extend(problems[:MAX_PROBLEMS - len(self.problems)])


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def detect_kind(record: Any) -> str:
    """``"pointwise-log"``, ``"rating-log"`` or ``"nectar"`` from the keys of one record."""
    if not isinstance(record, dict):
        return "nectar"
    if "rating_text" in record and isinstance(record.get("answers"), dict):
        return "pointwise-log"
    return "rating-log" if "rating_text" in record or "ranking_order" in record else "nectar"


# -------------------------------------------------------------------------------- row validation

class _RowCheck:
    """Validates and normalises one record, collecting every problem instead of stopping at the first."""

    def __init__(self, record: dict, *, kind: str, k: int | None, unknown: str = "keep"):
        self.record, self.kind, self.k, self.keep_unknown = record, kind, k, unknown == "keep"
        self.rating_log = kind == "rating-log"
        self.problems: list[tuple[str | None, str, str]] = []  # (field, reason, detail)
        self.notes: Counter[str] = Counter()
        self.row: dict[str, Any] = {}
        self.derived: list[str] = []  # Nectar fields a rating log lacks, filled in here
        self.unknown: dict[str, Any] = {}  # fields outside the schema, kept on the row
        self.ranked = True  # False when no answer carries a rank

    def fail(self, field_name: str | None, reason: str, detail: str) -> None:
        self.problems.append((field_name, reason, detail))

    def run(self) -> None:
        if self.kind == "pointwise-log":
            return self.run_pointwise()
        # good_natured is checked with the ranks: an unrated row may lack it
        self.check_keys(NECTAR_FIELDS + RATING_FIELDS if self.rating_log else NECTAR_FIELDS,
                        ("prompt", "answers") + RATING_FIELDS if self.rating_log else NECTAR_FIELDS[:5])
        self.check_prompt()
        self.check_answers()
        self.check_counts()
        self.check_source()
        self.check_good_natured()
        if self.rating_log:
            self.check_rating_fields()
        if self.derived:
            self.notes["fields_derived_from_rating_log"] += 1

    def run_pointwise(self) -> None:
        """One rated answer: ``answers`` is one ``{answer, model}`` object, ``rank`` its score."""
        self.check_keys(POINTWISE_FIELDS, POINTWISE_FIELDS)
        self.check_prompt()
        entry = self.record.get("answers")
        if "answers" in self.record and not isinstance(entry, dict):
            return self.fail("answers", "wrong_type", f"answers must be one object, got {type(entry).__name__}")
        self.ranked = False
        answer = self.check_answer("answers", entry) if entry is not None else None
        model, text = self.record.get("model"), self.record.get("rating_text")
        if "model" in self.record and not isinstance(model, str):
            self.fail("model", "wrong_type", f"model must be a string, got {type(model).__name__}")
        elif answer is not None and isinstance(answer["model"], str) and model != answer["model"]:
            self.fail("model", "model_mismatch", f"model {model!r} differs from answers.model {answer['model']!r}")
        if "rating_text" in self.record and not isinstance(text, str):
            self.fail("rating_text", "wrong_type", f"rating_text must be a string, got {type(text).__name__}")
        score = self.record.get("rank")
        if isinstance(score, int) and not isinstance(score, bool):
            score = float(score)
        if "rank" in self.record and not (isinstance(score, float) and math.isfinite(score)):
            self.fail("rank", "missing_score", f"the score (rank) is not a number: {self.record['rank']!r:.40}")
        if answer is not None:
            good = self.good_natured_from_rating(text) if isinstance(text, str) else None
            self.row.update(answer=answer["answer"], model=model, score=score, rating_text=text, good_natured=good)

    def check_keys(self, known: tuple[str, ...], required: tuple[str, ...]) -> None:
        for name in required:
            if name not in self.record:
                self.fail(name, "missing_field", f"field {name!r} is missing")
        for name in self.record:
            if name in known:
                continue
            if self.keep_unknown:
                self.unknown[name] = self.record[name]
            else:
                self.fail(name, "unknown_field", f"field {name!r} is not in the schema {known}")

    def check_prompt(self) -> None:
        prompt = self.record.get("prompt")
        if prompt is None:
            return
        if not isinstance(prompt, str):
            return self.fail("prompt", "wrong_type", f"prompt must be a string, got {type(prompt).__name__}")
        try:
            messages = prompt_to_messages(prompt)
        except NectarFormatError as err:
            return self.fail("prompt", err.reason, err.detail)
        self.row["prompt"] = prompt
        self.row["human_turns"] = sum(m["role"] == "user" for m in messages)

    def check_answers(self) -> None:
        answers = self.record.get("answers")
        if answers is None:
            return
        if not isinstance(answers, list):
            return self.fail("answers", "wrong_type", f"answers must be a list, got {type(answers).__name__}")
        if len(answers) < 2:
            self.fail("answers", "wrong_num_answers", f"{len(answers)} answers; a ranking needs at least 2")
        if self.k is not None and len(answers) != self.k:
            self.fail("answers", "wrong_num_answers", f"{len(answers)} answers, expected k={self.k}")
        # No rank on any answer: an unrated row (e.g. the input of a ranking run), valid where rank is not needed.
        self.ranked = any(isinstance(entry, dict) and entry.get("rank") is not None for entry in answers)
        entries = [self.check_answer(f"answers[{i}]", entry) for i, entry in enumerate(answers)]
        if not self.ranked:
            self.notes["answers_without_rank"] += 1
            if None not in entries:
                self.row["answers"] = entries
            return
        ranks = [entry.get("rank") for entry in entries if entry is not None]
        if len(ranks) == len(answers) and None not in ranks and self.check_rank_set(ranks):
            self.row["answers"] = entries

    def check_answer(self, where: str, entry: Any) -> dict | None:
        """One ``{answer, model, rank}`` object normalised, or None if it is unusable."""
        if not isinstance(entry, dict):
            return self.fail(where, "wrong_type", f"{where} must be an object, got {type(entry).__name__}")
        known = ANSWER_FIELDS if self.ranked else ("answer", "model")
        extra = {name: value for name, value in entry.items() if name not in known}
        for name in extra:
            if self.keep_unknown:
                self.unknown[f"answers[].{name}"] = True
            else:
                self.fail(f"{where}.{name}", "unknown_field", f"{where} has unknown key {name!r}")
        answer, model = entry.get("answer"), entry.get("model")
        if "answer" not in entry:
            self.fail(f"{where}.answer", "missing_field", f"{where} has no 'answer'")
        elif not isinstance(answer, str):
            self.fail(f"{where}.answer", "non_string_answer", f"answer is {type(answer).__name__}, not a string")
        elif not answer.strip() and self.kind == "nectar":
            self.fail(f"{where}.answer", "empty_answer", f"answer is empty ({answer!r})")
        elif not answer.strip():  # in a judge log it is what the judge was shown and judged: kept
            self.notes["empty_answer"] += 1
        if "model" not in entry:
            self.fail(f"{where}.model", "missing_field", f"{where} has no 'model'")
        elif not isinstance(model, str):
            self.fail(f"{where}.model", "wrong_type", f"model must be a string, got {type(model).__name__}")
        rank = self.check_rank(where, entry.get("rank")) if self.ranked else None
        return {"answer": answer, "model": model, "rank": rank, **(extra if self.keep_unknown else {})}

    def check_rank(self, where: str, rank: Any) -> float | None:
        """Rank as a float (``"7.0"`` and ``7`` normalised), or None after recording why not."""
        if isinstance(rank, str):
            try:
                value = float(rank)
            except ValueError:
                return self.fail(f"{where}.rank", "wrong_type", f"rank {rank!r} is not a number")
            self.notes["rank_as_string"] += 1
            rank = value
        elif isinstance(rank, int) and not isinstance(rank, bool):
            self.notes["rank_as_int"] += 1
            rank = float(rank)
        if rank is None or (isinstance(rank, float) and not math.isfinite(rank)):
            return self.fail(f"{where}.rank", "missing_rank", f"rank is missing ({rank!r})")
        if not isinstance(rank, float):
            return self.fail(f"{where}.rank", "wrong_type", f"rank must be a number, got {type(rank).__name__}")
        if not rank.is_integer():
            return self.fail(f"{where}.rank", "tied_rank",
                             f"rank {rank} is not a whole number (an averaged rank encodes a tie)")
        return rank

    def check_rank_set(self, ranks: list[float]) -> bool:
        """Ranks must be distinct and exactly 1..K; in a ranking log, distinct whole ranks from 1 up
        are also the Nectar ranks of a subset of a larger ranking (the agreement logs' k < 7 rows)."""
        first_with: dict[float, int] = {}
        for i, rank in enumerate(ranks):
            if rank in first_with:
                self.fail(f"answers[{i}].rank", "duplicate_rank",
                          f"duplicate rank {rank} (also answers[{first_with[rank]}])")
            first_with.setdefault(rank, i)
        if len(first_with) < len(ranks):
            return False
        expected = set(range(1, len(ranks) + 1))
        if self.rating_log and set(ranks) != expected and min(ranks) >= 1:
            self.notes["ranks_of_a_larger_ranking"] += 1
            return True
        missing = sorted(expected - set(ranks))
        for i, rank in enumerate(ranks):
            if rank not in expected:
                self.fail(f"answers[{i}].rank", "missing_rank", f"rank {rank} is outside 1..{len(ranks)} "
                          f"(missing: {', '.join(map(str, missing))})")
        return not missing

    def count_field(self, name: str) -> int | None:
        """An int field (``turns``, ``num_responses``, ``k``); numeric strings normalised."""
        value = self.record.get(name)
        if isinstance(value, str) and value.strip().isdigit():
            self.notes[f"{name}_as_string"] += 1
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if name in self.record:
            self.fail(name, "wrong_type", f"{name} must be an integer, got {value!r:.40}")
        return None

    def check_counts(self) -> None:
        n_answers = len(self.row["answers"]) if "answers" in self.row else None
        turns, num_responses = self.count_field("turns"), self.count_field("num_responses")
        if num_responses is not None and n_answers is not None and num_responses != n_answers:
            self.fail("num_responses", "wrong_num_answers",
                      f"num_responses is {num_responses} but there are {n_answers} answers")
        if "turns" not in self.record and "human_turns" in self.row:
            turns = self.row["human_turns"]
            self.derived.append("turns")
        if "num_responses" not in self.record:
            num_responses = n_answers
            self.derived.append("num_responses")
        self.row.update(turns=turns, num_responses=num_responses)

    def check_source(self) -> None:
        source = self.record.get("source", [])
        if isinstance(source, str):
            self.notes["source_as_string"] += 1
            source = [source]
        if not (isinstance(source, list) and all(isinstance(s, str) for s in source)):
            return self.fail("source", "wrong_type", f"source must be a list of strings, got {source!r:.60}")
        self.row["source"] = source
        if "source" not in self.record:
            self.derived.append("source")

    def check_good_natured(self) -> None:
        value = self.record.get("good_natured")
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            self.notes["good_natured_as_string"] += 1
            value = value.strip().lower() == "true"
        if "good_natured" not in self.record and isinstance(self.record.get("rating_text"), str):
            value = self.good_natured_from_rating(self.record["rating_text"])
            self.derived.append("good_natured")
        if isinstance(value, bool):
            self.row["good_natured"] = value
        elif "good_natured" in self.record:
            self.fail("good_natured", "wrong_type", f"good_natured must be a bool, got {value!r:.40}")
        elif not self.rating_log and self.ranked:
            self.fail("good_natured", "missing_field", "field 'good_natured' is missing")
        else:  # an unrated row: GPT-4 has not judged it yet
            self.row["good_natured"] = None

    def good_natured_from_rating(self, rating_text: str) -> bool:
        verdict = _GOOD_NATURED.search(rating_text)
        if verdict is None:
            self.notes["good_natured_assumed"] += 1  # no verdict: Nectar's default, flagged in the report
            return True
        return verdict.group(1) is None

    def check_rating_fields(self) -> None:
        text, order, models = (self.record.get(name) for name in ("rating_text", "ranking_order", "model_ranking"))
        if "rating_text" in self.record and not isinstance(text, str):
            self.fail("rating_text", "wrong_type", f"rating_text must be a string, got {type(text).__name__}")
        if "model_ranking" in self.record and not _is_list_of(models, str):
            self.fail("model_ranking", "wrong_type", f"model_ranking must be a list of strings, got {models!r:.60}")
        k = self.count_field("k")
        n_answers = self.row.get("num_responses")
        if k is not None and n_answers is not None and k != n_answers:
            self.fail("k", "wrong_num_answers", f"k is {k} but there are {n_answers} answers")
        if "ranking_order" in self.record and not _is_list_of(order, int):
            self.fail("ranking_order", "wrong_type", f"ranking_order must be a list of ints, got {order!r:.60}")
        elif k is not None and order is not None:
            for position in order:
                if not 0 <= position < k:
                    self.fail("ranking_order", "ranking_out_of_range", f"position {position} is not in [0, {k})")
                    break
            self.row.update(rating_text=text, ranking_order=order, model_ranking=models, k=k,
                            ranking_complete=sorted(order) == list(range(k)))


def _is_list_of(value: Any, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


# ---------------------------------------------------------------------------------------- records

def check_records(label: str, kind: str, records: Iterable[Record], *, strict: bool, k: int | None,
                  unknown: str = "keep") -> tuple[list[dict], ValidationReport]:
    """Validate every record as ``kind``; raise at the first bad one (strict) or drop it into the
    report. ``unknown="keep"`` keeps fields outside the schema on the row (after the schema's own)
    and counts them; ``"reject"`` makes each one an ``unknown_field`` problem."""
    if unknown not in UNKNOWN:
        raise ValueError(f"unknown must be one of {UNKNOWN}, got {unknown!r}")
    report = ValidationReport(path=label, format=kind)
    rows, prompts = [], set()
    for row, line, value, not_json in records:
        report.n_rows += 1
        if not_json is not None:
            problems = [RowProblem(row, line, None, "invalid_json", not_json)]
        else:
            check = _RowCheck(value, kind=kind, k=k, unknown=unknown)
            check.run()
            problems = [RowProblem(row, line, *problem) for problem in check.problems]
        if problems:
            if strict:
                raise problems[0].to_error(label)
            report._add_bad_row(problems)
            continue
        report.n_valid += 1
        _count(report.normalised, check.notes)
        _count(report.unknown_fields, dict.fromkeys(check.unknown, 1))
        kept = {name: check.row[name] for name in row_fields(kind)}
        rows.append({**kept, **{name: v for name, v in check.unknown.items() if not name.startswith("answers[]")}})
        prompts.add(kept["prompt"])
        if kind != "pointwise-log":
            _count(report.answers_per_row, {len(kept["answers"]): 1})
    report.n_prompts = len(prompts)
    return rows, report


def row_fields(kind: str) -> tuple[str, ...]:
    """The fields of a row read from a file of this kind, in order."""
    if kind == "pointwise-log":
        return POINTWISE_ROW
    return NECTAR_FIELDS + RATING_FIELDS + ("ranking_complete",) if kind == "rating-log" else NECTAR_FIELDS


def _count(totals: dict, counts: dict) -> None:
    for key, n in counts.items():
        totals[key] = totals.get(key, 0) + n


def warn_dropped(report: ValidationReport) -> None:
    if report.dropped:
        first = report.problems[0]
        warnings.warn(
            f"{report.path}: dropped {report.n_rows - report.n_valid} of {report.n_rows} rows "
            f"({counts_text(report.dropped)}); first: {location(None, first.row, first.line, first.field)}: "
            f"{first.detail}. Pass return_report=True (or call validate_nectar) for details.",
            stacklevel=3,
        )
