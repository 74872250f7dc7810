"""The simulated judge: real-log profiles, Plackett-Luce behaviour, calibration, the text protocol."""

import json

import numpy as np
import pytest

from conftest import RATING_STRATEGIES
from starling_lib.config import TinyWorldConfig
from starling_lib.data.gold import gold_reward
from starling_lib.data.tinyworld import generate_world
from starling_lib.judge.parse import parse_ranking
from starling_lib.judge.prompts import build_ranking_request
from starling_lib.judge.rank import rank_rows
from starling_lib.judge.simulated import (
    REAL_FIRST_PLACE_COUNTS, SimulatedJudge, calibrate_bias, expected_first_place, first_place_probabilities,
    log_weights,
)


@pytest.fixture(scope="module")
def world():
    return generate_world(TinyWorldConfig(n_prompts=120, seed=5))


def test_default_profiles_are_the_counts_in_the_real_logs(ratings_dir):
    assert tuple(REAL_FIRST_PLACE_COUNTS) == RATING_STRATEGIES
    for name, counts in REAL_FIRST_PLACE_COUNTS.items():
        rows = [json.loads(line) for line in (ratings_dir / name / "rankings.jsonl").read_text().splitlines()]
        assert tuple(np.bincount([r["ranking_order"][0] for r in rows], minlength=7)) == counts


def test_a_quality_blind_judge_reproduces_its_profile():
    target = np.array(REAL_FIRST_PLACE_COUNTS["no_pairwise"]) / 195
    judge = SimulatedJudge(quality=lambda prompt, answer: 0.0, profiles={"no_pairwise": log_weights(target)})
    assert np.allclose(first_place_probabilities(judge.bias("no_pairwise", 7)), target)
    answers = [f"a{i}" for i in range(7)]
    tops = [judge.rank("p", answers, "no_pairwise", key=str(i))[0] for i in range(6000)]
    freq = np.bincount(tops, minlength=7) / len(tops)
    assert np.abs(freq - target).max() < 0.02


def test_an_unbiased_judge_follows_the_gold_reward(world):
    judge = SimulatedJudge(bias_scale=0.0, temperature=0.01)
    agree = 0
    for i, row in enumerate(world):
        answers = [a["answer"] for a in row["answers"]]
        gold = [gold_reward(row["prompt"], a) for a in answers]
        top = judge.rank(row["prompt"], answers, "no_pairwise", key=str(i))[0]
        agree += max(gold) - gold[top] < 0.05  # near-ties in gold are coin flips
    assert agree / len(world) > 0.95


def test_rankings_are_deterministic_and_seeded():
    judge = SimulatedJudge(quality=lambda p, a: 0.0)
    answers = [f"a{i}" for i in range(7)]
    assert judge.rank("p", answers, "no_pairwise", key="x") == judge.rank("p", answers, "no_pairwise", key="x")
    other = SimulatedJudge(quality=lambda p, a: 0.0, seed=1)
    draws = {tuple(other.rank("p", answers, "no_pairwise", key=str(i))) for i in range(20)}
    assert len(draws) > 10


def test_respond_speaks_the_ranking_protocol(world):
    row = world[0]
    req = build_ranking_request(row["prompt"], [a["answer"] for a in row["answers"]], "tiebreak_order_given", item_id="0")
    judge = SimulatedJudge()
    text = judge.respond({"model": "tiny-judge", "messages": req.messages})
    assert text == judge.respond({"messages": req.messages})
    assert text.startswith("This is a ") and parse_ranking(text, 7).complete
    foreign = judge.respond({"messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(ValueError):
        parse_ranking(foreign, 7)


def test_calibration_hits_a_target_that_a_naive_profile_misses(world):
    q = np.array([[gold_reward(r["prompt"], a["answer"]) for a in r["answers"]] for r in world])
    target = np.array(REAL_FIRST_PLACE_COUNTS["no_pairwise"]) / 195
    naive = expected_first_place(q, log_weights(target), 0.5)
    calibrated = expected_first_place(q, calibrate_bias(target, q, 0.5), 0.5)
    assert np.abs(naive - target).max() > 0.03  # quality dilutes the bias
    assert np.abs(calibrated - target).max() < 0.005


def test_rank_rows_keeps_every_row_with_its_status(world):
    class Garbled:
        def __init__(self):
            self.judge, self.n = SimulatedJudge(), 0

        def respond(self, request):
            self.n += 1
            text = self.judge.respond(request)
            if self.n % 5 == 0:
                return "I refuse to rank."
            if self.n % 7 == 0:
                return text.split(",")[0] + "]]"  # only the first letter: incomplete
            return text

    rows = world[:40]
    run = rank_rows(rows, "no_pairwise", Garbled())
    assert len(run.items) == 40 and [it.id for it in run.items] == [str(i) for i in range(40)]
    counts = run.status_counts
    assert counts["unparseable"] == 8 and counts["incomplete"] == 4 and counts["ok"] == 28
    bad = next(it for it in run.items if it.status == "unparseable")
    assert bad.positions is None and "no_ranking" in bad.reason
    assert len(run.orders()) == 28 and len(run.orders(complete_only=False)) == 32
    good = next(it for it in run.items if it.status == "ok")
    assert sorted(good.answer_order) == list(range(7))
    with pytest.raises(TypeError, match="JudgeClient"):
        rank_rows(rows, "no_pairwise", object())


def test_fake_server_process_serves_the_simulated_judge_to_the_real_client(tmp_path, world):
    """`python -m starling_lib.judge.server --judge simulated`: a whole ranking run over HTTP."""
    import subprocess
    import sys

    from starling_lib.judge import JudgeClient
    from starling_lib.judge.rank import ranking_validator

    proc = subprocess.Popen([sys.executable, "-m", "starling_lib.judge.server", "--judge", "simulated"],
                            stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        with JudgeClient(base_url=base_url, cache_path=tmp_path / "cache.sqlite", validate=ranking_validator(7),
                         progress=False, log=lambda line: None) as client:
            run = rank_rows(world[:12], "no_pairwise", client)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert run.status_counts == {"ok": 12} and run.judge_report.n_sent == 12
    local = rank_rows(world[:12], "no_pairwise", SimulatedJudge())
    assert [it.positions for it in run.items] == [it.positions for it in local.items]
