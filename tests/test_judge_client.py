"""The judge client over real HTTP: a fake OpenAI server on 127.0.0.1 and the real openai client."""

import asyncio
import email.utils
import json
import time

import openai
import pytest

from starling_lib.config import JudgeConfig
from starling_lib.judge import JudgeCache, JudgeClient, JudgeRequest, estimate_cost, request_key
from starling_lib.judge.client import retry_after_seconds
from starling_lib.judge.server import HTTPFault, default_responder

from fake_server import FaultConfig

KEY = "sk-test-LEAKCANARY-7f3a9c2e51b04d86"  # the shared make_client fixture (conftest.py) uses this key




def requests(n, tag="q"):
    return [JudgeRequest(f"{tag}{i}", [{"role": "user", "content": f"{tag} question number {i}"}])
            for i in range(n)]


def expected_text(request):
    return default_responder({"messages": request.messages})


def must_start_with_answer(text):
    if not text.startswith("answer:"):
        raise ValueError(f"not an answer: {text[:20]!r}")


def test_answers_come_back_in_request_order_with_usage(serve, make_client):
    server = serve()
    client = make_client(server)
    reqs = requests(12)
    report = client.run(reqs)
    assert [r.id for r in report.results] == [r.id for r in reqs]
    assert [r.text for r in report.results] == [expected_text(r) for r in reqs]
    assert report.n_ok == 12 and report.n_failed == 0 and report.n_sent == 12 == server.stats.requests
    first = report.results[0]
    assert first.status == "ok" and first.attempts == 1 and not first.cached
    assert first.usage == {"prompt_tokens": 4, "completion_tokens": 1}  # "q question number 0"
    assert first.raw["message"]["content"] == first.text and first.raw["finish_reason"] == "stop"
    assert report.texts() == {r.id: expected_text(r) for r in reqs}


@pytest.mark.parametrize("header", ["seconds", "ms"])
def test_429_waits_exactly_what_retry_after_asks(serve, make_client, header):
    server = serve(faults=FaultConfig(rate_429=1.0, retry_after_s=0.3, retry_after_header=header,
                                      max_faults_per_key=1))
    # Without the header the jittered backoff would retry within 1 ms.
    client = make_client(server, backoff_max_s=5.0)
    (result,) = client.run(requests(1)).results
    assert result.status == "ok" and result.attempts == 2
    first, second = server.stats.arrivals[result.key]
    assert 0.3 <= second - first < 0.6


