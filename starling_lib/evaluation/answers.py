"""Answer generation for MT-Bench and AlpacaEval: any HF chat model or any OpenAI-compatible server.

What it is for: the first step of FastChat's ``gen_model_answer → gen_judgment → show_result``
and of AlpacaEval's ``outputs → annotations → leaderboard``. Two generators share one interface,
``generate(conversations, temperature) -> list[str | None]`` (``None``: the server gave up on it):

- :class:`HFChatGenerator`: a causal LM rendered with its tokenizer's chat template (the OpenChat /
  Starling template included), batched, left-padded, greedy at temperature 0 and sampled above;
- :class:`ServerChatGenerator`: any OpenAI-compatible server (vLLM, OpenAI, the fake server)
  through :class:`~starling_lib.judge.client.JudgeClient`, so generation has the same concurrency,
  retries and cache as judging.

:func:`generate_mt_bench_answers` runs MT-Bench's two turns (the second conditioned on the model's
own first answer) at FastChat's per-category temperatures and writes FastChat's layout,
``model_answer/<model_id>.jsonl`` with one ``{question_id, answer_id, model_id, choices: [{index,
turns}], tstamp}`` per question. :func:`generate_alpaca_outputs` writes AlpacaEval's
``[{instruction, output, generator, dataset}]``.

Resuming: questions are cut into batches by a fixed plan over the *whole* question list (grouped
by temperature, then in file order), each batch drawn from its own seed; a batch whose answers are
all on disk is skipped, a batch is written only when complete. So a killed run that is started
again gives the same answers as one that was never interrupted (exactly, for greedy decoding, and
for sampling on the same machine and library versions).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol

import torch

from starling_lib.progress import progress_bar
from starling_lib.rng import hash_seed

# FastChat llm_judge/common.py `temperature_config`; other categories get 0.7 (its default).
TEMPERATURE_BY_CATEGORY = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                           "reasoning": 0.0, "stem": 0.1, "humanities": 0.1, "arena-hard-200": 0.0}
DEFAULT_TEMPERATURE = 0.7


def category_temperature(category: str) -> float:
    return TEMPERATURE_BY_CATEGORY.get(category, DEFAULT_TEMPERATURE)


class ChatGenerator(Protocol):
    name: str

    def generate(self, conversations: list[list[dict]], temperature: float, seed: int = 0) -> list[str | None]:
        """One reply per conversation (a list of ``{"role", "content"}`` ending on a user turn)."""


class HFChatGenerator:
    """A Hugging Face causal LM with its chat template, batched on one device."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 1024, max_prompt_length: int = 2048,
                 dtype: torch.dtype | None = None, name: str = "hf"):
        from starling_lib.policy.pipeline import with_pad_token

        self.model, self.tokenizer = model.eval(), with_pad_token(tokenizer)
        self.max_new_tokens, self.max_prompt_length, self.dtype, self.name = max_new_tokens, max_prompt_length, dtype, name

    @torch.no_grad()
    def generate(self, conversations: list[list[dict]], temperature: float, seed: int = 0) -> list[str | None]:
        from starling_lib.policy.rollout import decode_responses, encode_prompts, sample_responses

        device = next(self.model.parameters()).device
        ids, mask, _ = encode_prompts(self.tokenizer, conversations, self.max_prompt_length)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            response, rmask = sample_responses(self.model, self.tokenizer, ids.to(device), mask.to(device),
                                               self.max_new_tokens, temperature=temperature, dtype=self.dtype)
        return [text.strip() for text in decode_responses(self.tokenizer, response.cpu(), rmask.cpu())]


