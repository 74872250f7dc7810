"""Every shape of judge log the Starling authors published loads: fields outside the schema kept and
counted, answers without Nectar's rank, pointwise logs, several k in one file, empty files refused."""

import pytest

from starling_lib.data.convert import to_pairwise
from starling_lib.data.nectar import (
    NectarFormatError, NectarSourceError, group_by_prompt, load_nectar, log_kind, read_pointwise_log,
    read_rating_log, validate_nectar, validate_sources,
)
from starling_lib.data.schema import NECTAR_FIELDS
from starling_lib.reward.data import nectar_examples, rating_log_examples

from test_nectar import nectar_row, rating_log_row, write_lines

# rows, valid rows, kind, rows per k (None: pointwise) of each published folder
EXPERIMENTS = {
    "pairwise_agreement_explain": (594, "rating-log", {k: 99 for k in range(2, 8)}),
    "pairwise_agreement_explain_shuffle": (594, "rating-log", {k: 99 for k in range(2, 8)}),
    "pairwise_agreement_no_explain": (572, "rating-log", {2: 91, 3: 93, 4: 93, 5: 97, 6: 99, 7: 99}),
    "pairwise_agreement_no_explain_shuffle": (488, "rating-log", {2: 75, 3: 77, 4: 79, 5: 80, 6: 86, 7: 91}),
    "pointwise_pairwise_baseline": (98, "rating-log", {7: 98}),
    "pointwise_rating_better_prompt": (672, "pointwise-log", {}),
}


# ------------------------------------------------------------------------------------ real logs

@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_published_experiment_folder_validates(experiments_dir, name):
    n, kind, per_k = EXPERIMENTS[name]
    report = validate_nectar(experiments_dir / name)
    assert report.ok and (report.n_rows, report.n_valid, report.format) == (n, n, kind)
    assert report.answers_per_row == per_k
    assert report.unknown_fields == ({"pairwise": n} if name.startswith("pairwise_agreement") else {})
    assert log_kind(experiments_dir / name) == kind


def test_agreement_log_keeps_pairwise_and_subset_ranks(experiments_dir):
    rows, report = read_rating_log(experiments_dir / "pairwise_agreement_explain")
    first = rows[0]
    assert list(first) == list(NECTAR_FIELDS) + ["rating_text", "ranking_order", "model_ranking", "k",
                                                 "ranking_complete", "pairwise"]
    assert first["k"] == 7 and first["pairwise"] == [1, 5, 5, 3, 2, 2]
    # k < 7 rows hold a subset of the 7 answers with their Nectar ranks (not 1..k): kept and counted
    assert report.normalised["ranks_of_a_larger_ranking"] == 417
    assert sum(sorted(a["rank"] for a in r["answers"]) != [float(i) for i in range(1, r["k"] + 1)]
               for r in rows) == 417
    assert {len(r["pairwise"]) for r in rows if r["pairwise"]} == {1, 2, 3, 4, 5, 6}
    assert sum(r["pairwise"] == [] for r in rows) == 2


def test_unranked_ranking_log_and_its_input_rows(experiments_dir):
    folder = experiments_dir / "pointwise_pairwise_baseline"
    rows, report = read_rating_log(folder)
    assert len(rows) == 98 and report.normalised["answers_without_rank"] == 98
    assert all(a["rank"] is None for r in rows for a in r["answers"])
    # two answers are empty strings; GPT-4 ranked (and, in the pointwise log, scored) them: kept
    assert report.normalised["empty_answer"] == 2
    assert [e.get("nectar_ranks") for e in rating_log_examples(rows[:2])] == [None, None]
    # data.jsonl (the run's input, Nectar rows without rank or good_natured) holds the same two
    # empty answers, which Nectar rows may not have: reported by row and field
    inputs = validate_nectar(folder / "data.jsonl")
    assert (inputs.format, inputs.n_rows, inputs.n_valid, inputs.dropped) == ("nectar", 100, 98, {"empty_answer": 2})
    assert [(p.row, p.field) for p in inputs.problems] == [(4, "answers[2].answer"), (53, "answers[2].answer")]


def test_pointwise_log_rows_and_groups(experiments_dir):
    rows, report = read_pointwise_log(experiments_dir / "pointwise_rating_better_prompt")
    assert (len(rows), report.n_prompts, report.format) == (672, 97, "pointwise-log")
    assert list(rows[0]) == ["prompt", "answer", "model", "score", "rating_text", "good_natured"]
    assert rows[0]["score"] == 8.0 and rows[0]["model"] == "llama-2-7b-chat" and rows[0]["good_natured"] is True
    assert sum(r["score"] == 10 for r in rows) == 512
    groups = group_by_prompt(rows)
    assert len(groups) == 97 and sum(map(len, groups.values())) == 672
    assert next(iter(groups)) == rows[0]["prompt"]


