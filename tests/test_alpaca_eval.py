"""AlpacaEval: published numbers reproduced exactly, hand-checked scoring, the LC GLM on data with a
known answer, and judging over real HTTP with the fake OpenAI server and the simulated judge."""

import functools
import json
import math

import numpy as np
import pytest

from starling_lib.config import TinyWorldConfig
from starling_lib.data.gold import gold_reward, human_turns
from starling_lib.data.tinyworld import generate_world
from starling_lib.evaluation import alpaca_eval as ae
from starling_lib.evaluation.simulated import SimulatedAlpacaJudge
from starling_lib.paths import shared_data

from fake_server import FakeOpenAIServer



# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def make_client(make_client):
    """The shared client (conftest.py), retrying once: garbage answers fail fast here."""
    return functools.partial(make_client, max_retries=1)


def alpaca_file(name):
    path = shared_data("alpaca_eval", name)
    if path is None:
        pytest.skip(f"published AlpacaEval data not present (../shared/data/alpaca_eval/{name})")
    return path


def tiny_outputs(n=30, seed=3):
    """(best, worst) outputs per single-turn tiny-world prompt, by gold reward."""
    rows = generate_world(TinyWorldConfig(n_prompts=n, seed=seed, multi_turn_fraction=0.0))
    best, worst = [], []
    for row in rows:
        instruction = human_turns(row["prompt"])[-1]
        answers = sorted((a["answer"] for a in row["answers"]), key=lambda a: gold_reward(row["prompt"], a))
        best.append({"instruction": instruction, "output": answers[-1], "generator": "tiny-best"})
        worst.append({"instruction": instruction, "output": answers[0], "generator": "tiny-worst"})
    return best, worst


def prefers_longer(body):
    """A judge that always picks the longer output, in the style the request asks for."""
    style, _, first, second = ae.parse_messages(body["messages"])
    second_wins = len(second) > len(first)
    if style == "ranking":
        return ae.RANKING_LABELS[int(second_wins)]
    lp = {"m": math.log(0.1), "M": math.log(0.9)} if second_wins else {"m": math.log(0.9), "M": math.log(0.1)}
    top = [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in lp.items()]
    return {"text": "M" if second_wins else "m",
            "logprobs": {"content": [{**top[int(second_wins)], "top_logprobs": top}], "refusal": None}}


# ---------------------------------------------------------------------------- published numbers

def test_published_gpt4_0613_concise_numbers_are_reproduced_exactly():
    annotations = ae.load_annotations(alpaca_file("gpt4_0613_concise_weighted_annotations.json"))
    board = ae.load_leaderboard(alpaca_file("weighted_alpaca_eval_gpt4_turbo_leaderboard.csv"))
    row = board.loc["gpt4_0613_concise"]
    assert row["win_rate"] == 9.400320574596272 and row["standard_error"] == 0.901021275896262
    assert row["avg_length"] == 627 and row["length_controlled_winrate"] == 21.57799091454269

    scores = ae.score_annotations(annotations)
    assert scores["win_rate"] == pytest.approx(9.400320574596272, abs=1e-9)
    assert scores["standard_error"] == pytest.approx(0.901021275896262, abs=1e-9)
    assert (scores["n_wins"], scores["n_wins_base"], scores["n_draws"], scores["n_total"]) == (71, 729, 5, 805)
    assert scores["discrete_win_rate"] == pytest.approx(9.130434782608695, abs=1e-9)
    assert scores["n_dropped"] == 0 and scores["dropped_indices"] == []
    assert scores["avg_length"] == 627 == row["avg_length"]
    for column in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                   "discrete_win_rate", "avg_length"):
        assert scores[column] == pytest.approx(row[column], abs=1e-9), column

    lc = ae.refit_lc_from_annotations(annotations)
    assert lc["variant"] == "no_instruction_difficulty" and lc["note"].startswith("Not the published")
    assert lc["n_fit"] == 805
    # the refit is far from the published 21.578: a gamed (concise) output is what LC is there to fix
    assert lc["lc_winrate_refit_no_difficulty"] == pytest.approx(43.19, abs=0.01)
    assert scores["lc_winrate_refit_no_difficulty"] == lc["lc_winrate_refit"]
    assert "length_controlled_winrate" not in scores


