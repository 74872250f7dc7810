"""AlpacaEval's files: model outputs, annotations, leaderboards, instruction difficulties.

Every loader checks each row; a bad one raises ``ValueError`` naming the file, the row and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd


def _read_json_list(path: str | Path) -> list:
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    return rows


def _check_row(path, i, row, string_fields, optional_strings=()) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
    for name in string_fields:
        if name not in row:
            raise ValueError(f"{path}: row {i}: missing field {name!r}")
    for name in (*string_fields, *(f for f in optional_strings if f in row)):
        if not isinstance(row[name], str):
            raise ValueError(f"{path}: row {i}: field {name!r} must be a string, got {row[name]!r:.60}")
    return dict(row)


def load_outputs(path: str | Path) -> list[dict]:
    """Model outputs: a JSON list of ``{instruction, output[, generator, dataset]}`` objects."""
    return [_check_row(path, i, row, ("instruction", "output"), ("generator",))
            for i, row in enumerate(_read_json_list(path))]


def load_annotations(path: str | Path) -> list[dict]:
    """Annotations in the alpaca_eval schema; ``preference`` must be a number or null."""
    rows = [_check_row(path, i, row, ("instruction", "output_1", "output_2"), ("generator_1", "generator_2"))
            for i, row in enumerate(_read_json_list(path))]
    for i, row in enumerate(rows):
        p = row.get("preference")
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float))):
            raise ValueError(f"{path}: row {i}: field 'preference' must be a number or null, got {p!r:.60}")
    return rows


def load_leaderboard(path: str | Path) -> pd.DataFrame:
    """A leaderboard CSV (``weighted_alpaca_eval_gpt4_turbo_leaderboard.csv``) indexed by model name."""
    df = pd.read_csv(path, index_col=0)
    if "win_rate" not in df.columns:
        raise ValueError(f"{path}: not an AlpacaEval leaderboard (no 'win_rate' column)")
    df.index.name = "model"
    return df


def write_annotations(path: str | Path, annotations: Sequence[dict]) -> Path:
    """Write annotations as a JSON list (NaN preferences as ``null``, so the file is valid JSON)."""
    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: clean(v) for k, v in row.items()} for row in annotations]
    path.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return path



def read_instruction_difficulty(path: str | Path) -> dict[str, float]:
    """``{instruction: difficulty}`` from a CSV with an ``instruction`` column and one difficulty column
    (``difficulty`` or ``instruction_difficulty``, else the only other named one), as AlpacaEval 2's
    ``instruction_difficulty.csv``; a missing column or a non-number names the file and the row."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from None
    if "instruction" not in df.columns:
        raise ValueError(f"{path}: needs an 'instruction' column (have {list(df.columns)})")
    others = [c for c in df.columns if c != "instruction" and not str(c).startswith("Unnamed")]
    named = [c for c in ("difficulty", "instruction_difficulty") if c in df.columns]
    column = named[0] if named else (others[0] if len(others) == 1 else None)
    if column is None:
        raise ValueError(f"{path}: needs a 'difficulty' column next to 'instruction' (have {list(df.columns)})")
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}: row {row}: {column!r} is not a number ({df[column].iloc[row]!r:.40})")
    return dict(zip(df["instruction"].astype(str), values.astype(float)))