def test_validate_summary_of_every_published_log(experiments_dir, ratings_dir):
    folders = sorted(experiments_dir.iterdir()) + sorted(ratings_dir.iterdir())
    summary = validate_sources(folders)
    assert summary.ok and summary.to_dict()["n_rows"] == 3018 + 1143
    text = summary.format_text()
    assert "(pointwise log)" in text and "rows per k: 2: 99, 3: 99" in text
    assert "fields outside the schema, kept: pairwise 594" in text


# ------------------------------------------------------------------------ fields outside the schema

def test_unknown_fields_are_kept_and_counted_unless_rejected(tmp_path):
    rows = [rating_log_row(judge="gpt-4", answers=[{"answer": "x", "model": "m1", "rank": 2.0, "tokens": 3},
                                                   {"answer": "y", "model": "m2", "rank": 1.0}]),
            rating_log_row(judge="gpt-4", seed=7), rating_log_row()]
    path = write_lines(tmp_path / "rankings.jsonl", rows)
    kept, report = read_rating_log(path)
    assert report.ok and report.unknown_fields == {"judge": 2, "answers[].tokens": 1, "seed": 1}
    assert kept[0]["judge"] == "gpt-4" and kept[1]["seed"] == 7 and "judge" not in kept[2]
    assert kept[0]["answers"][0]["tokens"] == 3 and "tokens" not in kept[0]["answers"][1]
    strict = validate_nectar(path, strict=True)
    assert strict.dropped == {"unknown_field": 2} and strict.n_valid == 1
    assert [(p.row, p.field) for p in strict.problems] == [(0, "judge"), (0, "answers[0].tokens"), (1, "judge"),
                                                         (1, "seed")]
    with pytest.raises(NectarFormatError, match="field 'judge' is not in the schema"):
        read_rating_log(path, unknown="reject")
    dataset = load_nectar(path)  # a Dataset has Nectar's features only; the report still counts them
    assert tuple(dataset.column_names) == NECTAR_FIELDS
    with pytest.raises(ValueError, match="unknown must be one of"):
        load_nectar(path, unknown="ignore")


# ------------------------------------------------------------------------------- unranked answers

def unranked(name="u", **overrides):
    row = nectar_row(name, **overrides)
    row["answers"] = [{"answer": a["answer"], "model": a["model"]} for a in row["answers"]]
    del row["good_natured"]
    return row


def test_unranked_nectar_rows_are_valid_where_rank_is_not_needed(tmp_path):
    path = write_lines(tmp_path / "inputs.jsonl", [unranked("a"), unranked("b") | {"good_natured": False}])
    dataset, report = load_nectar(path, return_report=True)
    assert report.ok and report.normalised == {"answers_without_rank": 2}
    assert dataset["good_natured"] == [None, False]
    assert [a["rank"] for a in dataset[0]["answers"]] == [None, None, None]
    with pytest.raises(NectarFormatError, match=r"need Nectar's rank, and answers\[0, 1, 2\] have none") as caught:
        to_pairwise(dataset[0])
    assert caught.value.reason == "missing_rank"
    with pytest.raises(NectarFormatError, match="reward-model examples from Nectar rows need Nectar's rank"):
        nectar_examples(dataset)


def test_some_ranks_missing_is_still_an_error(tmp_path):
    row = nectar_row()
    del row["answers"][1]["rank"]
    with pytest.raises(NectarFormatError) as caught:
        load_nectar(write_lines(tmp_path / "some.jsonl", [row]))
    assert (caught.value.reason, caught.value.field) == ("missing_rank", "answers[1].rank")
    ranked_without_verdict = {key: value for key, value in nectar_row().items() if key != "good_natured"}
    with pytest.raises(NectarFormatError, match="field 'good_natured' is missing"):
        load_nectar(write_lines(tmp_path / "verdict.jsonl", [ranked_without_verdict]))


def test_subset_ranks_only_in_ranking_logs(tmp_path):
    subset = [{"answer": "x", "model": "m1", "rank": 6.0}, {"answer": "y", "model": "m2", "rank": 2.0}]
    rows, report = read_rating_log(write_lines(tmp_path / "rankings.jsonl", [rating_log_row(answers=subset)]))
    assert [a["rank"] for a in rows[0]["answers"]] == [6.0, 2.0]
    assert report.normalised["ranks_of_a_larger_ranking"] == 1
    assert [p["chosen"][0]["content"] for p in to_pairwise(rows[0])] == ["y"]
    nectar = nectar_row(answers=subset + [{"answer": "z", "model": "m3", "rank": 1.0}])
    with pytest.raises(NectarFormatError, match="outside 1..3"):
        load_nectar(write_lines(tmp_path / "nectar.jsonl", [nectar]))


