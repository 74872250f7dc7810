"""The Starling reward-model benchmark: hand-built files with hand-computed metrics, clear errors,
the CLI, a model scored end to end, and Starling-RM-34B's published numbers reproduced exactly."""

import json
import math

import numpy as np
import pytest
import torch

from starling_lib import cli
from starling_lib.config import get_preset
from starling_lib.paths import shared_data
from starling_lib.reward import bench, findings
from starling_lib.reward.collate import ListwiseCollator
from starling_lib.reward.train import build_backbone


def softplus(x):
    return math.log1p(math.exp(x))


PREFERENCE = [  # (id, a, b, winner, score_a, score_b)
    ("q1", "aaaa", "bb", "model_a", 2.0, 1.0),     # right; a longer and preferred
    ("q2", "x", "yyy", "model_b", 0.5, 0.5),       # score tie: 1/2
    ("q3", "same", "sam2", "model_a", 0.0, 3.0),   # wrong; equal lengths
    ("q4", "t", "u", "tie", 9.0, 9.0),             # tied battle: kept out, reported
]
TRUTH = [  # (id, score_a, score_b, score_c): a true, b false, c best
    ("t1", 1.0, 0.0, 2.0),        # a>b, c>b, c>=a
    ("t2", 0.504, 0.9, 0.496),    # only c>=a, because both round to 0.50
    ("t3", 0.0, 0.5, -0.006),     # none: -0.006 rounds to -0.01 < 0.00
]
SAFETY = [("301", "0", 1.0, 0.0), ("302", 1, 1.0, 0.0)]  # (id, safer_response_id, score_a, score_b)


def write(path, rows):
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture
def suite(tmp_path):
    """(benchmark folder, score folder) with every file hand-built."""
    data, scores = tmp_path / "bench", tmp_path / "scores"
    data.mkdir(), scores.mkdir()
    pref = [{"question_id": q, "prompt": f"p {q}", "response_a": a, "response_b": b, "winner": w}
            for q, a, b, w, _, _ in PREFERENCE]
    truth = [{"question_id": q, "prompt": f"p {q}", "response_a": "true", "response_b": "false", "response_c": "best"}
             for q, *_ in TRUTH]
    safety = [{"question_id": q, "prompt": f"p {q}", "response_a": "r0", "response_b": "r1", "safer_response_id": s,
               "is_response_0_safe": "True"} for q, s, _, _ in SAFETY]
    verbose = [{"prompt": "1+1", "response_a": "Here are some tips about GPT-4 ...", "response_b": "2"}]
    for name, rows in (("preference", pref), ("truthfulness", truth), ("safety", safety), ("verbosity", verbose)):
        write(data / bench.BENCHMARK_FILES[name], rows)
    write(scores / bench.BENCHMARK_FILES["preference"],
          [{**row, "score_a": sa, "score_b": sb} for row, (*_, sa, sb) in zip(pref, PREFERENCE)])
    write(scores / bench.BENCHMARK_FILES["truthfulness"],
          [{**row, "score_a": a, "score_b": b, "score_c": c} for row, (_, a, b, c) in zip(truth, TRUTH)])
    write(scores / bench.BENCHMARK_FILES["safety"],
          [{"question_id": int(q), "score_a": sa, "score_b": sb} for q, _, sa, sb in SAFETY])  # ids as numbers, as in rm34b_scores
    write(scores / bench.BENCHMARK_FILES["verbosity"], [{**verbose[0], "score_a": 0.0, "score_b": 1.0}])
    return data, scores


