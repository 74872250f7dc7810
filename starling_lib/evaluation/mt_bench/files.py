"""MT-Bench's files in FastChat's layout: questions, judge prompts, answers, references, judgments.

FastChat ``fastchat/llm_judge/data/<bench>/``: ``question.jsonl``, ``judge_prompts.jsonl``,
``model_answer/<model>.jsonl``, ``reference_answer/gpt-4.jsonl`` and
``model_judgment/<judge>_single.jsonl`` / ``_pair.jsonl``. Every loader checks each row and a bad
one raises ``ValueError`` naming the file, the line and the field. :func:`load_bench` opens a
bench folder (the project's demo set, FastChat's published files, or any folder in that layout)
the same way for the CLI and notebook 04.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from starling_lib.paths import DATA, shared_data

DEMO_DIR = DATA / "mt_bench_demo"
"""The project's offline MT-Bench-shaped set over the tiny world (see :mod:`.demo`)."""

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


def category_counts(questions: Iterable[Question]) -> dict[str, int]:
    return dict(Counter(q.category for q in questions))



# ---- bench folders ------------------------------------------------------------------------------

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



@dataclass(frozen=True)
class Bench:
    """An MT-Bench folder in FastChat's layout, its name and its questions (possibly the first N)."""

    name: str
    """``demo`` (the project's set), ``mt_bench`` (FastChat's, under the shared data) or the folder's name."""
    folder: Path
    question_file: Path
    questions: list[Question]

    def judge_prompts(self) -> dict[str, JudgePrompt]:
        """The folder's ``judge_prompts.jsonl``; an error naming the folder when it has none."""
        path = self.folder / "judge_prompts.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no judge prompts next to {self.question_file.name}")
        return load_judge_prompts(path)

    def references(self, path: str | Path | None = None) -> tuple[dict[int, list[str]] | None, Path | None]:
        """``(references by question id, their file)`` from ``path``, else the folder's first
        ``reference_answer/*.jsonl``; ``(None, None)`` when there is none."""
        path = Path(path) if path else reference_file(self.folder)
        return (load_references(path), path) if path else (None, None)


def bench_name(folder: Path) -> str:
    """``demo`` for the project's demo set, ``mt_bench`` for FastChat's shared files, else the folder name."""
    if folder.resolve() == DEMO_DIR.resolve():
        return "demo"
    shared = shared_data("mt_bench")
    if shared is not None and folder.resolve() == shared.resolve():
        return "mt_bench"
    return folder.name


def load_bench(questions: str | Path | None = None, *, bench_dir: str | Path | None = None,
               limit: int | None = None) -> Bench:
    """The bench of ``questions`` (a FastChat folder or its ``question.jsonl``, e.g. ``--questions``),
    else of ``bench_dir`` as :func:`resolve_bench_dir` reads ``EvalConfig.mt_bench_dir`` (``None``:
    the demo set, ``"shared"``: FastChat's published files), with its first ``limit`` questions."""
    path = Path(questions) if questions else resolve_bench_dir(bench_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MT-Bench question folder or file")
    file, folder = (path / "question.jsonl", path) if path.is_dir() else (path, path.parent)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no question.jsonl here (FastChat layout expected)")
    loaded = load_questions(file)
    return Bench(bench_name(folder), folder, file, loaded if limit is None else loaded[:limit])
