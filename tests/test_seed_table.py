"""The Starling table's AlpacaEval 1 column recomputed from real annotations: by hand on written files,
then exactly against that leaderboard's csv (skipped without ../shared)."""

import json
import math

import pytest

from starling_lib.evaluation.published import ALPACA_EVAL_V1_NAMES, STARLING_TABLE, starling_table_recomputed
from starling_lib.paths import shared_data


def write(path, preferences, generator="m"):
    rows = [{"instruction": f"q{i}", "output_1": "ref", "output_2": "out", "generator_1": "text_davinci_003",
             "generator_2": generator, "preference": p} for i, p in enumerate(preferences)]
    path.write_text(json.dumps(rows))


def test_recomputed_by_hand_and_extra_files_reported(tmp_path):
    # claude-2: 2, 2, 1, draw (0), none -> (1 + 1 + 0 + 0.5) / 4 = 62.5 % over 4 valid preferences
    write(tmp_path / "claude-2_annotations.json", [2, 2, 1, 0, None])
    write(tmp_path / "my-model_annotations.json", [2, 1], generator="my-model")
    (tmp_path / "not_annotations.txt").write_text("ignored: not an annotations file")
    table, extra = starling_table_recomputed(tmp_path)
    row = table.set_index("model").loc["Claude-2"]
    assert row.alpaca_eval_v1_recomputed == 62.5 and row.n_total == 4
    assert row.difference == pytest.approx(62.5 - 91.36)
    assert all(math.isnan(v) for m, v in zip(table.model, table.alpaca_eval_v1_recomputed) if m != "Claude-2")
    assert extra == {"my-model": {"win_rate": 50.0, "n_total": 2, "leaderboard": None}}


def test_a_bad_annotations_file_names_file_row_and_field(tmp_path):
    write(tmp_path / "gpt4_annotations.json", [2, "two"])
    with pytest.raises(ValueError, match=r"gpt4_annotations.json: row 1: field 'preference'"):
        starling_table_recomputed(tmp_path)


def test_the_names_point_at_the_rows_whose_typed_value_they_are():
    typed = {model: v for model, _, _, v in STARLING_TABLE}
    assert set(ALPACA_EVAL_V1_NAMES) <= set(typed)


def test_the_four_shared_rows_equal_the_leaderboard_exactly():
    root = shared_data("alpaca_eval", "alpaca_eval_1")
    if root is None:
        pytest.skip("AlpacaEval 1 annotations not present (../shared/data/alpaca_eval/alpaca_eval_1)")
    table, extra = starling_table_recomputed(root, root / "alpaca_eval_gpt4_leaderboard.csv")
    done = table.dropna(subset=["alpaca_eval_v1_recomputed"]).set_index("model")
    assert list(done.index) == ["GPT-4-Turbo", "GPT-4", "Claude-2", "Llama-2-70b-chat-hf"] and extra == {}
    assert (done.leaderboard_difference.abs() < 1e-9).all()
    assert list(done.n_total) == [804, 805, 804, 804]  # one annotation without a preference in three files
    # and the typed column is the leaderboard's rounded to 2 decimals, for every row the names map
    assert (done.difference.abs() <= 0.005).all()
    board = table.dropna(subset=["leaderboard"])
    assert ((board.leaderboard.round(2) - board.alpaca_eval_v1).abs() < 1e-9).all()