def test_hand_built_metrics(suite):
    data, scores = suite
    result = bench.run_bench(scores_dir=scores, benchmarks_folder=data, n_boot=200)
    pref, truth, safety, verbose = (result["benchmarks"][n] for n in ("preference", "truthfulness", "safety", "verbosity"))
    assert (pref["n_items"], pref["n_skipped"], result["skipped"]) == (3, 1, {"preference": ["q4"]})
    assert pref["accuracy"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert pref["log_loss"] == pytest.approx((softplus(-1.0) + math.log(2) + softplus(3.0)) / 3)
    assert pref["prefers_longer"] == pytest.approx((1 + 0.5 + 0.5) / 3)        # a length tie counts 1/2
    assert pref["label_prefers_longer"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert pref["accuracy_low"] <= pref["accuracy"] <= pref["accuracy_high"]
    assert (truth["a_over_b"], truth["c_over_b"], truth["c_at_least_a"]) == pytest.approx((1 / 3, 1 / 3, 2 / 3))
    assert truth["accuracy"] == pytest.approx(4 / 9)
    losses = [(softplus(b - a) + softplus(b - c) + softplus(a - c)) / 3 for _, a, b, c in TRUTH]
    assert truth["log_loss"] == pytest.approx(sum(losses) / 3)
    assert "prefers_longer" not in truth
    assert safety["accuracy"] == 0.5 and safety["log_loss"] == pytest.approx((softplus(-1) + softplus(1)) / 2)
    assert verbose["accuracy"] == 1.0 and result["not_scored"] == []
    assert result["extra_fields"] == {"safety": ["is_response_0_safe"]}  # kept and reported, not refused


def test_paired_difference_is_item_by_item(suite):
    data, scores = suite
    benchmarks = bench.load_benchmarks(data)
    model = bench.read_score_files(scores, benchmarks)
    lengths = bench.score_benchmarks(benchmarks, bench.length_scores)
    diff = bench.paired_accuracy_difference(benchmarks, model, lengths, n_boot=200)
    # Preference, per item: the model earns 1, 1/2, 0; "longer wins" 1, 1, 1/2 (q3's responses tie in length).
    assert diff["preference"][0] == pytest.approx(((1 - 1) + (0.5 - 1) + (0 - 0.5)) / 3)
    assert diff["verbosity"][0] == 1.0  # the model picks the short right answer, length never does
    assert bench.paired_accuracy_difference(benchmarks, model, model, n_boot=50)["safety"] == (0.0, 0.0, 0.0)


def test_notebook_tables_and_words(suite):
    data, scores = suite
    benchmarks = bench.load_benchmarks(data)
    model = bench.read_score_files(scores, benchmarks)
    lengths = bench.score_benchmarks(benchmarks, bench.length_scores)
    metrics = {"m": bench.bench_metrics(benchmarks, model, n_boot=200),
               "longer wins": bench.bench_metrics(benchmarks, lengths, n_boot=200, log_loss=False)}
    table = findings.metric_table(metrics)
    assert list(table.index) == ["m", "longer wins"] and list(table.columns) == list(bench.BENCHMARK_FILES)
    assert table.loc["m", "preference"] == pytest.approx(0.5) and table.loc["longer wins", "verbosity"] == 0.0
    assert table.loc["m", "truthfulness"] == pytest.approx(4 / 9)
    losses = findings.metric_table(metrics, "log_loss", ["safety", "preference"])
    assert list(losses.columns) == ["safety", "preference"] and losses.loc["longer wins"].isna().all()
    entry = {"accuracy": 0.6436, "accuracy_low": 0.6, "accuracy_high": 0.68549}
    assert findings.format_interval(entry) == "0.644 [0.600, 0.685]"
    diffs = {"preference": (0.0104, -0.0142, 0.0361), "safety": (-0.2, -0.3, -0.1)}
    assert findings.format_differences(diffs) == "preference +0.010 [-0.014, +0.036], safety -0.200 [-0.300, -0.100]"
    assert findings.format_differences(diffs, skip=("preference",)) == "safety -0.200 [-0.300, -0.100]"
    assert findings.differences_record(diffs)["safety"] == {"mean": -0.2, "low": -0.3, "high": -0.1}
    assert [findings.model_name(k) for k in ("kwise", "pairwise", "minilm-ft-kwise", "minilm-ft-pairwise")] == [
        "MiniLM K-wise head", "MiniLM pairwise head", "MiniLM fine-tuned K-wise", "MiniLM fine-tuned pairwise"]


@pytest.mark.parametrize("name, edit, words", [
    ("preference", lambda rows: rows[1].pop("winner"), ["preference_benchmark.json", "item q2", "'winner'", "missing"]),
    ("preference", lambda rows: rows[0].update(winner="model_c"), ["item q1", "'winner'", "model_c"]),
    ("truthfulness", lambda rows: rows[2].pop("response_c"), ["truthful_qa_benchmark.json", "item t3", "'response_c'"]),
    ("safety", lambda rows: rows[0].update(safer_response_id=2), ["pku_benchmark_answers.json", "item 301", "safer_response_id"]),
    ("verbosity", lambda rows: rows[0].update(response_b=None), ["verbose_benchmark.json", "item #0", "'response_b'"]),
])
def test_bad_benchmark_files_name_file_item_and_field(suite, name, edit, words):
    data, _ = suite
    path = data / bench.BENCHMARK_FILES[name]
    rows = json.loads(path.read_text())
    edit(rows)
    write(path, rows)
    with pytest.raises(bench.BenchmarkFormatError) as err:
        bench.load_benchmarks(data)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("edit, words", [
    (lambda rows: rows[1].update(question_id="q9"), ["item q9", "'question_id'", "does not match item q2"]),
    (lambda rows: rows[0].update(response_b="other"), ["item q1", "'response_b'", "does not match"]),
    (lambda rows: rows[2].update(score_b="3.0"), ["item q3", "'score_b'", "finite number"]),
    (lambda rows: rows[0].pop("score_a"), ["item q1", "'score_a'", "missing"]),
    (lambda rows: rows.pop(0), ["2 scored items", "has 3", "do not match"]),
])
def test_score_files_that_do_not_match_are_refused(suite, edit, words):
    data, scores = suite
    path = scores / bench.BENCHMARK_FILES["preference"]
    rows = json.loads(path.read_text())
    edit(rows)
    write(path, rows)
    with pytest.raises(bench.BenchmarkFormatError) as err:
        bench.run_bench(scores_dir=scores, benchmarks_folder=data)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_cli_json_and_one_line_errors(suite, capsys):
    data, scores = suite
    assert cli.main(["rm", "bench", "--scores", str(scores), "--benchmarks", str(data), "--json", "--n-boot", "100"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["benchmarks"]["truthfulness"]["accuracy"] == pytest.approx(4 / 9)
    path = scores / bench.BENCHMARK_FILES["truthfulness"]
    write(path, [{**row, "score_c": None} for row in json.loads(path.read_text())])
    assert cli.main(["rm", "bench", "--scores", str(scores), "--benchmarks", str(data)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truthful_qa_benchmark.json: item t1, field 'score_c'" in err
    assert cli.main(["rm", "bench", "--benchmarks", str(data)]) == 1  # neither a run nor --scores
    assert "one of the two" in capsys.readouterr().err


def test_a_saved_reward_model_is_scored_answer_by_answer(suite, tmp_path):
    """A run folder goes through load_trained and batched scoring; the scores written in the authors'
    layout equal each response scored alone, and read back to the same metrics."""
    data, _ = suite
    preset = get_preset("smoke")
    model, tokenizer = build_backbone(preset)
    model.save_pretrained(tmp_path / "run" / "final")
    tokenizer.save_pretrained(tmp_path / "run" / "final")
    saved = tmp_path / "saved"
    result = bench.run_bench(tmp_path / "run", benchmarks_folder=data, preset=preset, n_boot=100, save_scores=saved)
    assert set(result["benchmarks"]) == set(bench.BENCHMARK_FILES) and result["not_scored"] == []
    benchmarks = bench.load_benchmarks(data)
    scores = bench.read_score_files(saved, benchmarks)
    collator = ListwiseCollator(tokenizer, max_length=preset.reward.max_length)
    model.eval()
    with torch.no_grad():
        for example, row in zip(bench.benchmark_examples(benchmarks["truthfulness"]), scores["truthfulness"]):
            for answer, score in zip(example["answers"], row):
                one = collator([{"prompt": example["prompt"], "answers": [answer]}])
                alone = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"]).logits.item()
                assert score == pytest.approx(alone, abs=1e-2)  # batched (padded, autocast) vs alone
    again = bench.bench_metrics(benchmarks, scores, n_boot=100)
    assert again["preference"]["accuracy"] == result["benchmarks"]["preference"]["accuracy"]


PUBLISHED = shared_data("starling_rm_benchmarks")
needs_published = pytest.mark.skipif(PUBLISHED is None, reason="the Starling reward-model benchmark is not present "
                                                               "(../shared/data/starling_rm_benchmarks)")


@needs_published
def test_rm34b_published_scores_reproduce_exactly(capsys):
    assert cli.main(["rm", "bench", "--scores", str(PUBLISHED / "rm34b_scores"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    pref, safety = result["benchmarks"]["preference"], result["benchmarks"]["safety"]
    assert (pref["n_items"], safety["n_items"]) == (1000, 1000)
    assert pref["accuracy"] == 0.807 and safety["accuracy"] == 0.782  # the numbers, exactly
    # RM-34B prefers the longer Arena response in 691.5 of 1,000 battles, the voters in 630.5 (7 length ties count 1/2).
    assert pref["prefers_longer"] == 0.6915 and pref["label_prefers_longer"] == 0.6305
    assert pref["accuracy_low"] < 0.807 < pref["accuracy_high"]
    assert result["not_scored"] == ["truthfulness", "verbosity"]


@needs_published
def test_real_files_round_trip_through_the_authors_layout(tmp_path):
    benchmarks = bench.load_benchmarks(PUBLISHED)
    assert {n: len(b.rows) for n, b in benchmarks.items()} == {"preference": 1000, "truthfulness": 817,
                                                               "safety": 1000, "verbosity": 30}
    scores = bench.score_benchmarks(benchmarks, bench.length_scores)
    back = bench.read_score_files(bench.write_score_files(scores, benchmarks, tmp_path), benchmarks)
    assert all(np.array_equal(back[n], scores[n]) for n in benchmarks)
    metrics = bench.bench_metrics(benchmarks, back, n_boot=100, log_loss=False)
    # "longer wins" on the Arena battles is, by definition, how often the voters chose the longer one.
    assert metrics["preference"]["accuracy"] == metrics["preference"]["label_prefers_longer"] == 0.6305
    assert metrics["verbosity"]["accuracy"] == 0.0  # every verbose decoy is the longer response
