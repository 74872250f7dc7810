"""Load Nectar data: the published dataset, files in its schema, and Starling rating logs.

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
from pathlib import Path
from typing import Iterable, Iterator

import datasets

from starling_lib.data.schema import NECTAR_FEATURES, NECTAR_FIELDS, NectarFormatError  # noqa: F401  (raised here)
from starling_lib.data.validate import Record, ValidationReport, check_records, warn_dropped

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
    """(label for messages, format, records); the format of a local file comes from its keys."""
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
        first = next((value for _, _, value, error in records if error is None), {})
        is_log = "rating_text" in first or "ranking_order" in first
        return label, "rating-log" if is_log else "nectar", records
    if _HUB_ID_PATTERN.match(label) and path.suffix.lower() not in (*_JSON_SUFFIXES, ".parquet"):
        return label, "hub", _read_hub(label, split)
    raise NectarSourceError(f"{label}: no such file or folder (and not a hub id like {HUB_ID!r})")


# ------------------------------------------------------------------------------------ public API

def validate_nectar(source: str | os.PathLike, *, k: int | None = None, split: str = "train") -> ValidationReport:
    """Check every row of ``source``; bad rows are reported, never raised. Unreadable sources raise
    :class:`NectarSourceError`."""
    label, fmt, records = _open_source(source, split)
    return check_records(label, fmt, records, strict=False, k=k)[1]


def load_nectar(source: str | os.PathLike = HUB_ID, strict: bool = True, *, k: int | None = None,
                split: str = "train", return_report: bool = False):
    """Nectar rows from any supported source as a ``datasets.Dataset`` with ``NECTAR_FEATURES``.

    ``strict=True`` raises :class:`NectarFormatError` at the first bad row; ``strict=False`` drops bad
    rows and warns with counts per reason. ``k`` requires exactly ``k`` answers per row. With
    ``return_report=True`` returns ``(dataset, ValidationReport)``.
    """
    label, fmt, records = _open_source(source, split)
    rows, report = check_records(label, fmt, records, strict=strict, k=k)
    warn_dropped(report)
    columns = {name: [row[name] for row in rows] for name in NECTAR_FIELDS}
    dataset = datasets.Dataset.from_dict(columns, features=NECTAR_FEATURES)
    return (dataset, report) if return_report else dataset


def read_rating_log(path: str | os.PathLike, strict: bool = True) -> tuple[list[dict], ValidationReport]:
    """Rows of a Starling rating log (``rankings.jsonl`` or its folder) in the Nectar schema plus
    ``rating_text``, ``ranking_order``, ``model_ranking``, ``k`` and ``ranking_complete``.

    Derived: ``turns`` = Human turns in the prompt, ``num_responses`` = number of answers,
    ``source`` = [] (unknown), ``good_natured`` from GPT-4's verdict in ``rating_text`` (True, and
    counted as ``good_natured_assumed``, when there is none). ``ranking_order`` holds positions in
    [0, k) but may be incomplete (GPT-4 sometimes ranks only some answers): ``ranking_complete`` says
    whether it is a full permutation.
    """
    if not Path(path).exists():  # checked first: a missing "owner/name" path must not go to the hub
        raise NectarSourceError(f"{os.fspath(path)}: no such file or folder")
    label, _, records = _open_source(path, split="train")
    rows, report = check_records(label, "rating-log", records, strict=strict, k=None)
    warn_dropped(report)
    return rows, report


def rating_log_folders(root) -> list[Path]:
    """Strategy folders (those holding a ``rankings.jsonl``) under ``root``, sorted by name."""
    root = Path(root)
    if (root / "rankings.jsonl").exists():
        return [root]
    folders = sorted(p.parent for p in root.glob("*/rankings.jsonl"))
    if not folders:
        raise FileNotFoundError(f"{root}: no <strategy>/rankings.jsonl rating logs found")
    return folders