class ServerChatGenerator:
    """Any OpenAI-compatible chat server, through a :class:`~starling_lib.judge.client.JudgeClient`
    whose ``config.model`` is the model that answers (cached, retried, concurrent).

    The server decides how it honours ``temperature``: ``transformers serve`` (5.23) samples only when
    the model's ``generation_config.json`` asks for sampling, and otherwise answers greedily at every
    temperature (tests/test_transformers_serve.py)."""

    def __init__(self, client, *, max_tokens: int = 1024, name: str | None = None):
        self.client, self.max_tokens = client, max_tokens
        self.name = name or client.config.model
        self.last_report = None

    def generate(self, conversations: list[list[dict]], temperature: float, seed: int = 0) -> list[str | None]:
        from starling_lib.judge.records import JudgeRequest

        # The seed goes into the request: servers that honour it sample reproducibly, and two turns
        # with the same text but different plans are not confused in the cache.
        requests = [JudgeRequest(f"c{i}", conv, {"temperature": temperature, "max_tokens": self.max_tokens,
                                                  "seed": seed})
                    for i, conv in enumerate(conversations)]
        self.last_report = self.client.run(requests, desc=f"generate {self.name}")
        # Stripped like HFChatGenerator's replies (and FastChat's gen_model_answer outputs): a served
        # model then writes the answers it writes locally, and its second turn sees the same first
        # answer (transformers serve returns the decoded text as is, often with a leading newline).
        return [r.text.strip() if r.ok else None for r in self.last_report.results]


# ---------------------------------------------------------------------------------------------- plan

