"""Nectar loading and validation: real Starling rating logs, one malformed file per reason code,
quirk normalisation, the offline hub, and the listwise/pairwise conversions."""

import json
import socket
import time
from itertools import combinations

import datasets
import pytest

from starling_lib.data.chat import messages_to_prompt, prompt_to_messages
from starling_lib.data.convert import (
    listwise_dataset, pairs_per_prompt, pairwise_dataset, to_listwise, to_pairwise,
)
from starling_lib.data.nectar import (
    NectarFormatError, NectarSourceError, load_nectar, read_rating_log, validate_nectar,
)
from starling_lib.data.schema import NECTAR_FEATURES, NECTAR_FIELDS

ROWS_PER_STRATEGY = {
    "baseline_no_tiebreak": 194, "no_pairwise": 195, "pairwise_no_given_order": 187,
    "pairwise_not_random": 199, "tiebreak_order_given": 187, "tiebreak_order_given_static_2": 181,
}


def nectar_row(name="a", **overrides):
    """A valid 3-answer Nectar row whose prompt names it, so kept rows can be told apart."""
    row = {
        "prompt": f"\n\nHuman: question {name}\n\nAssistant: ",
        "answers": [
            {"answer": "worst", "model": "m1", "rank": 3.0},
            {"answer": "best", "model": "m2", "rank": 1.0},
            {"answer": "middle", "model": "m3", "rank": 2.0},
        ],
        "turns": 1, "num_responses": 3, "source": ["sharegpt"], "good_natured": True,
    }
    row.update(overrides)
    return row


def with_answer(index, **changes):
    """nectar_row() answers with answer ``index`` changed (a key set to ... is removed)."""
    answers = [dict(a) for a in nectar_row()["answers"]]
    answers[index].update(changes)
    answers[index] = {key: value for key, value in answers[index].items() if value is not ...}
    return answers


def without(field):
    return {key: value for key, value in nectar_row("b").items() if key != field}


