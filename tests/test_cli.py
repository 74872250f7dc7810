"""The ``starling`` command line: exit codes, JSON reports, and errors without tracebacks."""

import json
import subprocess
import sys

import pytest

from starling_lib import cli
from starling_lib.config import PRESETS, TinyWorldConfig
from starling_lib.data import tinyworld
from starling_lib.paths import ROOT

from conftest import RATING_STRATEGIES


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_every_published_rating_log(capsys, ratings_dir):
    paths = [str(ratings_dir / name / "rankings.jsonl") for name in RATING_STRATEGIES]
    code, out, err = run_cli(capsys, "data", "validate", *paths, "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["ok"] is True
    assert report["n_files"] == 6
    assert report["n_rows"] == report["n_valid"] == 1143
    assert [f["n_rows"] for f in report["files"]] == [195, 187, 199, 194, 187, 181]
    assert all(f["format"] == "rating-log" for f in report["files"])
    # the logs store rank as a float, never as a string; what was normalised is reported, not hidden
    assert all(f["normalised"]["fields_derived_from_rating_log"] == f["n_rows"] for f in report["files"])


def test_validate_text_report_ends_with_a_verdict(capsys, ratings_dir):
    code, out, _ = run_cli(capsys, "data", "validate", str(ratings_dir / "no_pairwise"))
    assert code == 0
    assert out.splitlines()[-1] == "ok: 195 of 195 rows valid in 1 file(s)"


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def world_rows():
    return tinyworld.generate_world(TinyWorldConfig(n_prompts=6, seed=3))


def test_validate_names_row_and_field_of_a_duplicate_rank(capsys, tmp_path, world_rows):
    world_rows[4]["answers"][2]["rank"] = world_rows[4]["answers"][5]["rank"]
    path = _write_jsonl(tmp_path / "bad.jsonl", world_rows)
    code, out, err = run_cli(capsys, "data", "validate", str(path))
    assert code == 1
    assert "row 4" in out and "answers[5].rank" in out and "duplicate_rank" in out
    assert out.splitlines()[-1] == "ERRORS: 5 of 6 rows valid in 1 file(s)"
    assert "Traceback" not in out + err


def test_validate_json_counts_every_reason(capsys, tmp_path, world_rows):
    world_rows[0]["answers"][0]["answer"] = ""
    kept = sorted(world_rows[1]["answers"], key=lambda a: a["rank"])[:6]  # ranks 1..6, num_responses 7
    world_rows[1]["answers"] = kept
    world_rows[3]["prompt"] = "Tell me about bees."
    path = _write_jsonl(tmp_path / "bad.jsonl", world_rows)
    code, out, _ = run_cli(capsys, "data", "validate", str(path), "--json")
    report = json.loads(out)["files"][0]
    assert code == 1
    assert (report["n_rows"], report["n_valid"]) == (6, 3)
    assert report["dropped"] == {"empty_answer": 1, "wrong_num_answers": 1, "no_human_turn": 1}
    where = {(p["row"], p["field"]) for p in report["problems"]}
    assert {(0, "answers[0].answer"), (1, "num_responses"), (3, "prompt")} <= where


def test_validate_with_k_rejects_other_sizes(capsys, tmp_path, world_rows):
    path = _write_jsonl(tmp_path / "world.jsonl", world_rows)
    assert run_cli(capsys, "data", "validate", str(path), "--k", "7")[0] == 0
    code, out, _ = run_cli(capsys, "data", "validate", str(path), "--k", "5", "--json")
    assert code == 1
    assert json.loads(out)["files"][0]["dropped"] == {"wrong_num_answers": 6}


def test_validate_missing_file_is_one_clear_line(capsys, tmp_path):
    code, out, err = run_cli(capsys, "data", "validate", str(tmp_path / "nope.jsonl"))
    assert code == 1
    assert err.strip() == f"starling: error: {tmp_path / 'nope.jsonl'}: no such file or folder " \
                          "(and not a hub id like 'berkeley-nest/Nectar')"


def test_console_script_prints_no_traceback_on_bad_json(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "\\n\\nHuman: hi\\n\\nAssistant: ", "answers": []}\n{not json\n')
    starling = ROOT / ".venv" / "bin" / "starling"
    command = [str(starling)] if starling.exists() else [sys.executable, "-m", "starling_lib.cli"]
    done = subprocess.run([*command, "data", "validate", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "row 1: [invalid_json]" in done.stdout and "invalid_json" in done.stdout


def test_tinyworld_json_matches_the_file_it_writes(capsys, tmp_path):
    out_file = tmp_path / "world.jsonl"
    code, out, _ = run_cli(capsys, "data", "tinyworld", "--n-prompts", "30", "--seed", "5",
                           "--out", str(out_file), "--json")
    summary = json.loads(out)
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0
    assert summary["n_prompts"] == len(rows) == 30
    assert summary["n_multi_turn"] == sum(r["turns"] > 1 for r in rows)
    assert summary["n_not_good_natured"] == sum(not r["good_natured"] for r in rows)
    # and what it wrote is valid Nectar
    assert run_cli(capsys, "data", "validate", str(out_file), "--k", "7")[0] == 0


def test_presets_json_lists_every_preset(capsys):
    code, out, _ = run_cli(capsys, "presets", "--json")
    configs = json.loads(out)
    assert code == 0
    assert list(configs) == list(PRESETS)
    assert configs["smoke"]["tokenizer"]["vocab_size"] < configs["tiny"]["tokenizer"]["vocab_size"]
    assert configs["full"]["policy_model"]["name_or_path"]


def test_reproduce_unknown_notebook_exits_1(capsys):
    code, _, err = run_cli(capsys, "reproduce", "--only", "99")
    assert code == 1
    assert "no notebook numbered 99" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "validate"])
    assert exit_info.value.code == 2


def test_bias_json_reproduces_figure_6_exactly(capsys, ratings_dir):
    folders = [str(ratings_dir / name) for name in RATING_STRATEGIES]
    code, out, err = run_cli(capsys, "bias", *folders, "--json")
    assert code == 0, err
    payload = json.loads(out)
    logs = {log["strategy"]: log for log in payload["logs"]}
    assert list(logs) == list(RATING_STRATEGIES)
    naive = logs["no_pairwise"]
    assert naive["first_counts"] == [61, 60, 34, 19, 9, 6, 6] and naive["n"] == 195
    assert [round(f, 3) for f in naive["first_freq"]] == [.313, .308, .174, .097, .046, .031, .031]
    assert all(f == c / 195 for f, c in zip(naive["first_freq"], naive["first_counts"]))
    assert "reparse" not in naive
    assert {e["strategy"] for e in payload["effects_vs_naive"]} == set(RATING_STRATEGIES)


def test_bias_reparse_reports_agreement_and_counts(capsys, ratings_dir):
    code, out, err = run_cli(capsys, "bias", str(ratings_dir), "--reparse", "--json")
    assert code == 0, err
    logs = json.loads(out)["logs"]
    assert len(logs) == 6 and sum(log["n"] for log in logs) == 1143
    for log in logs:
        rp = log["reparse"]
        assert rp["agreement"] >= 0.99 and rp["n_agree"] <= rp["n_recorded_full"]
        assert {"n_incomplete", "n_unparseable", "unparseable_by_reason"} <= set(rp)
    code, out, _ = run_cli(capsys, "bias", str(ratings_dir / "no_pairwise"), "--reparse")
    assert code == 0
    assert "0.313 0.308 0.174 0.097 0.046 0.031 0.031" in out
    assert "agreement with ranking_order 195/195 (100.0%)" in out


def test_bias_counts_unparseable_rows_instead_of_dropping_them(capsys, tmp_path, ratings_dir):
    lines = (ratings_dir / "no_pairwise" / "rankings.jsonl").read_text().splitlines()[:10]
    rows = [json.loads(line) for line in lines]
    rows[3]["rating_text"] = "I am unable to rank these responses."
    rows[5]["rating_text"] = "[['A', 'B']]"
    folder = tmp_path / "my_strategy"
    folder.mkdir()
    (folder / "rankings.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, out, err = run_cli(capsys, "bias", str(folder), "--reparse", "--json")
    assert code == 0, err
    rp = json.loads(out)["logs"][0]["reparse"]
    assert (rp["n_rows"], rp["n_parsed"], rp["n_unparseable"], rp["n_incomplete"]) == (10, 9, 1, 1)
    assert rp["unparseable_by_reason"] == {"no_ranking": 1} and rp["n_agree"] == 8


def test_bias_missing_folder_is_one_clear_line(capsys, tmp_path):
    code, out, err = run_cli(capsys, "bias", str(tmp_path / "nowhere"))
    assert code == 1 and out == ""
    assert err.startswith("starling: error:") and "rankings.jsonl" in err and "Traceback" not in err


# ------------------------------------------------------------------- every published judge log

def test_validate_and_bias_accept_every_published_folder(capsys, ratings_dir, experiments_dir):
    folders = [str(p) for p in sorted(experiments_dir.iterdir()) + sorted(ratings_dir.iterdir())]
    code, out, err = run_cli(capsys, "data", "validate", *folders, "--json")
    assert code == 0, err
    report = json.loads(out)
    kinds = {f["path"].split("/")[-2]: f["format"] for f in report["files"]}
    assert kinds["pointwise_rating_better_prompt"] == "pointwise-log"
    assert set(kinds.values()) == {"rating-log", "pointwise-log"} and len(kinds) == 12
    code, out, err = run_cli(capsys, "bias", *folders)
    assert code == 0 and err == ""
    assert "pointwise_rating_better_prompt: pointwise log, 672 answers of 97 prompts" in out
    code, out, err = run_cli(capsys, "bias", str(experiments_dir / "pairwise_agreement_explain"), "--json")
    log = json.loads(out)["logs"][0]
    assert sorted(log["by_k"], key=int) == ["2", "3", "4", "5", "6", "7"] and log["k"] == 7


def test_validate_strict_refuses_fields_outside_the_schema(capsys, experiments_dir):
    folder = str(experiments_dir / "pairwise_agreement_explain")
    code, out, _ = run_cli(capsys, "data", "validate", folder, "--strict")
    assert code == 1
    assert "row 0, field 'pairwise': [unknown_field]" in out and out.splitlines()[-1].startswith("ERRORS: 0 of 594")


@pytest.mark.parametrize("command", [["data", "validate"], ["bias"]])
def test_empty_file_exits_1_with_one_line(capsys, tmp_path, command):
    folder = tmp_path / "empty_strategy"
    folder.mkdir()
    (folder / "rankings.jsonl").write_text("\n   \n")
    code, out, err = run_cli(capsys, *command, str(folder))
    assert code == 1 and out == ""
    message = "the file is empty (no rows; blank lines do not count)"
    assert err == f"starling: error: {folder / 'rankings.jsonl'}: {message}\n"


def test_experiments_commands_reproduce_the_reference_numbers(capsys, experiments_dir):
    code, out, err = run_cli(capsys, "experiments", "agreement", str(experiments_dir), "--json")
    assert code == 0, err
    logs = {log["experiment"]: log for log in json.loads(out)["logs"]}
    assert [round(a["mean_error"], 3) for a in logs["pairwise_agreement_explain"]["by_k"]] == [
        .103, .207, .290, .275, .305, .301]
    scores = experiments_dir / "pointwise_rating_better_prompt"
    rankings = experiments_dir / "pointwise_pairwise_baseline"
    code, out, err = run_cli(capsys, "experiments", "pointwise", str(scores), "--rankings", str(rankings), "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["n_answers"] == 672 and payload["score_counts"]["10.0"] == 512
    c = payload["comparison"]
    assert (c["n_scored"], c["n_pairs"]) == (95, 570)
    assert {o: round(f, 3) for o, f in c["fractions"].items()} == {"tie": .700, "agree": .196, "disagree": .104}
    code, out, _ = run_cli(capsys, "experiments", "agreement", str(experiments_dir))
    assert out.splitlines()[2].split() == ["pairwise_agreement_explain", "True", "False", "0.103", "0.207", "0.290",
                                           "0.275", "0.305", "0.301"]
    code, out, err = run_cli(capsys, "experiments", "pointwise", str(rankings))
    assert code == 1 and out == "" and "a ranking log, not a pointwise log" in err
