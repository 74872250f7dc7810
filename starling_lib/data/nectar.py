"""Load Nectar data: the published dataset, files in its schema, and the Starling authors' judge logs.

Sources :func:`load_nectar` accepts:

- the hub id ``berkeley-nest/Nectar`` (needs internet, or a pre-populated HF cache with
  ``HF_HUB_OFFLINE=1``);
- a ``.jsonl`` / ``.json`` (JSON Lines) or ``.parquet`` file in the Nectar schema (``schema.py``);
- a Starling rating log, ``<strategy>/rankings.jsonl`` (recognised by its ``rating_text`` /
  ``ranking_order`` keys), or the folder holding it. A log has ``prompt``, ``answers``,
  ``rating_text`` (GPT-4's raw reply), ``ranking_order`` (answer positions best-first, GPT-4's ranking
  in this run), ``model_ranking`` and ``k``; the Nectar fields it lacks are derived (see
  :func:`read_rating_log`). The ``rank`` of each answer is kept as stored: in the published logs it is
  Nectar's rank, which need not agree with this run's ``ranking_order``.

Pointwise logs (one row per answer scored alone) are read by :func:`read_pointwise_log`;
:func:`validate_nectar` checks any of these and reports the kind of file it found.

Every row is checked against the schema (``validate.py``): quirks are normalised and counted in the
:class:`ValidationReport`, real errors carry a reason code and the field they concern.
``strict=True`` raises :class:`NectarFormatError` at the first bad row; ``strict=False`` drops bad
rows with a warning that counts them, so data never disappears silently.

The prompt format (``"\\n\\nHuman: ...\\n\\nAssistant: "``) is in ``chat.py``; listwise and pairwise
conversions are in ``convert.py``.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import datasets

from starling_lib.data.schema import NECTAR_FEATURES, NECTAR_FIELDS, NectarFormatError  # noqa: F401  (raised here)
from starling_lib.data.validate import KINDS, Record, ValidationReport, check_records, detect_kind, warn_dropped

HUB_ID = "berkeley-nest/Nectar"

_JSON_SUFFIXES = (".jsonl", ".json")
_HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class NectarSourceError(RuntimeError):
    """A source that cannot be read at all: missing path, unknown file type, unreachable hub."""


# --------------------------------------------------------------------------------------- sources

def _read_jsonl(path: Path) -> Iterator[Record]:
    """Non-blank lines as records; row counts records, line counts lines (both kept for messages)."""
    with open(path, "rb") as f:
        row = 0
        for line_number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                yield row, line_number, None, f"line is not valid JSON ({err})"
            else:
                not_object = None if isinstance(value, dict) else f"line is JSON {type(value).__name__}, not an object"
                yield row, line_number, value, not_object
            row += 1


def _read_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a corrupt or non-parquet file
        raise NectarSourceError(f"{path}: cannot read as parquet ({err})") from None
    return [(row, None, value, None) for row, value in enumerate(table.to_pylist())]


def _hub_help(repo_id: str, split: str, why: str) -> str:
    return (
        f"cannot load {repo_id!r} (split {split!r}) from the Hugging Face Hub: {why}. "
        f"To use it offline, on a machine with internet run\n"
        f"  python -c \"import datasets; datasets.load_dataset('{repo_id}', split='{split}')"
        f".to_parquet('nectar.parquet')\"\n"
        f"then copy nectar.parquet here and call load_nectar('nectar.parquet'); or pre-populate the HF "
        f"cache (datasets.load_dataset once with internet) and set HF_HUB_OFFLINE=1. "
        f"(No local file or folder named {repo_id!r} exists either.)"
    )


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _read_hub(repo_id: str, split: str) -> Iterator[Record]:
    if not _hub_offline():
        # Probe first: without a connection `datasets` retries for ~25 s and logs a stack of errors.
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
        except OSError as err:
            raise NectarSourceError(_hub_help(repo_id, split, f"huggingface.co is unreachable ({err})")) from None
    try:
        dataset = datasets.load_dataset(repo_id, split=split)
    except Exception as err:  # any hub/cache failure means the same thing to the user: no data
        why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise NectarSourceError(_hub_help(repo_id, split, why)) from None
    return ((row, None, value, None) for row, value in enumerate(dataset))


def _open_source(source: str | os.PathLike, split: str) -> tuple[str, str, Iterable[Record]]:
    """(label for messages, kind, records); the kind of a local file comes from its first row's keys."""
    path = Path(source)
    label = os.fspath(source)
    if path.is_dir():
        path = path / "rankings.jsonl"
        if not path.is_file():
            raise NectarSourceError(f"{label}: folder has no rankings.jsonl (a Starling rating-log folder)")
        label = os.fspath(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in _JSON_SUFFIXES:
            records = list(_read_jsonl(path))
        elif suffix == ".parquet":
            records = _read_parquet(path)
        else:
            raise NectarSourceError(f"{label}: unsupported file type {suffix!r}; expected .jsonl, .json "
                                    "(JSON Lines), .parquet, or a folder with rankings.jsonl")
        if not records:
            raise NectarSourceError(f"{label}: the file is empty (no rows; blank lines do not count)")
        first = next((value for _, _, value, error in records if error is None), {})
        return label, detect_kind(first), records
    if _HUB_ID_PATTERN.match(label) and path.suffix.lower() not in (*_JSON_SUFFIXES, ".parquet"):
        return label, "hub", _read_hub(label, split)
    raise NectarSourceError(f"{label}: no such file or folder (and not a hub id like {HUB_ID!r})")


# ------------------------------------------------------------------------------------ public API

def validate_nectar(source: str | os.PathLike, *, k: int | None = None, split: str = "train",
                    strict: bool = False) -> ValidationReport:
    """Check every row of ``source`` as the kind of file it is (Nectar rows, ranking log, pointwise
    log); bad rows are reported, never raised. ``strict=True`` also reports each field outside the
    schema (kept and counted otherwise). Unreadable or empty sources raise :class:`NectarSourceError`."""
    label, kind, records = _open_source(source, split)
    return check_records(label, kind, records, strict=False, k=k, unknown="reject" if strict else "keep")[1]


@dataclass
class ValidationSummary:
    """:func:`validate_nectar` over several sources, with totals (what ``starling data validate`` prints)."""

    reports: list[ValidationReport]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "n_files": len(self.reports), "n_rows": sum(r.n_rows for r in self.reports),
                "n_valid": sum(r.n_valid for r in self.reports), "files": [r.to_dict() for r in self.reports]}

    def format_text(self) -> str:
        totals = self.to_dict()
        return "\n".join([r.format_text() for r in self.reports] + [
            f"{'ok' if self.ok else 'ERRORS'}: {totals['n_valid']} of {totals['n_rows']} rows valid "
            f"in {len(self.reports)} file(s)"])