def test_empty_answer_kept_in_a_judge_log_only(tmp_path):
    answers = [{"answer": "", "model": "m1", "rank": "2.0"}, {"answer": "y", "model": "m2", "rank": "1.0"}]
    rows, report = read_rating_log(write_lines(tmp_path / "rankings.jsonl", [rating_log_row(answers=answers)]))
    assert rows[0]["answers"][0]["answer"] == "" and report.normalised["empty_answer"] == 1


# ---------------------------------------------------------------------------------- pointwise logs

def pointwise_row(prompt="q", answer="an answer", model="m1", score=7, **overrides):
    row = {"prompt": f"\n\nHuman: {prompt}\n\nAssistant: ", "answers": {"answer": answer, "model": model},
           "rating_text": f"This is a good natured conversation.\n\nRating: [[{score}]]", "rank": score, "model": model}
    row.update(overrides)
    return row


def test_pointwise_log_is_recognised_and_checked(tmp_path):
    lines = [pointwise_row("q1", "a", score=10), pointwise_row("q1", "b", "m2", 3), pointwise_row("q2", "c")]
    path = write_lines(tmp_path / "rankings.jsonl", lines)
    report = validate_nectar(tmp_path)
    assert report.ok and (report.format, report.n_valid, report.n_prompts) == ("pointwise-log", 3, 2)
    assert report.format_text().splitlines()[:2] == [f"{path}: 3 rows, 3 valid (pointwise log)",
                                                     "rated answers of 2 prompts, one score each"]
    rows, _ = read_pointwise_log(tmp_path)
    assert [(r["answer"], r["score"]) for r in rows] == [("a", 10.0), ("b", 3.0), ("c", 7.0)]
    assert [len(g) for g in group_by_prompt(rows).values()] == [2, 1]
    with pytest.raises(NectarSourceError, match="a pointwise log, not a ranking log; read it with read_pointwise_log"):
        read_rating_log(tmp_path)
    with pytest.raises(NectarSourceError, match="not Nectar rows"):
        load_nectar(path)
    (tmp_path / "ranking").mkdir()
    ranking = write_lines(tmp_path / "ranking" / "rankings.jsonl", [rating_log_row()])
    with pytest.raises(NectarSourceError, match="a ranking log, not a pointwise log"):
        read_pointwise_log(ranking)


@pytest.mark.parametrize("bad, reason, field", [
    (pointwise_row(score="ten"), "missing_score", "rank"),
    (pointwise_row(score=None), "missing_score", "rank"),
    (pointwise_row(model="m9", answers={"answer": "x", "model": "m1"}), "model_mismatch", "model"),
    (pointwise_row(answers=[{"answer": "x", "model": "m1"}]), "wrong_type", "answers"),
    (pointwise_row(answers={"answer": 3, "model": "m1"}), "non_string_answer", "answers.answer"),
    ({key: value for key, value in pointwise_row().items() if key != "rank"}, "missing_field", "rank"),
])
def test_bad_pointwise_rows(tmp_path, bad, reason, field):
    path = write_lines(tmp_path / "rankings.jsonl", [pointwise_row(), bad])
    with pytest.raises(NectarFormatError) as caught:
        read_pointwise_log(path)
    assert (caught.value.row, caught.value.field, caught.value.reason) == (1, field, reason)


# -------------------------------------------------------------------------------- mixed k, empty

def test_several_k_in_one_file_are_counted(tmp_path):
    answers = [{"answer": t, "model": t, "rank": r} for t, r in (("x", 3.0), ("y", 1.0), ("z", 2.0))]
    three = rating_log_row(answers=answers, ranking_order=[1, 2, 0], model_ranking=["y", "z", "x"], k=3)
    report = validate_nectar(write_lines(tmp_path / "rankings.jsonl", [rating_log_row(), three, rating_log_row()]))
    assert report.ok and report.answers_per_row == {2: 2, 3: 1}
    assert "rows per k: 2: 2, 3: 1" in report.format_text()


@pytest.mark.parametrize("content", ["", "\n", "  \n\t\n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "rankings.jsonl"
    path.write_text(content)
    for read in (validate_nectar, load_nectar, read_rating_log, read_pointwise_log):
        with pytest.raises(NectarSourceError, match="the file is empty"):
            read(path)
    with pytest.raises(NectarSourceError, match="the file is empty"):
        validate_nectar(tmp_path)