def batch_plan(items: list, key: Callable, batch_size: int) -> list[list]:
    """Batches of ``items`` with equal ``key(item)`` (the temperature), in first-seen key order and
    file order within a key. Fixed by the whole list, so a resumed run cuts the same batches."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def batch_seed(seed: int, ids: Iterable) -> int:
    """The sampling seed of one batch: 4 bytes of ``sha256("<seed>:<id>,<id>,...")`` (the layout the
    committed demo answers were drawn with)."""
    return hash_seed(seed, ",".join(map(str, ids)), sep=":", nbytes=4)


def _answer_id(model_id: str, question_id, turns: list[str]) -> str:
    return hashlib.sha256(json.dumps([model_id, question_id, turns]).encode()).hexdigest()[:22]


def _append_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_answer_ids(path: Path) -> set:
    """Question ids already answered in a FastChat answer file (a torn last line is ignored)."""
    done = set()
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            done.add(json.loads(line)["question_id"])
        except (ValueError, KeyError, TypeError):
            continue  # an interrupted write: that batch is redone
    return done


@dataclass
class GenerationReport:
    """What one generation call did."""

    path: str
    n_items: int
    n_generated: int
    n_skipped: int
    """Already on disk (a resumed run)."""
    n_failed: int
    """Replies a server gave up on (written as ``None``-free ``"$ERROR$"``, FastChat's marker)."""
    failed_ids: list
    elapsed_s: float


ERROR_ANSWER = "$ERROR$"  # FastChat's marker for an API failure


def generate_mt_bench_answers(questions: list, generator: ChatGenerator, model_id: str, answer_dir: str | Path, *,
                              batch_size: int = 16, seed: int = 0, turns: int | None = None,
                              progress: Callable[[str], None] | None = None,
                              show_bar: bool | None = None) -> GenerationReport:
    """Answer every question's turns, each later turn after the model's own earlier answers.

    ``questions``: objects or dicts with ``question_id``, ``category``, ``turns``. Writes
    ``<answer_dir>/<model_id>.jsonl`` (FastChat's ``model_answer`` folder), resuming from it.
    ``progress`` gets a line per batch; ``show_bar`` a progress bar over questions (``None``:
    :func:`starling_lib.progress.progress_enabled`).
    """
    start = time.perf_counter()
    rows = [q if isinstance(q, dict) else q.__dict__ for q in questions]
    path = Path(answer_dir) / f"{model_id}.jsonl"
    done = read_answer_ids(path)
    n_generated = n_failed = 0
    failed_ids = []
    plan = batch_plan(rows, lambda q: category_temperature(q["category"]), batch_size)
    bar = progress_bar(total=len(rows), desc=f"{model_id} answers", unit="q", progress=show_bar)
    for b, batch in enumerate(plan):
        if all(q["question_id"] in done for q in batch):
            bar.update(len(batch))
            continue
        temperature = category_temperature(batch[0]["category"])
        n_turns = turns or max(len(q["turns"]) for q in batch)
        conversations = [[] for _ in batch]
        answers: list[list[str]] = [[] for _ in batch]
        for t in range(n_turns):
            live = [i for i, q in enumerate(batch) if t < len(q["turns"])]
            for i in live:
                conversations[i].append({"role": "user", "content": batch[i]["turns"][t]})
            replies = generator.generate([conversations[i] for i in live], temperature,
                                         seed=batch_seed(seed, [q["question_id"] for q in batch] + [t]))
            for i, reply in zip(live, replies):
                if reply is None:
                    reply = ERROR_ANSWER
                    failed_ids.append(batch[i]["question_id"])
                    n_failed += 1
                answers[i].append(reply)
                conversations[i].append({"role": "assistant", "content": reply})
        records = [{"question_id": q["question_id"], "answer_id": _answer_id(model_id, q["question_id"], a),
                    "model_id": model_id, "choices": [{"index": 0, "turns": a}], "tstamp": time.time()}
                   for q, a in zip(batch, answers) if q["question_id"] not in done]
        _append_jsonl(path, records)
        n_generated += len(records)
        bar.update(len(batch))
        if progress:
            progress(f"{model_id}: batch {b + 1}/{len(plan)} ({len(records)} questions, T={temperature:g})")
    bar.close()
    return GenerationReport(str(path), len(rows), n_generated, len(rows) - n_generated, n_failed,
                            sorted(set(failed_ids)), round(time.perf_counter() - start, 3))


def generate_alpaca_outputs(instructions: list[dict], generator: ChatGenerator, generator_name: str,
                            path: str | Path, *, batch_size: int = 16, seed: int = 0, temperature: float = 0.0,
                            show_bar: bool | None = None) -> tuple[list[dict], GenerationReport]:
    """AlpacaEval outputs ``[{instruction, output, generator, dataset}]`` for ``instructions`` (dicts
    with ``instruction`` and optional ``dataset``), written to ``path`` (JSON). While it runs, finished
    batches sit in ``<path>.partial.jsonl``; a restarted run continues from there. ``show_bar``: a
    progress bar over instructions (``None``: :func:`starling_lib.progress.progress_enabled`)."""
    start = time.perf_counter()
    path = Path(path)
    partial = path.with_name(path.name + ".partial.jsonl")
    rows = [{"instruction": r["instruction"], "dataset": r.get("dataset", "")} for r in instructions]
    seen = {}
    if path.exists():  # a finished run: keep its outputs, answer only new instructions
        try:
            seen = {r["instruction"]: r for r in json.loads(path.read_text(encoding="utf-8"))
                    if r.get("generator") == generator_name}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{path}: exists but is not an AlpacaEval outputs file ({exc}); move it away "
                             f"or choose another path") from None
    for line in (partial.read_text(encoding="utf-8").splitlines() if partial.exists() else []):
        try:
            record = json.loads(line)
            seen[record["instruction"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    n_generated = n_failed = 0
    failed = []
    bar = progress_bar(total=len(rows), desc=f"{generator_name} outputs", unit="instr", progress=show_bar)
    for batch in batch_plan(rows, lambda r: temperature, batch_size):
        if all(r["instruction"] in seen for r in batch):
            bar.update(len(batch))
            continue
        replies = generator.generate([[{"role": "user", "content": r["instruction"]}] for r in batch], temperature,
                                     seed=batch_seed(seed, [r["instruction"] for r in batch]))
        records = []
        for r, reply in zip(batch, replies):
            if reply is None:
                n_failed += 1
                failed.append(r["instruction"])
                reply = ERROR_ANSWER
            records.append({"instruction": r["instruction"], "output": reply, "generator": generator_name,
                            "dataset": r["dataset"]})
        _append_jsonl(partial, records)
        seen.update({rec["instruction"]: rec for rec in records})
        n_generated += len(records)
        bar.update(len(batch))
    bar.close()
    outputs = [seen[r["instruction"]] for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(outputs, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    partial.unlink(missing_ok=True)
    report = GenerationReport(str(path), len(rows), n_generated, len(rows) - n_generated, n_failed, failed,
                              round(time.perf_counter() - start, 3))
    return outputs, report