def validate_sources(sources, *, k: int | None = None, strict: bool = False) -> ValidationSummary:
    """:func:`validate_nectar` on each source (files, rating-log folders, hub ids)."""
    return ValidationSummary([validate_nectar(source, k=k, strict=strict) for source in sources])


def load_nectar(source: str | os.PathLike = HUB_ID, strict: bool = True, *, k: int | None = None,
                split: str = "train", return_report: bool = False, unknown: str = "keep"):
    """Nectar rows from any supported source as a ``datasets.Dataset`` with ``NECTAR_FEATURES``.

    ``strict=True`` raises :class:`NectarFormatError` at the first bad row; ``strict=False`` drops bad
    rows and warns with counts per reason. ``k`` requires exactly ``k`` answers per row. Fields
    outside the schema are counted in the report (``unknown="reject"`` makes them errors); the
    dataset has Nectar's features only. With ``return_report=True`` returns ``(dataset, ValidationReport)``.
    """
    label, kind, records = _open_source(source, split)
    if kind == "pointwise-log":
        raise NectarSourceError(f"{label}: a pointwise log (one scored answer per row), not Nectar rows; "
                                "read it with read_pointwise_log")
    rows, report = check_records(label, kind, records, strict=strict, k=k, unknown=unknown)
    warn_dropped(report)
    columns = {name: [row[name] for row in rows] for name in NECTAR_FIELDS}
    dataset = datasets.Dataset.from_dict(columns, features=NECTAR_FEATURES)
    return (dataset, report) if return_report else dataset


