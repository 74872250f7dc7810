"""``starling mt-bench`` and ``starling alpaca-eval``: the commands wire the evaluation library, offline."""

import json

import pytest

from starling_lib import cli
from starling_lib.paths import shared_data

JUDGE_ENV = ("OPENAI_API_KEY", "STARLING_JUDGE_BASE_URL", "OPENAI_BASE_URL")


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    """Every run folder and judge cache under tmp_path; no judge endpoint from the environment."""
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    for name in JUDGE_ENV:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "runs"


# ---- AlpacaEval ----------------------------------------------------------------------------------

@pytest.fixture
def published_annotations():
    path = shared_data("alpaca_eval")
    if path is None:
        pytest.skip("AlpacaEval reference data not present (../shared/data/alpaca_eval)")
    return path / "gpt4_0613_concise_weighted_annotations.json"


def test_alpaca_score_reproduces_the_published_leaderboard_row(capsys, published_annotations):
    code, out, err = run_cli(capsys, "alpaca-eval", "score", published_annotations, "--json")
    assert code == 0, err
    s = json.loads(out)
    # the leaderboard's floats; the last bit of a mean or standard error depends on summation order
    assert s["win_rate"] == pytest.approx(9.400320574596272, abs=1e-12)
    assert s["standard_error"] == pytest.approx(0.901021275896262, abs=1e-12)
    assert (s["n_wins"], s["n_wins_base"], s["n_draws"], s["n_total"]) == (71, 729, 5, 805)
    assert s["discrete_win_rate"] == pytest.approx(9.130434782608695, abs=1e-12)
    assert s["avg_length"] == 627 and s["n_dropped"] == 0
    # no field under the leaderboard's name: the offline refit is not the published LC (21.578)
    assert "length_controlled_winrate" not in s and s["lc_variant"] == "no_instruction_difficulty"
    assert s["lc_winrate_refit_no_difficulty"] == pytest.approx(43.19, abs=0.01)
    assert s["lc_note"].startswith("Not the published length_controlled_winrate")

    code, out, _ = run_cli(capsys, "alpaca-eval", "score", published_annotations)
    assert code == 0 and "9.40 (standard error 0.90)" in out and "71 / 729 / 5 of 805" in out