def test_published_output_files_load_and_match_the_annotations():
    model = ae.load_outputs(alpaca_file("gpt4_0613_concise_outputs.json"))
    reference = ae.load_outputs(alpaca_file("reference_gpt4_1106_preview_outputs.json"))
    annotations = ae.load_annotations(alpaca_file("gpt4_0613_concise_weighted_annotations.json"))
    assert len(model) == len(reference) == 805
    assert ae.avg_length([m["output"] for m in model]) == 627  # int(627.25...): truncated, as upstream
    assert [r["instruction"] for r in reference] == [a["instruction"] for a in annotations]
    assert [m["output"] for m in model] == [a["output_2"] for a in annotations]
    assert ae.load_outputs(alpaca_file("Starling-LM-7B-alpha_outputs.json"))[0]["generator"]


# ------------------------------------------------------------------------------------- scoring

def test_score_preferences_by_hand():
    # 0 -> 1.5; NaN dropped; p - 1 = [0, 1, .5, .5]: mean .5, var (ddof=1) = (.25 + .25) / 3 = 1/6
    s = ae.score_preferences([1, 2, 1.5, 0, float("nan")])
    assert s["win_rate"] == pytest.approx(50.0)
    assert s["standard_error"] == pytest.approx(100 * math.sqrt(1 / 6) / 2)  # 20.412...
    assert (s["n_wins"], s["n_wins_base"], s["n_draws"], s["n_total"]) == (1, 1, 2, 4)
    assert s["discrete_win_rate"] == pytest.approx(50.0)  # (1 win + 2 draws / 2) / 4
    assert s["n_dropped"] == 1 and s["dropped_indices"] == [4]


def test_weighted_preferences_and_the_discrete_rule_by_hand():
    # p - 1 = [.2, .7, .9]: win rate 60; discrete rounds to [1, 2, 2]: 2/3 wins
    s = ae.score_preferences([1.2, 1.7, 1.9])
    assert s["win_rate"] == pytest.approx(60.0)
    assert s["standard_error"] == pytest.approx(100 * math.sqrt(((.4) ** 2 + .1 ** 2 + .3 ** 2) / 2 / 3))
    assert (s["n_wins"], s["n_wins_base"], s["n_draws"]) == (2, 1, 0)
    assert s["discrete_win_rate"] == pytest.approx(200 / 3)


def test_invalid_preferences_are_dropped_and_counted():
    s = ae.score_preferences([0.5, 2.5, None, "bad", 1.25, 2])
    assert s["n_dropped"] == 4 and s["dropped_indices"] == [0, 1, 2, 3]
    assert s["n_total"] == 2 and s["win_rate"] == pytest.approx(62.5)
    # upstream's zero-one rule rounds first: 2.5 -> 2 is a model win there, 0.5 -> 0 a draw
    assert s["discrete_win_rate"] == pytest.approx(100 * (0 + 1 + 0.5 + 1) / 4)
    empty = ae.score_preferences([])
    assert empty["n_total"] == 0 and math.isnan(empty["win_rate"])


# ------------------------------------------------------------------------------------- loaders