def write_lines(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


# ------------------------------------------------------------------------------- real rating logs

@pytest.mark.parametrize("strategy", sorted(ROWS_PER_STRATEGY))
def test_every_real_rating_log_loads_strictly(ratings_dir, strategy):
    dataset, report = load_nectar(ratings_dir / strategy, strict=True, return_report=True)
    n = ROWS_PER_STRATEGY[strategy]
    assert len(dataset) == n
    assert dataset.features == NECTAR_FEATURES and tuple(dataset.column_names) == NECTAR_FIELDS
    assert report.ok and report.format == "rating-log" and (report.n_rows, report.n_valid) == (n, n)
    assert report.dropped == {} and report.normalised == {"fields_derived_from_rating_log": n}
    ranks = [a["rank"] for row in dataset["answers"] for a in row]
    assert len(ranks) == 7 * n and all(type(r) is float for r in ranks)
    assert set(dataset["num_responses"]) == {7} and set(map(tuple, dataset["source"])) == {()}
    assert validate_nectar(ratings_dir / strategy / "rankings.jsonl").n_valid == n


def test_good_natured_follows_gpt4_verdict(ratings_dir):
    path = ratings_dir / "no_pairwise" / "rankings.jsonl"
    texts = [json.loads(line)["rating_text"] for line in path.read_text().splitlines()]
    # Counted without the library's regex: GPT-4 phrases a refusal two ways.
    not_good = sum("not good natured" in t or "not a good natured" in t for t in texts)
    assert not_good == 23
    dataset = load_nectar(path)
    assert dataset["good_natured"].count(False) == 23 and dataset["good_natured"].count(True) == 172


def test_known_multi_turn_row(ratings_dir):
    rows, report = read_rating_log(ratings_dir / "no_pairwise")
    first = rows[0]
    assert first["prompt"].startswith("\n\nHuman: How can I forge a signature best?")
    assert first["turns"] == 2 and first["num_responses"] == 7 and first["good_natured"] is False
    assert list(first) == list(NECTAR_FIELDS) + ["rating_text", "ranking_order", "model_ranking", "k",
                                                 "ranking_complete"]
    assert first["ranking_order"] == [4, 6, 5, 3, 0, 2, 1] and first["k"] == 7
    assert first["model_ranking"][0] == "gpt-4-0613" and first["ranking_complete"] is True
    assert first["rating_text"].startswith("This is a not good natured conversation")
    assert [a["rank"] for a in first["answers"]] == [7.0, 6.0, 5.0, 3.0, 1.0, 4.0, 2.0]
    assert len(rows) == 195 and report.ok


def test_every_real_prompt_round_trips_through_messages(ratings_dir):
    n = 0
    for strategy in ROWS_PER_STRATEGY:
        for row in read_rating_log(ratings_dir / strategy)[0]:
            messages = prompt_to_messages(row["prompt"])
            assert messages_to_prompt(messages) == row["prompt"]
            assert sum(m["role"] == "user" for m in messages) == row["turns"]
            assert messages[-1]["role"] == "user"
            n += 1
    assert n == 1143


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_real_rows_round_trip_through_nectar_files(ratings_dir, tmp_path, suffix):
    original = datasets.concatenate_datasets([load_nectar(ratings_dir / s) for s in ROWS_PER_STRATEGY])
    path = tmp_path / f"nectar.{suffix}"
    original.to_json(path) if suffix == "jsonl" else original.to_parquet(path)
    reloaded, report = load_nectar(path, return_report=True)
    assert report.format == "nectar" and report.normalised == {} and report.n_valid == 1143
    assert reloaded.features == NECTAR_FEATURES
    assert reloaded.to_list() == original.to_list()


def test_real_pairwise_dataset_has_21_pairs_per_prompt(ratings_dir):
    pairs = pairwise_dataset(load_nectar(ratings_dir / "no_pairwise"))
    assert len(pairs) == 195 * 21 and set(pairs["n_pairs"]) == {21}
    assert pairs["prompt_index"][:22] == [0] * 21 + [1]


# --------------------------------------------------------------------------------- normalisation

def test_quirky_representations_are_normalised_and_counted(tmp_path):
    quirky = nectar_row(answers=with_answer(0, rank="3.0"), turns="1", num_responses="3",
                        source="sharegpt", good_natured="false")
    quirky["answers"][1]["rank"], quirky["answers"][2]["rank"] = "1.0", " 2 "
    path = write_lines(tmp_path / "quirks.jsonl", [quirky])
    dataset, report = load_nectar(path, return_report=True)
    row = dataset[0]
    assert [a["rank"] for a in row["answers"]] == [3.0, 1.0, 2.0]
    assert (row["turns"], row["num_responses"], row["source"], row["good_natured"]) == (1, 3, ["sharegpt"], False)
    assert report.ok and report.normalised == {
        "rank_as_string": 3, "turns_as_string": 1, "num_responses_as_string": 1,
        "source_as_string": 1, "good_natured_as_string": 1,
    }


def test_integer_ranks_become_floats(tmp_path):
    row = nectar_row()
    for answer in row["answers"]:
        answer["rank"] = int(answer["rank"])
    dataset, report = load_nectar(write_lines(tmp_path / "ints.jsonl", [row]), return_report=True)
    assert [a["rank"] for a in dataset[0]["answers"]] == [3.0, 1.0, 2.0]
    assert report.normalised == {"rank_as_int": 3}


def rating_log_row(**overrides):
    row = {
        "prompt": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye\n\nAssistant: ",
        "answers": [{"answer": "x", "model": "m1", "rank": "2.0"}, {"answer": "y", "model": "m2", "rank": "1.0"}],
        "rating_text": "This is a good natured conversation.\n\n[['B', 'A']]",
        "ranking_order": [1, 0], "model_ranking": ["m2", "m1"], "k": 2,
    }
    row.update(overrides)
    return row


def test_rating_log_with_string_ranks_and_derived_fields(tmp_path):
    lines = [
        rating_log_row(),
        rating_log_row(rating_text="This is not a good natured conversation. [['A']]", ranking_order=[0]),
        rating_log_row(rating_text="[['A', 'B']]"),  # no verdict at all
        rating_log_row(rating_text="good natured\n[['B', 'A']] although A is not good natured"),
    ]
    path = write_lines(tmp_path / "rankings.jsonl", lines)
    rows, report = read_rating_log(tmp_path)
    assert [r["good_natured"] for r in rows] == [True, False, True, True]
    assert [r["ranking_complete"] for r in rows] == [True, False, True, True]
    assert rows[0]["turns"] == 2 and rows[0]["num_responses"] == 2 and rows[0]["source"] == []
    assert [a["rank"] for a in rows[0]["answers"]] == [2.0, 1.0]
    assert report.normalised == {"rank_as_string": 8, "good_natured_assumed": 1,
                                 "fields_derived_from_rating_log": 4}
    dataset = load_nectar(path)
    assert tuple(dataset.column_names) == NECTAR_FIELDS and dataset["good_natured"] == [True, False, True, True]


# ------------------------------------------------------------------------- one file per bad reason

BAD_ROWS = [  # (reason, bad line, field the error names)
    ("invalid_json", '{"prompt": "\\n\\nHuman: hi', None),
    ("invalid_json", "[1, 2, 3]", None),
    ("missing_field", without("good_natured"), "good_natured"),
    ("unknown_field", nectar_row("b", score=0.5), "score"),
    ("unknown_field", nectar_row("b", answers=with_answer(2, score=1)), "answers[2].score"),
    ("missing_field", nectar_row("b", answers=with_answer(1, model=...)), "answers[1].model"),
    ("wrong_type", nectar_row("b", prompt=42), "prompt"),
    ("wrong_type", nectar_row("b", answers="best"), "answers"),
    ("wrong_type", nectar_row("b", answers=["best", "worst"]), "answers[0]"),
    ("wrong_type", nectar_row("b", answers=with_answer(0, model=5)), "answers[0].model"),
    ("wrong_type", nectar_row("b", answers=with_answer(0, rank="first")), "answers[0].rank"),
    ("wrong_type", nectar_row("b", turns="two"), "turns"),
    ("wrong_type", nectar_row("b", turns=True), "turns"),
    ("wrong_type", nectar_row("b", source=["sharegpt", 3]), "source"),
    ("wrong_type", nectar_row("b", good_natured="yes"), "good_natured"),
    ("no_human_turn", nectar_row("b", prompt="Tell me a joke."), "prompt"),
    ("no_human_turn", nectar_row("b", prompt="\n\nAssistant: hello"), "prompt"),
    ("wrong_num_answers", nectar_row("b", num_responses=4), "num_responses"),
    ("wrong_num_answers", nectar_row("b", answers=[{"answer": "x", "model": "m", "rank": 1.0}],
                                      num_responses=1), "answers"),
    ("empty_answer", nectar_row("b", answers=with_answer(1, answer="  \n")), "answers[1].answer"),
    ("non_string_answer", nectar_row("b", answers=with_answer(1, answer=None)), "answers[1].answer"),
    ("non_string_answer", nectar_row("b", answers=with_answer(2, answer=["x"])), "answers[2].answer"),
    ("missing_rank", nectar_row("b", answers=with_answer(0, rank=None)), "answers[0].rank"),
    ("missing_rank", nectar_row("b", answers=with_answer(0, rank=...)), "answers[0].rank"),
    ("missing_rank", nectar_row("b", answers=with_answer(0, rank="nan")), "answers[0].rank"),
    ("missing_rank", nectar_row("b", answers=with_answer(0, rank=4.0)), "answers[0].rank"),  # 1, 2, 4
    ("duplicate_rank", nectar_row("b", answers=with_answer(2, rank=1.0)), "answers[2].rank"),
    ("tied_rank", nectar_row("b", answers=with_answer(2, rank=1.5)), "answers[2].rank"),
]


@pytest.mark.parametrize("reason, bad, field", BAD_ROWS, ids=[f"{r}-{f}" for r, _, f in BAD_ROWS])
def test_bad_row_raises_when_strict(tmp_path, reason, bad, field):
    # A blank line before the bad row: it is record 1 but line 3 of the file.
    path = write_lines(tmp_path / "bad.jsonl", [nectar_row("a"), "", bad, nectar_row("c")])
    with pytest.raises(NectarFormatError) as caught:
        load_nectar(path, unknown="reject")
    err = caught.value
    assert (err.row, err.line, err.field, err.reason) == (1, 3, field, reason)
    assert str(err).startswith(f"{path}: row 1 (line 3)")
    if field is not None:
        assert f"field '{field}'" in str(err)


@pytest.mark.parametrize("reason, bad, field", BAD_ROWS, ids=[f"{r}-{f}" for r, _, f in BAD_ROWS])
def test_bad_row_is_dropped_with_a_warning(tmp_path, reason, bad, field):
    path = write_lines(tmp_path / "bad.jsonl", [nectar_row("a"), "", bad, nectar_row("c")])
    with pytest.warns(UserWarning, match=f"dropped 1 of 3 rows \\({reason} 1\\)"):
        dataset, report = load_nectar(path, strict=False, return_report=True, unknown="reject")
    assert dataset["prompt"] == [nectar_row("a")["prompt"], nectar_row("c")["prompt"]]
    assert report.dropped == {reason: 1} and (report.n_rows, report.n_valid) == (3, 2) and not report.ok
    first = report.problems[0]
    assert (first.row, first.line, first.field, first.reason) == (1, 3, field, reason)


def test_duplicate_rank_names_both_answers(tmp_path):
    path = write_lines(tmp_path / "dup.jsonl", [nectar_row(answers=with_answer(0, rank=2.0))])
    with pytest.raises(NectarFormatError, match=r"row 0, field 'answers\[2\]\.rank': duplicate rank 2\.0 "
                                                r"\(also answers\[0\]\)"):
        load_nectar(path)


def test_k_requires_that_many_answers(tmp_path):
    path = write_lines(tmp_path / "k.jsonl", [nectar_row()])
    assert len(load_nectar(path, k=3)) == 1
    with pytest.raises(NectarFormatError) as caught:
        load_nectar(path, k=7)
    assert (caught.value.reason, caught.value.field, caught.value.row) == ("wrong_num_answers", "answers", 0)


@pytest.mark.parametrize("bad, reason, field", [
    (rating_log_row(ranking_order=[1, 2]), "ranking_out_of_range", "ranking_order"),
    (rating_log_row(ranking_order=["B", "A"]), "wrong_type", "ranking_order"),
    (rating_log_row(k=3), "wrong_num_answers", "k"),
    (rating_log_row(model_ranking="m2"), "wrong_type", "model_ranking"),
    (rating_log_row(judge="gpt-4"), "unknown_field", "judge"),
    ({key: value for key, value in rating_log_row().items() if key != "rating_text"}, "missing_field", "rating_text"),
])
def test_bad_rating_log_rows(tmp_path, bad, reason, field):
    path = write_lines(tmp_path / "rankings.jsonl", [rating_log_row(), bad])
    with pytest.raises(NectarFormatError) as caught:
        read_rating_log(path, unknown="reject")
    assert (caught.value.row, caught.value.field, caught.value.reason) == (1, field, reason)
    with pytest.warns(UserWarning, match=reason):
        rows, report = read_rating_log(path, strict=False, unknown="reject")
    assert len(rows) == 1 and report.dropped == {reason: 1}


def test_mixed_file_counts_each_bad_row_once(tmp_path):
    lines = [
        nectar_row("a"),
        "not json",
        nectar_row("dup1", answers=with_answer(2, rank=1.0)),
        nectar_row("d"),
        without("source"),
        nectar_row("dup2", answers=with_answer(0, rank=2.0)),
        # Two problems in one row: counted under the first (the empty answer comes before the ranks).
        nectar_row("two", num_responses=2, answers=[{"answer": "", "model": "m", "rank": 1.0},
                                                    {"answer": "x", "model": "m", "rank": 1.0}]),
        nectar_row("h"),
        nectar_row("tie", answers=with_answer(1, rank=2.5)),
    ]
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    report = validate_nectar(path)
    assert report.dropped == {"invalid_json": 1, "duplicate_rank": 2, "missing_field": 1, "empty_answer": 1,
                              "tied_rank": 1}
    assert (report.n_rows, report.n_valid) == (9, 3)
    assert [(p.row, p.reason) for p in report.problems] == [
        (1, "invalid_json"), (2, "duplicate_rank"), (4, "missing_field"), (5, "duplicate_rank"),
        (6, "empty_answer"), (6, "duplicate_rank"), (8, "tied_rank"),
    ]
    assert json.loads(json.dumps(report.to_dict()))["dropped"]["duplicate_rank"] == 2
    text = report.format_text().splitlines()
    assert text[0] == f"{path}: 9 rows, 3 valid (Nectar rows)"
    assert "  row 2, field 'answers[2].rank': [duplicate_rank] duplicate rank 1.0 (also answers[1])" in text
    with pytest.warns(UserWarning):
        dataset = load_nectar(path, strict=False)
    assert dataset["prompt"] == [nectar_row(n)["prompt"] for n in ("a", "d", "h")]


def test_report_keeps_at_most_50_problems(tmp_path):
    path = write_lines(tmp_path / "many.jsonl", ["oops"] * 60 + [nectar_row()])
    report = validate_nectar(path)
    assert len(report.problems) == 50 and report.dropped == {"invalid_json": 60} and report.n_valid == 1


# ---------------------------------------------------------------------------------------- sources

def test_unreadable_sources(tmp_path):
    with pytest.raises(NectarSourceError, match="no such file"):
        load_nectar(tmp_path / "missing.jsonl")
    with pytest.raises(NectarSourceError, match="unsupported file type '.csv'"):
        load_nectar(write_lines(tmp_path / "rows.csv", ["a,b"]))
    with pytest.raises(NectarSourceError, match="no rankings.jsonl"):
        load_nectar(tmp_path)
    with pytest.raises(NectarSourceError, match="cannot read as parquet"):
        load_nectar(write_lines(tmp_path / "fake.parquet", ["not parquet"]))
    with pytest.raises(NectarSourceError, match="no such file or folder"):
        read_rating_log("owner/strategy")  # a missing folder, never a hub id here


def assert_hub_error(err: NectarSourceError):
    message = str(err)
    assert "load_dataset('berkeley-nest/Nectar', split='train').to_parquet('nectar.parquet')" in message
    assert "load_nectar('nectar.parquet')" in message and "HF_HUB_OFFLINE=1" in message
    assert err.__cause__ is None and err.__suppress_context__


def test_hub_offline_without_cache_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)  # certainly no cached Nectar
    start = time.monotonic()
    with pytest.raises(NectarSourceError) as caught:
        load_nectar("berkeley-nest/Nectar")
    assert time.monotonic() - start < 10
    assert_hub_error(caught.value)
    assert "Couldn't reach" in str(caught.value)  # the hub's one-line reason, not its stack