def test_alpaca_score_with_instruction_difficulty(capsys, tmp_path):
    rows = [{"instruction": f"q{i}", "output_1": "ref " * (i % 3 + 1), "output_2": "model " * (i % 4 + 1),
             "preference": 1.0 + (i % 5) / 4, "generator_1": "ref", "generator_2": "m"} for i in range(20)]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(rows))
    csv = tmp_path / "difficulty.csv"
    csv.write_text("instruction,difficulty\n" + "".join(f"q{i},{(i % 7) / 3 - 1}\n" for i in range(20)))
    code, out, err = run_cli(capsys, "alpaca-eval", "score", path, "--instruction-difficulty", csv, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["lc_variant"] == "with_instruction_difficulty" and "length_controlled_winrate" not in s
    assert isinstance(s["lc_winrate_refit_with_difficulty"], float)

    csv.write_text("instruction,difficulty\nq0,hard\n")
    code, _, err = run_cli(capsys, "alpaca-eval", "score", path, "--instruction-difficulty", csv)
    assert code == 1 and str(csv) in err and "row 0" in err and "Traceback" not in err


def test_alpaca_score_names_file_and_row_of_a_malformed_annotation(capsys, tmp_path):
    rows = [{"instruction": f"q{i}", "output_1": "a", "output_2": "b", "preference": 1.5} for i in range(5)]
    del rows[3]["output_2"]
    path = tmp_path / "bad_annotations.json"
    path.write_text(json.dumps(rows))
    code, out, err = run_cli(capsys, "alpaca-eval", "score", path)
    assert code == 1 and out == ""
    assert err.startswith("starling: error: ") and str(path) in err and "row 3" in err and "'output_2'" in err
    assert "Traceback" not in err


def test_alpaca_judge_simulated_writes_annotations(capsys, tmp_path):
    from starling_lib.evaluation.study import alpaca_demo_set

    _, references = alpaca_demo_set(12)
    # A worse model: the reference answer cut to its first few words.
    worse = [{"instruction": r["instruction"], "output": " ".join(r["output"].split()[:4]), "generator": "cut"}
             for r in references]
    ref_path, out_path = tmp_path / "reference.json", tmp_path / "cut_outputs.json"
    ref_path.write_text(json.dumps(references))
    out_path.write_text(json.dumps(worse))
    code, out, err = run_cli(capsys, "alpaca-eval", "judge", out_path, "--reference", ref_path, "--simulated",
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_pairs"] == 12 and report["n_judged"] == 12 and report["n_failed"] == 0
    assert report["missing"]["count"] == 0 and report["unmatched"]["count"] == 0
    annotations = tmp_path / "cut_outputs_annotations.json"
    assert report["annotations"] == str(annotations) and annotations.is_file()
    rows = json.loads(annotations.read_text())
    assert len(rows) == 12 and all(1 <= r["preference"] <= 2 for r in rows)
    assert report["scores"]["n_total"] == 12 and report["scores"]["win_rate"] < 50  # cut answers lose

    # The written file scores the same through `alpaca-eval score`; a rerun is served from the cache.
    code, out, _ = run_cli(capsys, "alpaca-eval", "score", annotations, "--json")
    assert code == 0 and json.loads(out)["win_rate"] == report["scores"]["win_rate"]
    code, out, _ = run_cli(capsys, "alpaca-eval", "judge", out_path, "--reference", ref_path, "--simulated",
                           "--json")
    assert code == 0 and json.loads(out)["judge"]["n_cached"] == 12


# ---- MT-Bench --------------------------------------------------------------------------------------

def test_mt_bench_generate_judge_score_on_the_demo_set(capsys, runs, tiny_policy_dir):
    gen = ("mt-bench", "generate", "--model-id", "tiny", "--model", tiny_policy_dir, "--preset", "smoke",
           "--limit", 4, "--max-new-tokens", 8, "--json")
    code, out, err = run_cli(capsys, *gen)
    assert code == 0, err
    report = json.loads(out)
    answers = runs / "mt_bench" / "demo" / "model_answer" / "tiny.jsonl"
    assert report["path"] == str(answers) and report["n_generated"] == 4 and report["n_failed"] == 0
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [1, 2, 3, 4]
    assert all(r["model_id"] == "tiny" and len(r["choices"][0]["turns"]) == 2 for r in rows)

    code, out, err = run_cli(capsys, *gen)  # resumed: everything is on disk
    assert code == 0 and json.loads(out)["n_generated"] == 0 and json.loads(out)["n_skipped"] == 4

    code, out, err = run_cli(capsys, "mt-bench", "judge", "--model-id", "tiny", "--preset", "smoke", "--simulated",
                             "--json")
    assert code == 0, err
    judged = json.loads(out)
    # the smoke preset judges the first 8 demo questions (eval.mt_bench_questions); the 4 without an
    # answer are skipped and reported, turn by turn
    assert judged["report"]["skipped"]["missing_answer"]["count"] == 2 * 4
    judgments = runs / "mt_bench" / "demo" / "model_judgment" / "tiny-judge_single.jsonl"
    assert judged["judgments"] == str(judgments) and judged["n_judgments"] == 8
    assert judged["report"]["n_ok"] == 8 and judged["report"]["n_failed"] == 0
    assert len(judgments.read_text().splitlines()) == 8
    assert (runs / "judge" / "demo-simulated-cache.sqlite").is_file()  # never the real judge's cache

    code, out, err = run_cli(capsys, "mt-bench", "score", judgments, "--json")
    assert code == 0, err
    scores = json.loads(out)
    assert scores["mode"] == "single"
    entry = scores["scores"]["tiny"]
    assert isinstance(entry["overall"], float) and 1 <= entry["overall"] <= 10
    assert entry["n_judgments"] == 8 and entry["n_failed"] == 0

    code, out, _ = run_cli(capsys, "mt-bench", "score", judgments)
    assert code == 0 and out.splitlines()[0].split() == ["model", "turn", "1", "turn", "2", "overall", "n", "failed"]
    assert out.splitlines()[1].split()[0] == "tiny"


def _fake_answers(questions, model_id):
    return "".join(json.dumps({"question_id": q.question_id, "answer_id": f"a{q.question_id}", "model_id": model_id,
                               "choices": [{"index": 0, "turns": [f"{model_id} answer to question "
                                                                  f"{q.question_id}, turn {t}." for t in (1, 2)]}],
                               "tstamp": 0.0}) + "\n" for q in questions)


def test_full_real_mt_bench_judged_through_the_cli(capsys, tmp_path):
    from starling_lib.evaluation.mt_bench import load_questions

    real = shared_data("mt_bench")
    if real is None:
        pytest.skip("MT-Bench reference data not present (../shared/data/mt_bench)")
    questions = load_questions(real / "question.jsonl")
    assert len(questions) == 80
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "fake.jsonl").write_text(_fake_answers(questions, "fake"))
    code, out, err = run_cli(capsys, "mt-bench", "judge", "--questions", real, "--answers", answers,
                             "--model-id", "fake", "--simulated", "--out", tmp_path / "out", "--json")
    assert code == 0, err
    judged = json.loads(out)
    assert judged["n_judgments"] == 160 and judged["report"]["n_ok"] == 160
    assert judged["report"]["n_failed"] == 0 and judged["report"]["n_skipped"] == 0
    assert judged["scores"]["fake"]["n_judgments"] == 160 and judged["scores"]["fake"]["n_failed"] == 0
    assert "references" in err and "gpt-4.jsonl" in err  # FastChat's reference answers were used


def test_mt_bench_pairwise_and_judgments_of_other_models_are_kept(capsys, tmp_path):
    from starling_lib.evaluation.mt_bench import DEMO_DIR, load_questions

    questions = load_questions(DEMO_DIR / "question.jsonl")[:3]
    answers = tmp_path / "answers"
    answers.mkdir()
    for model in ("a", "b"):
        (answers / f"{model}.jsonl").write_text(_fake_answers(questions, model))
    common = ("--answers", answers, "--out", tmp_path, "--limit", 3, "--simulated", "--json")
    for model in ("a", "b"):  # two runs into the same judgments file
        code, out, err = run_cli(capsys, "mt-bench", "judge", "--model-id", model, *common)
        assert code == 0, err
    single = tmp_path / "model_judgment" / "tiny-judge_single.jsonl"
    code, out, _ = run_cli(capsys, "mt-bench", "score", single, "--json")
    assert code == 0 and sorted(json.loads(out)["scores"]) == ["a", "b"]

    code, out, err = run_cli(capsys, "mt-bench", "judge", "--model-id", "a", "b", "--mode", "pairwise", *common)
    assert code == 0, err
    judged = json.loads(out)
    assert judged["n_judgments"] == 6 and judged["report"]["n_ok"] == 12  # both orders
    code, out, _ = run_cli(capsys, "mt-bench", "score", tmp_path / "model_judgment" / "tiny-judge_pair.jsonl",
                           "--json")
    rates = json.loads(out)
    assert rates["mode"] == "pairwise" and rates["scores"]["a"]["n"] + rates["scores"]["a"]["n_failed"] == 6

    code, _, err = run_cli(capsys, "mt-bench", "judge", "--model-id", "a", "--mode", "pairwise", *common)
    assert code == 1 and "exactly two models" in err
    code, _, err = run_cli(capsys, "mt-bench", "judge", "--model-id", "nobody", *common)
    assert code == 1 and "no answers for ['nobody']" in err and "Traceback" not in err


def test_mt_bench_judge_without_key_or_endpoint_says_what_to_set(capsys, tmp_path):
    from starling_lib.evaluation.mt_bench import DEMO_DIR, load_questions

    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "m.jsonl").write_text(_fake_answers(load_questions(DEMO_DIR / "question.jsonl")[:2], "m"))
    code, out, err = run_cli(capsys, "mt-bench", "judge", "--model-id", "m", "--answers", answers)
    assert code == 1 and out == ""
    assert "starling: error: no API key for https://api.openai.com/v1" in err and "OPENAI_API_KEY" in err
    assert "Traceback" not in err


