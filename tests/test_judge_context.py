"""A run that cannot fit the model's context window fails before sending, naming the setting; judge
runs show progress. Over real HTTP: the fake server, made to report its context as vLLM does
(``max_model_len`` in ``GET /v1/models``; its token counts are whitespace words)."""

import json

import pytest
from aiohttp import web

from starling_lib import cli
from starling_lib.evaluation.mt_bench import load_bench
from starling_lib.judge import JudgeClient, JudgeRequest
from starling_lib.judge.context import ContextError, window_from_model_folder, window_from_models_list

from fake_server import FakeOpenAIServer


class ContextReportingServer(FakeOpenAIServer):
    """The fake server with the model's context in ``GET /v1/models``, as vLLM reports it."""

    def __init__(self, *args, max_model_len: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_model_len = max_model_len

    async def _models(self, request):
        return web.json_response({"object": "list", "data": [
            {"id": "other-model", "object": "model", "max_model_len": 10**6},
            {"id": self.model, "object": "model", "owned_by": "vllm", "max_model_len": self.max_model_len}]})


def requests(n_words, word="word", **params):
    """Requests whose prompts are 1..n_words words (the fake server's tokens); the last is the longest."""
    return [JudgeRequest(f"q{i}", [{"role": "user", "content": " ".join([word] * i)}], dict(params))
            for i in range(1, n_words + 1)]


def client_for(server, tmp_path, lines=None, **overrides):
    return JudgeClient(base_url=server.base_url, cache_path=tmp_path / "cache.sqlite", progress=False,
                       log=(lines.append if lines is not None else lambda line: None), **overrides)


def test_window_from_a_models_list():
    body = {"data": [{"id": "a", "max_model_len": 4096}, {"id": "b", "context_length": 8192},
                     {"id": "c", "max_model_len": True}]}
    assert window_from_models_list(body, "a").tokens == 4096
    assert window_from_models_list(body, "b").source == "context_length in GET /v1/models"
    assert window_from_models_list(body, "c") is None  # a bool is not a length
    assert window_from_models_list(body, "d") is None  # not listed, and not the only model
    assert window_from_models_list({"data": [{"id": "x", "max_model_len": 512}]}, "d").tokens == 512
    assert window_from_models_list({"data": []}, "a") is None and window_from_models_list("oops", "a") is None


def test_window_from_a_model_folder(tmp_path):
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.json").write_text(json.dumps({"max_position_embeddings": 256}))
    window = window_from_model_folder(str(tmp_path / "lm"))
    assert window.tokens == 256 and window.source == f"max_position_embeddings in {tmp_path / 'lm' / 'config.json'}"
    (tmp_path / "vlm").mkdir()
    (tmp_path / "vlm" / "config.json").write_text(json.dumps({"text_config": {"n_positions": 1024}}))
    assert window_from_model_folder(str(tmp_path / "vlm")).tokens == 1024
    assert window_from_model_folder("gpt-4-0613") is None and window_from_model_folder(str(tmp_path)) is None


def test_a_run_that_fits_is_probed_once_then_answered(serve, tmp_path):
    server = serve(server_class=ContextReportingServer, max_model_len=100)
    lines = []
    with client_for(server, tmp_path, lines, max_tokens=60) as client:
        report = client.run(requests(40), desc="judge")
    assert report.n_ok == 40 and report.n_sent == 41 and server.stats.requests == 41  # 40 + the probe
    assert "judge: context 100 tokens (max_model_len in GET /v1/models): longest prompt 40 tokens " \
           "(request 'q40') + max_tokens 60 fits" in lines


def test_max_tokens_that_leave_no_room_fail_before_anything_is_sent(serve, tmp_path):
    server = serve(server_class=ContextReportingServer, max_model_len=2048)
    with client_for(server, tmp_path) as client:  # JudgeConfig's max_tokens: FastChat's 2048
        with pytest.raises(ContextError, match=r"max_tokens 2048 \(judge\.max_tokens\) leaves no room for a "
                                               r"prompt in its context of 2048 tokens \(max_model_len in GET"):
            client.run(requests(3))
    assert server.stats.requests == 0


def test_prompt_and_max_tokens_over_the_window_name_what_would_fit(serve, tmp_path):
    server = serve(server_class=ContextReportingServer, max_model_len=100)
    with client_for(server, tmp_path, max_tokens=70) as client:
        with pytest.raises(ContextError, match=r"request 'q40'\) is 40 tokens and max_tokens 70 \(judge\.max_tokens\)"
                                               r" asks for more, 110 > its context of 100 tokens .* lower "
                                               r"judge\.max_tokens to at most 60"):
            client.run(requests(40))
        # max_tokens set by the requests themselves (as generation sets --max-new-tokens): named so
        with pytest.raises(ContextError, match=r"max_tokens 70 \(the 'generate m' requests' own max_tokens\)"):
            client.run(requests(40, max_tokens=70), desc="generate m")
    assert server.stats.requests == 2  # one probe each, no answer


def test_a_prompt_longer_than_the_window_cannot_be_read(serve, tmp_path):
    server = serve(server_class=ContextReportingServer, max_model_len=30)
    with client_for(server, tmp_path, max_tokens=8) as client:
        with pytest.raises(ContextError, match=r"is 40 tokens as the server counts them, more than its context "
                                               r"of 30 tokens .* use a model with a longer context"):
            client.run(requests(40))


def test_the_configured_window_wins_and_zero_turns_the_check_off(serve, tmp_path):
    server = serve(server_class=ContextReportingServer, max_model_len=10)
    with client_for(server, tmp_path, max_tokens=64, context_tokens=0) as client:
        assert client.run(requests(20)).n_ok == 20
    assert server.stats.requests == 20  # no probe
    with client_for(server, tmp_path, max_tokens=64, context_tokens=50) as client:
        with pytest.raises(ContextError, match=r"max_tokens 64 .* context of 50 tokens \(judge\.context_tokens\)"):
            client.run(requests(3, word="other"))


def test_cached_answers_are_not_checked_again_and_an_unknown_window_checks_nothing(serve, tmp_path):
    server = serve()  # GET /v1/models without a context: nothing to check, nothing extra sent
    with client_for(server, tmp_path, max_tokens=64) as client:
        assert client.run(requests(20)).n_sent == 20
    # the same requests now come from the cache: a window they would not fit is not even looked up
    with client_for(server, tmp_path, max_tokens=64, context_tokens=10) as client:
        report = client.run(requests(20))
    assert report.n_cached == 20 and server.stats.requests == 20


# ---- through the CLI -----------------------------------------------------------------------------------

@pytest.fixture
def answered(tmp_path, monkeypatch):
    """The first 3 demo questions with made-up answers of model ``m``, runs under tmp_path."""
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    for name in ("OPENAI_API_KEY", "STARLING_JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    answers = tmp_path / "model_answer"
    answers.mkdir()
    (answers / "m.jsonl").write_text("".join(
        json.dumps({"question_id": q.question_id, "answer_id": f"a{q.question_id}", "model_id": "m",
                    "choices": [{"index": 0, "turns": [f"An answer to turn {t}." for t in (1, 2)]}],
                    "tstamp": 0.0}) + "\n" for q in load_bench(None, limit=3).questions))
    return ("mt-bench", "judge", "--model-id", "m", "--answers", str(answers), "--limit", "3",
            "--out", str(tmp_path / "bench"), "--preset", "smoke")


def test_mt_bench_judge_with_a_short_context_judge_exits_with_the_setting(capsys, serve, answered):
    server = serve(server_class=ContextReportingServer, max_model_len=1024)
    code = cli.main([*answered, "--base-url", server.base_url, "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "Traceback" not in err
    assert "starling: error: model 'tiny-judge' at " in err
    assert "max_tokens 2048 (judge.max_tokens) leaves no room for a prompt in its context of 1024 tokens" in err
    assert server.stats.requests == 0


def test_judge_runs_show_progress_unless_switched_off(capsys, monkeypatch, answered):
    monkeypatch.setenv("STARLING_PROGRESS", "1")
    assert cli.main([*answered, "--simulated"]) == 0
    err = capsys.readouterr().err
    assert "mt-bench single: 100%" in err and "6/6" in err  # 3 questions x 2 turns
    assert cli.main([*answered, "--simulated", "--json"]) == 0  # --json: no bar (all cached now)
    assert "mt-bench single" not in capsys.readouterr().err
    monkeypatch.setenv("STARLING_PROGRESS", "0")
    assert cli.main([*answered, "--simulated"]) == 0
    assert "mt-bench single" not in capsys.readouterr().err