def read_rating_log(path: str | os.PathLike, strict: bool = True, *,
                    unknown: str = "keep") -> tuple[list[dict], ValidationReport]:
    """Rows of a Starling ranking log (``rankings.jsonl`` or its folder) in the Nectar schema plus
    ``rating_text``, ``ranking_order``, ``model_ranking``, ``k`` and ``ranking_complete``, then any
    fields outside the schema as stored (the agreement logs' ``pairwise``).

    Derived: ``turns`` = Human turns in the prompt, ``num_responses`` = number of answers,
    ``source`` = [] (unknown), ``good_natured`` from GPT-4's verdict in ``rating_text`` (True, and
    counted as ``good_natured_assumed``, when there is none). ``ranking_order`` holds positions in
    [0, k) but may be incomplete (GPT-4 sometimes ranks only some answers): ``ranking_complete`` says
    whether it is a full permutation. ``k`` may vary between rows. Answers keep Nectar's ``rank``,
    or ``None`` in a log without ranks (``pointwise_pairwise_baseline``).
    """
    label, records = _open_log(path, "rating-log")
    rows, report = check_records(label, "rating-log", records, strict=strict, k=None, unknown=unknown)
    warn_dropped(report)
    return rows, report


def read_pointwise_log(path: str | os.PathLike, strict: bool = True, *,
                       unknown: str = "keep") -> tuple[list[dict], ValidationReport]:
    """Rows of a pointwise log (GPT-4 scoring one answer at a time), one per rated answer:
    ``prompt``, ``answer``, ``model``, ``score`` (the log's ``rank``), ``rating_text`` and
    ``good_natured`` (GPT-4's verdict in its reply). :func:`group_by_prompt` gathers a prompt's answers."""
    label, records = _open_log(path, "pointwise-log")
    rows, report = check_records(label, "pointwise-log", records, strict=strict, k=None, unknown=unknown)
    warn_dropped(report)
    return rows, report


def _open_log(path, kind: str) -> tuple[str, Iterable[Record]]:
    if not Path(path).exists():  # checked first: a missing "owner/name" path must not go to the hub
        raise NectarSourceError(f"{os.fspath(path)}: no such file or folder")
    label, found, records = _open_source(path, split="train")
    if (found == "pointwise-log") != (kind == "pointwise-log"):
        reader = "read_pointwise_log" if found == "pointwise-log" else "read_rating_log"
        raise NectarSourceError(f"{label}: a {KINDS[found]}, not a {KINDS[kind]}; read it with {reader}")
    return label, records


def group_by_prompt(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows by ``prompt``, prompts in first-seen order, rows in file order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["prompt"], []).append(row)
    return groups


def log_kind(path: str | os.PathLike) -> str:
    """The kind of a local file or rating-log folder: ``nectar``, ``rating-log`` or ``pointwise-log``."""
    return _open_source(path, split="train")[1]


def rating_log_folders(root) -> list[Path]:
    """Strategy folders (those holding a ``rankings.jsonl``) under ``root``, sorted by name."""
    root = Path(root)
    if (root / "rankings.jsonl").exists():
        return [root]
    folders = sorted(p.parent for p in root.glob("*/rankings.jsonl"))
    if not folders:
        raise FileNotFoundError(f"{root}: no <strategy>/rankings.jsonl rating logs found")
    return folders