def test_judge_flags_are_exclusive_and_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["mt-bench", "judge", "--model-id", "m", "--simulated", "--base-url", "http://127.0.0.1:1/v1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["mt-bench", "generate", "--model-id", "m"])  # neither --model nor --base-url
    assert exc.value.code == 2
    capsys.readouterr()


def test_mt_bench_generate_from_an_openai_compatible_server(capsys, runs, tmp_path, serve):
    server = serve()  # the fake server's default, deterministic answers
    argv = ("mt-bench", "generate", "--model-id", "served", "--base-url", server.base_url, "--served-model", "m-7b",
            "--limit", 3, "--out", tmp_path / "bench", "--json")
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    report = json.loads(out)
    assert report["n_generated"] == 3 and report["n_failed"] == 0
    answers = tmp_path / "bench" / "model_answer" / "served.jsonl"
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["choices"][0]["turns"]) == 2 and r["model_id"] == "served" for r in rows)
    assert (runs / "judge" / "demo-generate-cache.sqlite").is_file()
    code, out, _ = run_cli(capsys, *argv[:-1])  # text mode, resumed
    assert code == 0 and out.startswith("0 generated, 3 already on disk of 3 questions")


def test_mt_bench_generate_with_an_unknown_model_fails_cleanly(capsys, tmp_path):
    code, out, err = run_cli(capsys, "mt-bench", "generate", "--model-id", "x", "--model", tmp_path / "no-such-model",
                             "--limit", 1)
    assert code == 1 and "not a model folder, and not loadable as a hub id" in err and "Traceback" not in err