def test_loader_errors_name_the_file_row_and_field(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(15)]
    rows[12]["output"] = None
    path = tmp_path / "x.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=r"x\.json: row 12: field 'output' must be a string, got None"):
        ae.load_outputs(path)
    path.write_text(json.dumps([{"output": "a"}]))
    with pytest.raises(ValueError, match=r"row 0: missing field 'instruction'"):
        ae.load_outputs(path)
    path.write_text(json.dumps({"instruction": "q"}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        ae.load_outputs(path)
    path.write_text(json.dumps([{"instruction": "q", "output_1": "a", "output_2": "b", "preference": "2"}]))
    with pytest.raises(ValueError, match=r"row 0: field 'preference' must be a number or null"):
        ae.load_annotations(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ae.load_outputs(tmp_path / "nope.json")


def test_write_annotations_round_trips_with_nan_as_null(tmp_path):
    rows = [{"instruction": "q", "output_1": "a", "output_2": "b", "preference": float("nan")},
            {"instruction": "r", "output_1": "a", "output_2": "bb", "preference": 1.75}]
    path = ae.write_annotations(tmp_path / "out" / "annotations.json", rows)
    assert json.loads(path.read_text())[0]["preference"] is None  # strict JSON, no NaN
    back = ae.load_annotations(path)
    assert back[1] == rows[1]
    assert ae.score_annotations(back)["n_dropped"] == 1


# ------------------------------------------------------------------------- length-controlled GLM

def _lc_rows(delta_len, preferences, generator_2="m"):
    return [{"instruction": f"q{i}", "output_1": "x" * (1000 + int(d)), "output_2": "x" * 1000,
             "generator_1": "ref", "generator_2": generator_2, "preference": p}
            for i, (d, p) in enumerate(zip(delta_len, preferences))]


def test_lc_recovers_a_known_length_model_and_predicts_the_intercept():
    rng = np.random.default_rng(0)
    delta = rng.integers(-600, 600, size=400)
    w_len, w0 = -1.3, 0.4
    x = np.tanh(delta / np.std(delta, ddof=1))
    soft = 1 / (1 + np.exp(-(w0 + w_len * x)))  # the exact probabilities as soft labels
    lc = ae.refit_lc_from_annotations(_lc_rows(delta, 1 + soft))
    assert lc["coefficients"]["np.tanh(std_delta_len)"] == pytest.approx(w_len, abs=1e-4)
    assert lc["coefficients"]["not_gamed_baseline"] == pytest.approx(w0, abs=1e-4)
    # 100 σ(0.4) = 100 / (1 + e^-0.4) = 59.8688 (e^-0.4 = 0.670320)
    assert lc["lc_winrate_refit_no_difficulty"] == pytest.approx(59.8688, abs=1e-3)
    assert lc["delta_len_std"] == pytest.approx(np.std(delta, ddof=1))


def test_lc_from_sampled_wins_and_with_instruction_difficulty():
    rng = np.random.default_rng(1)
    n = 4000
    delta = rng.normal(0, 500, size=n).round()
    difficulty = rng.normal(0, 1, size=n)
    w_len, w_d, w0 = -1.0, 0.8, -0.5
    x = np.tanh(delta / np.std(delta, ddof=1))
    p = 1 / (1 + np.exp(-(w0 + w_len * x + w_d * difficulty)))
    rows = _lc_rows(delta, 1 + (rng.random(n) < p))
    lc = ae.refit_lc_from_annotations(rows, {r["instruction"]: d for r, d in zip(rows, difficulty)})
    assert lc["variant"] == "with_instruction_difficulty"
    c = lc["coefficients"]
    assert c["np.tanh(std_delta_len)"] == pytest.approx(w_len, abs=0.15)
    assert c["instruction_difficulty"] == pytest.approx(w_d, abs=0.1)
    assert c["not_gamed_baseline"] == pytest.approx(w0, abs=0.1)
    fitted = np.mean(1 / (1 + np.exp(-(c["not_gamed_baseline"] + c["instruction_difficulty"] * difficulty))))
    assert lc["lc_winrate_refit_with_difficulty"] == pytest.approx(100 * fitted, abs=1e-9)
    with pytest.raises(ValueError, match="no value for 1 instruction"):
        ae.refit_lc_from_annotations(rows, {r["instruction"]: 0.0 for r in rows[1:]})


def test_lc_without_length_differences_is_the_raw_win_rate():
    # tanh(0) = 0 everywhere: an intercept-only soft-label fit has σ(w0) = mean(p - 1)
    rows = _lc_rows([0] * 6, [1, 2, 2, 1.5, 1.8, 0])
    lc = ae.refit_lc_from_annotations(rows)
    assert lc["lc_winrate_refit"] == pytest.approx(ae.score_annotations(rows)["win_rate"], abs=1e-3)
    same = ae.refit_lc_from_annotations(_lc_rows([5, -5, 9], [1, 2, 2], generator_2="ref"))
    assert same["lc_winrate_refit"] == 50.0  # a model against itself, by construction


# ------------------------------------------------------------------------------ order and parsing

def test_swap_is_deterministic_and_about_half():
    instructions = [f"instruction {i}" for i in range(400)]
    flags = [ae.is_swapped(s) for s in instructions]
    assert flags == [ae.is_swapped(s, seed=0) for s in instructions]
    assert 160 < sum(flags) < 240
    assert flags != [ae.is_swapped(s, seed=1) for s in instructions]


def test_weighted_verdict_from_hand_made_logprobs():
    def raw(*pairs, token="M"):
        top = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in pairs]
        return {"logprobs": {"content": [{"token": token, "logprob": pairs[0][1], "top_logprobs": top}]}}

    p = ae.p_second_from_logprobs(raw(("M", math.log(0.8)), ("m", math.log(0.2)), ("The", math.log(0.01))))
    assert p == pytest.approx(0.8)
    assert ae.preference_from_verdict(p, swapped=False) == pytest.approx(1.8)  # model shown second: 1 + 0.8
    assert ae.preference_from_verdict(p, swapped=True) == pytest.approx(1.2)  # model shown first: 1 + 0.2
    assert ae.p_second_from_logprobs(raw(("m", -0.1), ("\n", -3.0), token="m")) == 0.0  # M missing: p = 0
    spaced = raw((" M", math.log(0.3)), ("m", math.log(0.1)), token=" M")
    assert ae.p_second_from_logprobs(spaced) == pytest.approx(0.75)  # " M" counts as M: .3 / (.3 + .1)
    with pytest.raises(ValueError, match="neither 'm' nor 'M'"):
        ae.p_second_from_logprobs(raw(("The", -0.1), ("I", -2.0), token="The"))
    with pytest.raises(ValueError, match="supports `logprobs`"):
        ae.p_second_from_logprobs({"message": {"content": "M"}, "logprobs": None})


def test_ranking_verdict_parser():
    assert ae.parse_ranking_verdict("Output (a)") == 0
    assert ae.parse_ranking_verdict("**Output (b)**") == 1
    assert ae.parse_ranking_verdict("output(b).") == 1
    for bad in ("Output (a) is better than Output (b)", "", "I cannot decide."):
        with pytest.raises(ValueError, match="exactly one"):
            ae.parse_ranking_verdict(bad)


def test_messages_round_trip_any_text():
    text = 'He said "}\n```json\n{" and left.'
    for style in ae.STYLES:
        messages = ae.build_messages("What?\n\nHuman: hi", text, "second", style)
        assert ae.parse_messages(messages) == (style, "What?\n\nHuman: hi", text, "second")


# ---------------------------------------------------------------------------- judging over HTTP

@pytest.mark.parametrize("style", ["weighted", "ranking"])
def test_a_length_loving_judge_undoes_the_swap(serve, make_client, style):
    reference = [{"instruction": f"task {i}", "output": "r" * 20, "generator": "ref"} for i in range(24)]
    model = [{"instruction": f"task {i}", "output": "m" * (10 if i % 3 else 30)} for i in range(24)]
    client = make_client(serve(responder=prefers_longer))
    annotations, report = ae.judge_outputs(model, reference, client, style=style, model_name="mine")
    assert report["n_failed"] == 0 and report["n_judged"] == 24
    assert {a["is_swapped"] for a in annotations} == {True, False}
    for a in annotations:
        model_longer = len(a["output_2"]) > len(a["output_1"])
        expected = (1.9 if model_longer else 1.1) if style == "weighted" else (2.0 if model_longer else 1.0)
        assert a["preference"] == pytest.approx(expected), a["is_swapped"]
        assert a["generator_1"] == "ref" and a["generator_2"] == "mine" and a["failure"] is None
    assert ae.score_annotations(annotations)["n_wins"] == 8


@pytest.mark.parametrize("style", ["weighted", "ranking"])
def test_simulated_judge_end_to_end_prefers_the_better_model(serve, make_client, style):
    best, worst = tiny_outputs()
    client = make_client(serve(responder=SimulatedAlpacaJudge(seed=0).respond))
    better, report = ae.judge_outputs(best, worst, client, style=style)
    assert report["n_failed"] == 0 and report["n_pairs"] == len(best)
    assert ae.score_annotations(better)["win_rate"] > 50
    reverse, _ = ae.judge_outputs(worst, best, client, style=style)
    assert ae.score_annotations(reverse)["win_rate"] < 50
    if style == "weighted":
        assert isinstance(better[0]["raw_completion"]["logprobs"], dict)
    else:
        assert better[0]["raw_completion"] in ae.RANKING_LABELS


@pytest.mark.parametrize("style", ["weighted", "ranking"])
def test_garbage_answers_fail_those_items_without_crashing(serve, make_client, style):
    best, worst = tiny_outputs(n=12)
    bad = {best[i]["instruction"] for i in (1, 4, 7)}
    judge = SimulatedAlpacaJudge()

    def responder(body):
        _, instruction, _, _ = ae.parse_messages(body["messages"])
        return "As an AI language model, I have no preference." if instruction in bad else judge.respond(body)

    client = make_client(serve(responder=responder))
    annotations, report = ae.judge_outputs(best, worst, client, style=style)
    failed = [a for a in annotations if a["failure"] is not None]
    assert {a["instruction"] for a in failed} == bad and report["n_failed"] == 3
    assert all(math.isnan(a["preference"]) for a in failed)
    kind = "invalid_answer" if style == "ranking" else "unparsable_verdict"  # ranking: rejected, retried
    assert all(f["reason"].startswith(kind) for f in report["failures"])
    assert ae.score_annotations(annotations)["n_dropped"] == 3
    assert client.validate is None  # restored after the run


class NoLogprobsServer(FakeOpenAIServer):
    """A server that ignores ``logprobs`` (as some OpenAI-compatible servers do)."""

    def _completion(self, body, messages, answer):
        completion = super()._completion(body, messages, answer)
        for choice in completion["choices"]:
            choice["logprobs"] = None
        return completion


def test_a_server_without_logprobs_fails_weighted_items_with_a_clear_reason(serve, make_client):
    best, worst = tiny_outputs(n=4)
    client = make_client(serve(responder=SimulatedAlpacaJudge().respond, server_class=NoLogprobsServer))
    annotations, report = ae.judge_outputs(best, worst, client, style="weighted")
    assert report["n_failed"] == 4 and report["n_judged"] == 0
    assert all("supports `logprobs`" in f["reason"] for f in report["failures"])


def test_missing_unmatched_and_malformed_rows_are_reported(serve, make_client):
    best, worst = tiny_outputs(n=10)
    model = best[2:] + [{"instruction": "not in the reference", "output": "x"},
                        {"instruction": "broken", "output": None}, best[3]]
    client = make_client(serve(responder=SimulatedAlpacaJudge().respond))
    annotations, report = ae.judge_outputs(model, worst, client)
    assert len(annotations) == report["n_pairs"] == 8
    assert report["missing"] == {"count": 2, "first": [worst[0]["instruction"], worst[1]["instruction"]]}
    assert report["unmatched"] == {"count": 1, "first": ["not in the reference"]}
    assert report["malformed"] == [{"outputs": "model", "row": 9,
                                    "reason": "field 'output' must be a string, got None"}]
    assert report["duplicates"]["count"] == 1
    assert report["judge"]["n_sent"] == 8 and "results" not in report["judge"]


def test_a_second_run_on_the_same_cache_sends_nothing_and_matches(serve, make_client, tmp_path):
    best, worst = tiny_outputs(n=16)
    server = serve(responder=SimulatedAlpacaJudge().respond)
    first, report = ae.judge_outputs(best, worst, make_client(server), style="ranking")
    sent = server.stats.requests
    assert report["judge"]["n_sent"] == sent == 16
    again, report2 = ae.judge_outputs(best, worst, make_client(server), style="ranking")
    assert server.stats.requests == sent and report2["judge"]["n_sent"] == 0
    assert report2["judge"]["n_cached"] == 16 and again == first
    ae.write_annotations(tmp_path / "a.json", again)
    assert ae.load_annotations(tmp_path / "a.json") == first


# ------------------------------------------------------------------------------ simulated judge

def test_simulated_judge_probabilities_by_hand():
    judge = SimulatedAlpacaJudge(temperature=0.5, position_bias=0.3)
    instruction = "What should I know about coffee?"
    good = "Let me explain coffee. A key part is caffeine. It matters because of caffeine and roast."
    poor = "I cannot help with that."
    prompt = "\n\nHuman: " + instruction + "\n\nAssistant: "
    z = (gold_reward(prompt, good) - gold_reward(prompt, poor)) / 0.5 + 0.3
    answer = judge.respond({"messages": ae.build_messages(instruction, poor, good, "weighted"), "logprobs": True})
    assert answer["text"] == "M"
    top = {t["token"]: t["logprob"] for t in answer["logprobs"]["content"][0]["top_logprobs"]}
    assert math.exp(top["M"]) == pytest.approx(1 / (1 + math.exp(-z)))
    assert math.exp(top["M"]) + math.exp(top["m"]) == pytest.approx(1.0)
    body = {"messages": ae.build_messages(instruction, poor, good, "ranking")}
    assert len({judge.respond(body) for _ in range(5)}) == 1  # seeded by the request
    assert "only compare" in judge.respond({"messages": [{"role": "user", "content": "hi"}]})
