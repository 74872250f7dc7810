"""A real third-party OpenAI-compatible server: ``transformers serve`` (``transformers[serving]``, a
dev dependency) serving the tiny saved policy on 127.0.0.1, offline, with ``starling mt-bench``
run against it end to end.

- ``mt-bench generate --base-url`` writes the answers the local path (``--model``) writes, exactly,
  for greedy decoding. The prompt is the same token for token (both render the tokenizer's chat
  template, bos once); what else must agree, and how it is made to:
  the arithmetic: the server computes on the CPU in the weights' dtype (fp32), so the local run
  asks ``runtime.device=cpu`` and ``runtime.dtype=fp32`` (``auto`` autocasts to bf16 on CPUs with
  bf16, which changed 2 of 16 answers here); one prompt per forward: the server answers one
  request at a time, unpadded, so the local run uses ``--batch-size 1`` (left padding changes a
  batch's arithmetic; the padded default agreed here too, but nothing guarantees it); the text:
  the server returns the decoded reply as is, often with a leading newline, which both generators
  now strip.
  Only temperature-0 categories are compared: above 0 the local path samples, while this server
  decodes greedily for a model whose ``generation_config.json`` does not ask for sampling (ours
  does not; it only turns sampling *off* at temperature 0), which the last test pins.
- A judge whose context cannot hold the run (this policy's 256 positions against FastChat's judge
  prompts and ``max_tokens`` 2048) fails at once, naming the setting, instead of generating for
  minutes per judgment: the server sends no ``/v1/models`` context, so the window is read from the
  served folder's ``config.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fake_server import free_port
from starling_lib import cli
from starling_lib.evaluation.answers import category_temperature
from starling_lib.evaluation.mt_bench import DEMO_DIR, load_bench

try:
    from transformers.utils.import_utils import is_serve_available
except ImportError:  # an older transformers without the serve command
    def is_serve_available() -> bool:
        return False

pytestmark = pytest.mark.skipif(
    not is_serve_available(),
    reason="transformers[serving] is not installed (fastapi, uvicorn): `make install`, or "
           "pip install -c constraints.txt -e '.[dev]'")

READY_TIMEOUT_S = 90.0  # loading torch + transformers on a busy 2-core machine takes ~8 s
N_QUESTIONS = 4
MAX_NEW_TOKENS = 16
CHAT_REQUEST = '"POST /v1/chat/completions HTTP/1.1"'


class ServedModel:
    """A ``transformers serve`` subprocess; its log is kept for failure messages."""

    def __init__(self, model_dir, workdir):
        self.model = str(model_dir)
        self.port = free_port()
        self.log_path = workdir / "transformers-serve.log"
        hub = workdir / "hf_home" / "hub"
        hub.mkdir(parents=True)  # an empty hub cache: GET /v1/models lists nothing instead of failing
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(hub.parent),
               "HF_HUB_DISABLE_UPDATE_CHECK": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        command = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
                   "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu", "--dtype", "float32"]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=workdir)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def chat_requests(self) -> int:
        return self.log().count(CHAT_REQUEST)

    def wait_ready(self, timeout_s: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"transformers serve not ready after {timeout_s:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def served(tiny_policy_dir, tmp_path_factory):
    """The tiny policy behind ``transformers serve``, stopped (and waited for) after the module."""
    for attempt in range(3):  # the free port can be taken between our probe and the server's bind
        server = ServedModel(tiny_policy_dir, tmp_path_factory.mktemp("transformers_serve"))
        try:
            server.wait_ready(READY_TIMEOUT_S)
            break
        except BaseException as exc:
            server.stop()
            if attempt == 2 or not isinstance(exc, RuntimeError) or "address already in use" not in server.log():
                raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    for name in ("OPENAI_API_KEY", "STARLING_JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def greedy_questions(tmp_path):
    """The first demo questions of the temperature-0 categories, as a FastChat question file (with the
    demo's judge prompts next to it)."""
    rows = [q for q in load_bench(None).questions if category_temperature(q.category) == 0][:N_QUESTIONS]
    assert len(rows) == N_QUESTIONS
    path = tmp_path / "question.jsonl"
    path.write_text("".join(json.dumps({"question_id": q.question_id, "category": q.category, "turns": q.turns})
                            + "\n" for q in rows))
    shutil.copy(DEMO_DIR / "judge_prompts.jsonl", tmp_path / "judge_prompts.jsonl")
    return path


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _answers(path):
    return {r["question_id"]: r["choices"][0]["turns"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_served_answers_equal_the_local_greedy_answers(capsys, served, greedy_questions, tmp_path):
    common = ("mt-bench", "generate", "--model-id", "tiny", "--questions", greedy_questions, "--preset", "smoke",
              "--max-new-tokens", MAX_NEW_TOKENS, "--json")
    before = served.chat_requests()
    code, out, err = run_cli(capsys, *common, "--base-url", served.base_url, "--served-model", served.model,
                             "--out", tmp_path / "served")
    assert code == 0, f"{err}\n--- server log ---\n{served.log()[-4000:]}"
    report = json.loads(out)
    assert report["n_generated"] == N_QUESTIONS and report["n_failed"] == 0, err
    # Two turns per question, and one context probe per turn (the folder's 256 positions are known).
    assert served.chat_requests() - before == 2 * N_QUESTIONS + 2, served.log()[-4000:]
    assert "context 256 tokens (max_position_embeddings in" in err

    code, out, err = run_cli(capsys, *common, "--model", served.model, "--set", "runtime.dtype=fp32",
                             "--set", "runtime.device=cpu", "--batch-size", 1, "--out", tmp_path / "local")
    assert code == 0, err
    served_answers = _answers(tmp_path / "served" / "model_answer" / "tiny.jsonl")
    local_answers = _answers(tmp_path / "local" / "model_answer" / "tiny.jsonl")
    assert sorted(served_answers) == sorted(local_answers) and len(served_answers) == N_QUESTIONS
    assert all(len(turns) == 2 and all(turns) for turns in served_answers.values())
    assert served_answers == local_answers


def _write_answers(greedy_questions, answer_dir):
    answer_dir.mkdir(parents=True)
    rows = [json.loads(line) for line in greedy_questions.read_text().splitlines()]
    (answer_dir / "tiny.jsonl").write_text("".join(
        json.dumps({"question_id": r["question_id"], "answer_id": f"a{r['question_id']}", "model_id": "tiny",
                    "choices": [{"index": 0, "turns": [f"Answer {t} to question {r['question_id']}." for t in (1, 2)]}],
                    "tstamp": 0.0}) + "\n" for r in rows))


def test_a_judge_with_a_short_context_fails_at_once_naming_the_setting(capsys, served, greedy_questions, tmp_path):
    answers = tmp_path / "model_answer"
    _write_answers(greedy_questions, answers)
    judge = ("mt-bench", "judge", "--model-id", "tiny", "--questions", greedy_questions, "--answers", answers,
             "--out", tmp_path / "bench", "--preset", "smoke", "--base-url", served.base_url,
             "--judge-model", served.model, "--json")

    # FastChat's max_tokens 2048 cannot fit 256 positions: refused before anything is sent.
    before, start = served.chat_requests(), time.monotonic()
    code, out, err = run_cli(capsys, *judge)
    assert code == 1 and out == "" and "Traceback" not in err
    assert "max_tokens 2048 (judge.max_tokens) leaves no room for a prompt in its context of 256 tokens" in err
    assert f"max_position_embeddings in {served.model}/config.json" in err
    assert served.chat_requests() == before and time.monotonic() - start < 30

    # A max_tokens that fits: the longest judge prompt alone is longer than 256 tokens, as the server
    # counts it; one probe request (max_tokens=1) and no judgment.
    start = time.monotonic()
    code, out, err = run_cli(capsys, *judge, "--set", "judge.max_tokens=16")
    assert code == 1 and "Traceback" not in err
    assert "tokens as the server counts them, more than its context of 256 tokens" in err
    assert "use a model with a longer context" in err
    assert int(re.search(r"is (\d+) tokens as the server counts them", err).group(1)) > 256
    assert served.chat_requests() == before + 1 and time.monotonic() - start < 30


def test_the_server_decodes_greedily_at_any_temperature_for_this_model(served):
    """Why sampled categories are not compared: transformers serve sets ``do_sample`` only to turn
    sampling off (temperature 0), so a model whose generation config does not sample answers
    greedily at FastChat's 0.7 too, whatever the seed; the local path samples there."""
    def ask(temperature, seed):
        body = {"model": served.model, "messages": [{"role": "user", "content": "Tell me about rain."}],
                "temperature": temperature, "max_tokens": 8, "seed": seed}
        request = urllib.request.Request(f"{served.base_url}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"]

    assert not json.loads((Path(served.model) / "generation_config.json").read_text()).get("do_sample")
    greedy = ask(0, 0)
    assert greedy and ask(0.7, 1) == ask(0.7, 2) == ask(1.0, 3) == greedy