def test_retry_after_is_capped_by_backoff_max(serve, make_client):
    server = serve(faults=FaultConfig(rate_429=1.0, retry_after_s=30, max_faults_per_key=1))
    client = make_client(server, backoff_max_s=0.1)
    start = time.perf_counter()
    assert client.run(requests(1)).n_ok == 1
    assert time.perf_counter() - start < 2


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after": "0.25"}) == 0.25
    assert retry_after_seconds({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    in_3s = email.utils.formatdate(time.time() + 3, usegmt=True)  # HTTP date, 1 s resolution
    assert 1.5 <= retry_after_seconds({"retry-after": in_3s}) <= 3.5
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize("fault", ["500", "timeout", "malformed_body", "malformed_answer"])
def test_transient_faults_are_retried_until_the_answer_is_right(serve, make_client, fault):
    rate = {"500": "rate_500", "timeout": "rate_timeout", "malformed_body": "rate_malformed_body",
            "malformed_answer": "rate_malformed_answer"}[fault]
    server = serve(faults=FaultConfig(**{rate: 1.0}, timeout_sleep_s=2.0, max_faults_per_key=2))
    client = make_client(server, timeout_s=0.3, validate=must_start_with_answer)
    reqs = requests(3)
    report = client.run(reqs)
    assert [r.status for r in report.results] == ["ok"] * 3
    assert [r.text for r in report.results] == [expected_text(r) for r in reqs]
    assert [r.attempts for r in report.results] == [3] * 3
    assert server.stats.faults[fault] == 6 and report.n_sent == 9
    assert len(client.cache) == 3  # only the right answers were stored


def test_bounded_retries_end_in_a_failed_item_and_the_run_goes_on(serve, make_client):
    def responder(body):
        if "poison" in body["messages"][0]["content"]:
            raise HTTPFault(503, "overloaded", type="server_error")
        return default_responder(body)

    server = serve(responder)
    client = make_client(server, max_retries=2)
    reqs = requests(5) + [JudgeRequest("bad", [{"role": "user", "content": "poison"}])] + requests(3, "r")
    report = client.run(reqs)
    bad = report.results[5]
    assert bad.status == "failed" and bad.text is None and bad.attempts == 3
    assert bad.reason == "server_error: 503 (gave up after 3 attempts)"
    assert server.stats.per_key[bad.key] == 3
    assert report.n_ok == 8 and report.n_failed == 1 and report.failures == {"server_error": 1}
    assert "1 failed (server_error 1)" in report.format_text()
    assert bad.key not in client.cache and len(client.cache) == 8


def test_rate_limit_that_never_ends_is_reported(serve, make_client):
    server = serve(faults=FaultConfig(rate_429=1.0, retry_after_s=0.01, max_faults_per_key=100))
    report = make_client(server, max_retries=3).run(requests(2))
    assert [r.reason for r in report.results] == ["rate_limited: 429 (gave up after 4 attempts)"] * 2
    assert report.failures == {"rate_limited": 2} and report.n_sent == 8


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_non_retryable_errors_fail_at_once(serve, make_client, status):
    responder = default_responder
    if status == 422:
        def responder(body):
            raise HTTPFault(422, "unprocessable ranking request")
    server = serve(responder, api_keys={KEY, "sk-other"} if status != 401 else {"sk-other"},
                   strict_model=status == 404)
    client = make_client(server, model="tiny-judge" if status != 404 else "no-such-model")
    reqs = [JudgeRequest("x", [] if status == 400 else [{"role": "user", "content": "hi"}])]
    (result,) = client.run(reqs).results
    assert result.status == "failed" and result.attempts == 1 and server.stats.requests == 1
    kind = {400: "bad_request", 401: "auth_error", 404: "not_found", 422: "unprocessable"}[status]
    assert result.reason.startswith(f"{kind}: {status}")
    if status == 401:
        assert "rejected the API key" in result.reason


def test_second_run_is_served_from_the_cache(serve, make_client):
    server = serve()
    client = make_client(server)
    reqs = requests(10)
    first = client.run(reqs)
    sent = server.stats.requests
    second = make_client(server).run(reqs)  # a new client on the same file: persistence, not memory
    assert server.stats.requests == sent and second.n_sent == 0
    assert second.texts() == first.texts()
    assert all(r.cached and r.attempts == 0 for r in second.results)
    assert second.n_cached == 10 and second.usage["prompt_tokens"] == 0
    assert second.usage["cached_prompt_tokens"] == first.usage["prompt_tokens"]
    assert [r.raw for r in second.results] == [r.raw for r in first.results]


def test_failed_items_are_not_cached_and_are_asked_again(serve, make_client):
    broken = {"q2", "q3"}

    def responder(body):
        if body["messages"][0]["content"].split()[0] + body["messages"][0]["content"].split()[-1] in broken:
            raise HTTPFault(500, "boom", type="server_error")
        return default_responder(body)

    server = serve(responder)
    reqs = requests(6)
    client = make_client(server, max_retries=1)
    first = client.run(reqs)
    assert first.n_failed == 2 and len(client.cache) == 4
    broken.clear()
    before = dict(server.stats.per_key)
    second = make_client(server).run(reqs)
    assert second.n_ok == 6 and second.n_cached == 4 and second.n_sent == 2
    resent = {k for k, v in server.stats.per_key.items() if v != before.get(k, 0)}
    assert resent == {first.results[2].key, first.results[3].key}


def test_cache_key_follows_the_question_not_the_endpoint(serve, make_client, monkeypatch):
    msgs = [{"role": "user", "content": "rank these"}]
    base = request_key("gpt-4-0613", msgs, {"temperature": 0.0, "max_tokens": 2048})
    assert request_key("gpt-4", msgs, {"temperature": 0.0, "max_tokens": 2048}) != base
    assert request_key("gpt-4-0613", [{"role": "user", "content": "rank those"}],
                       {"temperature": 0.0, "max_tokens": 2048}) != base
    assert request_key("gpt-4-0613", msgs, {"temperature": 0.7, "max_tokens": 2048}) != base
    assert request_key("gpt-4-0613", msgs, {"temperature": 0.0, "max_tokens": 2048, "seed": 1}) != base
    assert request_key("gpt-4-0613", msgs, {"max_tokens": 2048, "temperature": 0.0}) == base  # order-free

    # Through the wire: another endpoint and another key find the same answers.
    first, second = serve(), serve()
    reqs = requests(4)
    make_client(first).run(reqs)
    report = make_client(second, api_key="sk-a-different-key").run(reqs)
    assert report.n_cached == 4 and second.stats.requests == 0
    # Changing a sampling parameter or the model is a new question.
    assert make_client(second, temperature=0.5).run(reqs).n_sent == 4
    assert make_client(second, model="other-judge").run(reqs).n_sent == 4
    reqs_seeded = [JudgeRequest(r.id, r.messages, {"seed": 3}) for r in reqs]
    assert make_client(second).run(reqs_seeded).n_sent == 4


def test_duplicate_requests_in_a_run_are_sent_once(serve, make_client):
    server = serve()
    msgs = [{"role": "user", "content": "same question"}]
    report = make_client(server).run([JudgeRequest(i, msgs) for i in ("a", "b", "c")])
    assert server.stats.requests == 1 and report.n_sent == 1
    assert len({r.text for r in report.results}) == 1 and [r.attempts for r in report.results] == [1, 0, 0]
    assert report.usage["prompt_tokens"] == 2  # paid once
    with pytest.raises(ValueError, match="unique"):
        make_client(server).run([JudgeRequest("a", msgs), JudgeRequest("a", msgs)])


def test_concurrency_limit_is_what_the_server_sees(serve, make_client):
    server = serve(latency_s=0.2)
    client = make_client(server, max_concurrency=5)
    start = time.perf_counter()
    report = client.run(requests(20))
    elapsed = time.perf_counter() - start
    assert report.n_ok == 20
    assert server.stats.max_in_flight == 5
    assert 0.78 <= elapsed < 1.5  # 4 waves of 0.2 s


def test_usage_and_cost_by_hand(serve, make_client):
    server = serve(lambda body: "B A C D")  # 4 completion tokens
    reqs = [JudgeRequest(f"p{i}", [{"role": "system", "content": "rank the answers"},
                                   {"role": "user", "content": f"prompt {i} with seven words here"}])
            for i in range(3)]  # 3 + 6 = 9 prompt tokens each
    report = make_client(server, model="gpt-4-0613").run(reqs)
    assert report.usage["prompt_tokens"] == 27 and report.usage["completion_tokens"] == 12
    assert report.cost_usd == pytest.approx((27 * 30 + 12 * 60) / 1e6)
    assert report.notes == []

    again = make_client(server, model="gpt-4-0613").run(reqs)
    assert again.cost_usd == 0 and again.usage["cached_completion_tokens"] == 12

    priced = make_client(server, "other.sqlite", config=JudgeConfig(model="gpt-4-0613", prices={"gpt-4-0613": [1, 2]}))
    assert priced.run(reqs).cost_usd == pytest.approx((27 * 1 + 12 * 2) / 1e6)

    unknown = make_client(server, "unknown.sqlite").run(reqs)  # tiny-judge: not in the table
    assert unknown.cost_usd is None and "no price" in unknown.notes[0]
    assert "cost unknown" in unknown.format_text()
    local = make_client(server, "local.sqlite", prices={"tiny-judge": [0, 0]}).run(reqs)
    assert local.cost_usd == 0


def test_estimate_cost_table():
    assert estimate_cost("gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)
    assert estimate_cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)  # dated snapshot
    assert estimate_cost("gpt-4o-mini", 2_000_000, 1_000_000) == pytest.approx(0.9)
    assert estimate_cost("gpt-4-32k", 10, 10) is None  # not guessed from "gpt-4"
    assert estimate_cost("my-llama", 10, 10, prices={"my-llama": [0, 0]}) == 0


def test_sampling_params_and_logprobs_reach_the_server(serve, make_client):
    seen = []

    def responder(body):
        seen.append(body)
        return {"text": "A > B", "logprobs": {"content": [{"token": "A", "logprob": -0.1, "bytes": [65],
                                                           "top_logprobs": [{"token": "A", "logprob": -0.1}]}]}}

    server = serve(responder)
    client = make_client(server, max_tokens=64)
    req = JudgeRequest("x", [{"role": "user", "content": "hi"}], {"logprobs": True, "top_logprobs": 1, "seed": 7})
    (result,) = client.run([req]).results
    body = seen[0]
    assert {k: body[k] for k in ("temperature", "max_tokens", "logprobs", "top_logprobs", "seed")} == \
        {"temperature": 0.0, "max_tokens": 64, "logprobs": True, "top_logprobs": 1, "seed": 7}
    assert result.raw["logprobs"]["content"][0]["logprob"] == -0.1
    again = make_client(server, max_tokens=64).run([req]).results[0]
    assert again.cached and again.raw["logprobs"] == result.raw["logprobs"]  # stored for AlpacaEval


def test_run_works_inside_a_running_event_loop(serve, make_client):
    server = serve()
    client = make_client(server)
    reqs = requests(3)

    async def notebook_cell():
        sync_report = client.run(reqs)  # what a Jupyter user would type
        async_report = await client.arun(requests(2, "z"))
        return sync_report, async_report

    sync_report, async_report = asyncio.run(notebook_cell())
    assert sync_report.n_ok == 3 and async_report.n_ok == 2


def test_complete_is_one_cached_blocking_call(serve, make_client):
    server = serve(faults=FaultConfig(rate_500=1.0, max_faults_per_key=1))
    client = make_client(server)
    msgs = [{"role": "user", "content": "one question"}]
    result = client.complete(msgs, seed=1)
    assert result.ok and result.attempts == 2 and result.text == default_responder({"messages": msgs})
    assert client.complete(msgs, seed=1).cached and server.stats.requests == 2


def test_api_key_goes_over_http_and_nowhere_else(serve, make_client, tmp_path):
    lines = []
    server = serve(latency_s=0.01, faults=FaultConfig(rate_500=0.3, rate_malformed_answer=0.2))
    client = make_client(server, validate=must_start_with_answer)
    client.log = lines.append
    report = client.run(requests(20))
    assert report.n_ok == 20 and lines
    assert server.stats.authorizations == {f"Bearer {KEY}": report.n_sent}

    # A server that rejects the key and echoes it back in its error text.
    strict = serve(api_keys={"sk-the-right-one"})
    denied = make_client(strict, "denied.sqlite")
    denied.log = lines.append
    denied_report = denied.run(requests(2))
    assert denied_report.failures == {"auth_error": 2}
    assert any("rejected the API key" in line for line in lines)

    texts = [*lines, json.dumps(report.to_dict()), json.dumps(denied_report.to_dict()),
             repr(client), repr(denied), repr(client.config), str(vars(client))]
    for text in texts:
        assert KEY not in text
    cache_files = [p for p in tmp_path.iterdir() if p.name.startswith("cache.sqlite")]
    assert any(p.name.endswith("-wal") for p in cache_files)  # checked while the WAL still exists
    for path in cache_files:
        assert KEY.encode() not in path.read_bytes()


def test_key_and_endpoint_resolution(serve, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("STARLING_JUDGE_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY") as info:
        JudgeClient(cache_path=tmp_path / "c.sqlite", progress=False)
    assert "api.openai.com" in str(info.value)

    server = serve()
    monkeypatch.setenv("STARLING_JUDGE_BASE_URL", server.base_url)
    with JudgeClient(cache_path=tmp_path / "c.sqlite", progress=False, log=lambda _: None) as local:
        assert local.base_url == server.base_url
        assert local.run(requests(1)).n_ok == 1
    assert server.stats.authorizations == {"Bearer sk-local": 1}  # placeholder for a local server

    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    with JudgeClient(cache_path=tmp_path / "c.sqlite", progress=False, log=lambda _: None,
                     api_key_env="MY_JUDGE_KEY") as keyed:
        keyed.run(requests(1, "k"))
    assert server.stats.authorizations[f"Bearer {KEY}"] == 1
    with pytest.raises(TypeError, match="max_concurency"):
        JudgeClient(cache_path=tmp_path / "c.sqlite", max_concurency=3)


def test_a_stricter_validator_reasks_cached_answers(serve, make_client):
    server = serve()
    reqs = requests(2)
    make_client(server).run(reqs)

    def reject_all(text):
        raise ValueError("nothing is good enough")

    report = make_client(server, validate=reject_all, max_retries=1).run(reqs)
    assert report.n_cached == 0 and report.failures == {"invalid_answer": 2}
    assert report.results[0].reason == "invalid_answer: nothing is good enough (gave up after 2 attempts)"
    assert report.usage["completion_tokens"] == 4  # rejected answers were still billed


def test_fake_server_speaks_enough_openai(serve):
    server = serve(model="tiny-judge")
    client = openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0)
    assert [m.id for m in client.models.list()] == ["tiny-judge"]
    completion = client.chat.completions.create(model="tiny-judge", n=2,
                                                messages=[{"role": "user", "content": "a b c"}])
    assert len(completion.choices) == 2 and completion.usage.prompt_tokens == 3
    assert completion.choices[0].message.content.startswith("answer:")
    client.close()


def test_cache_round_trip_and_reopen(tmp_path):
    path = tmp_path / "judge" / "cache.sqlite"
    msgs = [{"role": "user", "content": "q"}]
    key = request_key("m", msgs, {"temperature": 0.0})
    with JudgeCache(path) as cache:
        assert cache.get(key) is None and len(cache) == 0
        cache.put(key, model="m", messages=msgs, params={"temperature": 0.0}, text="B > A")
        cache.put(key, model="m", messages=msgs, params={"temperature": 0.0}, text="A > B",
                  raw={"message": {"content": "A > B"}}, usage={"prompt_tokens": 1, "completion_tokens": 3})
        assert len(cache) == 1  # one row per key: the later answer replaces the earlier
    with JudgeCache(path) as cache:
        answer = cache.get(key)
        assert answer.text == "A > B" and answer.raw == {"message": {"content": "A > B"}}
        assert answer.usage == {"prompt_tokens": 1, "completion_tokens": 3}
        assert cache.get_many([key, "0" * 64]).keys() == {key}
        assert cache.integrity_check() == "ok"
    with JudgeCache(":memory:") as scratch:
        scratch.put(key, model="m", messages=msgs, params={}, text="x")
        assert key in scratch