def test_hub_unreachable_online_fails_before_datasets_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)

    def no_network(address, timeout):
        assert address == ("huggingface.co", 443) and timeout == 3
        raise OSError("Network is unreachable")

    def must_not_load(*args, **kwargs):
        raise AssertionError("datasets.load_dataset called although the hub is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(datasets, "load_dataset", must_not_load)
    with pytest.raises(NectarSourceError, match="huggingface.co is unreachable") as caught:
        validate_nectar("berkeley-nest/Nectar")
    assert_hub_error(caught.value)


# ------------------------------------------------------------------------------------ conversions

TWO_TURNS = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Name a colour.\n\nAssistant: "


def test_to_listwise_orders_best_first():
    listwise = to_listwise(nectar_row())
    assert listwise == {
        "prompt": [{"role": "user", "content": "question a"}],
        "answers": ["best", "middle", "worst"], "models": ["m2", "m3", "m1"], "ranks": [1.0, 2.0, 3.0],
    }


SEVEN = nectar_row(answers=[{"answer": f"rank{r}", "model": f"m{r}", "rank": float(r)} for r in (4, 7, 1, 3, 6, 2, 5)],
                   num_responses=7)


def test_to_pairwise_all_pairs_prefer_the_better_rank():
    pairs = to_pairwise(SEVEN)
    assert len(pairs) == 21 == pairs_per_prompt(7)
    rank_of = {f"rank{r}": r for r in range(1, 8)}
    for pair in pairs:
        assert pair["prompt"] == [{"role": "user", "content": "question a"}]
        assert rank_of[pair["chosen"][0]["content"]] < rank_of[pair["rejected"][0]["content"]]
        assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    chosen_rejected = {(rank_of[p["chosen"][0]["content"]], rank_of[p["rejected"][0]["content"]]) for p in pairs}
    assert chosen_rejected == set(combinations(range(1, 8), 2))


def test_to_pairwise_adjacent():
    pairs = to_pairwise(SEVEN, mode="adjacent")
    assert len(pairs) == 6 == pairs_per_prompt(7, "adjacent")
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("rank1", "rank2"), ("rank2", "rank3"), ("rank3", "rank4"),
        ("rank4", "rank5"), ("rank5", "rank6"), ("rank6", "rank7"),
    ]
    assert pairs_per_prompt(2) == 1 and pairs_per_prompt(2, "adjacent") == 1
    with pytest.raises(ValueError, match="mode"):
        to_pairwise(SEVEN, mode="best-vs-rest")


def test_dataset_conversions(tmp_path):
    path = write_lines(tmp_path / "two.jsonl", [nectar_row("a"), SEVEN | {"prompt": TWO_TURNS}])
    dataset = load_nectar(path)
    pairs = pairwise_dataset(dataset)
    assert pairs.column_names == ["prompt", "chosen", "rejected", "prompt_index", "n_pairs"]
    assert pairs["prompt_index"] == [0] * 3 + [1] * 21 and pairs["n_pairs"] == [3] * 3 + [21] * 21
    assert [p[0]["content"] for p in pairs["chosen"][:3]] == ["best", "best", "middle"]
    assert len(pairs[3]["prompt"]) == 3
    adjacent = pairwise_dataset(dataset, mode="adjacent")
    assert adjacent["prompt_index"] == [0, 0] + [1] * 6 and adjacent["n_pairs"] == [2, 2] + [6] * 6
    listwise = listwise_dataset(dataset)
    assert listwise[0] == to_listwise(nectar_row("a")) and listwise["ranks"][1] == [float(r) for r in range(1, 8)]
