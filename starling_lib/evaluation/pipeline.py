"""Whole benchmark steps from a preset: what ``starling mt-bench`` and ``starling alpaca-eval`` call.

Each function takes the preset and the command's options (``None`` = the preset's value), does
one step end to end and returns a JSON-ready report, so the CLI only parses arguments and prints:

- :func:`mt_bench_generate`: load the bench, answer its two turns with a saved / hub model or a
  model behind an OpenAI-compatible server, in FastChat's ``model_answer/`` layout;
- :func:`mt_bench_judge`: grade those answers (single) or compare two models (pairwise) with the
  judge of :func:`~starling_lib.judge.endpoint.open_judge` (real, or simulated with
  :class:`~starling_lib.evaluation.simulated.SimulatedMTBenchJudge`), merge the rows into the
  judgments file and score them;
- :func:`alpaca_eval_judge`: annotate model outputs against reference outputs and score them.

Scoring a file alone is :func:`~starling_lib.evaluation.mt_bench.score.score_judgments` and
:func:`~starling_lib.evaluation.alpaca_eval.score.score_annotation_file`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable

from starling_lib.config import Preset
from starling_lib.evaluation import alpaca_eval, mt_bench
from starling_lib.evaluation.answers import HFChatGenerator, ServerChatGenerator, generate_mt_bench_answers
from starling_lib.evaluation.simulated import SimulatedAlpacaJudge, SimulatedMTBenchJudge
from starling_lib.judge.endpoint import default_cache_path, open_judge
from starling_lib.paths import runs_dir
from starling_lib.policy.pipeline import load_policy
from starling_lib.precision import resolve_device, runtime_dtype

Log = Callable[[str], None]


def _quiet(line: str) -> None:
    pass


def judge_client(preset: Preset, *, model: str, bench: str, simulated: Callable[[dict], object] | None = None,
                 base_url: str | None = None, cache: str | Path | None = None, max_retries: int | None = None,
                 progress: bool | None = None, log: Log | None = None):
    """:func:`open_judge` for ``preset.judge`` with the CLI's defaults: the answer cache under
    ``runs/judge/`` (its own file when simulated), ``model`` and ``max_retries`` overrides."""
    overrides = {"model": model} | ({"max_retries": max_retries} if max_retries is not None else {})
    return open_judge(preset.judge, simulated=simulated, base_url=base_url,
                      cache_path=Path(cache) if cache else default_cache_path(bench, simulated=simulated is not None),
                      progress=progress, log=log, **overrides)


def _bench_out(out: str | Path | None, bench: mt_bench.Bench) -> Path:
    return Path(out) if out else runs_dir() / "mt_bench" / bench.name


def _limit(limit: int | None, preset: Preset) -> int | None:
    return limit if limit is not None else preset.eval.mt_bench_questions


def _hf_generator(preset: Preset, model: str, model_id: str, max_new_tokens: int) -> HFChatGenerator:
    """A chat generator for a saved model folder (or run folder), else a hub id."""
    if Path(model).exists():
        policy, tokenizer = load_policy(preset, model)
    else:  # a hub id
        preset = dataclasses.replace(preset, policy_model=dataclasses.replace(preset.policy_model, name_or_path=model))
        try:
            policy, tokenizer = load_policy(preset)
        except OSError as exc:  # transformers' "not a folder, not on the hub (or offline)"
            raise FileNotFoundError(f"{model}: not a model folder, and not loadable as a hub id "
                                    f"({str(exc).splitlines()[0]})") from None
    return HFChatGenerator(policy.to(resolve_device(preset.runtime)), tokenizer, max_new_tokens=max_new_tokens,
                           dtype=runtime_dtype(preset.runtime), name=model_id)


def mt_bench_generate(preset: Preset, model_id: str, *, model: str | None = None, base_url: str | None = None,
                      served_model: str | None = None, questions: str | Path | None = None,
                      out: str | Path | None = None, max_new_tokens: int | None = None, batch_size: int | None = None,
                      limit: int | None = None, cache: str | Path | None = None, max_retries: int | None = None,
                      quiet: bool = False, log: Log = _quiet) -> dict:
    """Answers of ``model`` (a folder or hub id) or of the server at ``base_url`` to the bench's
    questions, under ``<out>/model_answer/<model_id>.jsonl``; the generation report as a dict."""
    if (model is None) == (base_url is None):
        raise ValueError("answer with a model (model=) or a server (base_url=), exactly one")
    bench = mt_bench.load_bench(questions, bench_dir=preset.eval.mt_bench_dir, limit=_limit(limit, preset))
    answer_dir = _bench_out(out, bench) / "model_answer"
    max_new_tokens = max_new_tokens or preset.eval.max_new_tokens
    log(f"mt-bench generate: {len(bench.questions)} questions from {bench.question_file}, model {model_id} "
        f"({model or base_url}), out {answer_dir}")
    with contextlib.ExitStack() as stack:
        if model:
            generator = _hf_generator(preset, model, model_id, max_new_tokens)
        else:
            client = stack.enter_context(judge_client(preset, model=served_model or model_id, bench=f"{bench.name}-generate",
                                                      base_url=base_url, cache=cache, max_retries=max_retries,
                                                      progress=False if quiet else None, log=log))
            generator = ServerChatGenerator(client, max_tokens=max_new_tokens, name=model_id)
        report = generate_mt_bench_answers(bench.questions, generator, model_id, answer_dir,
                                           batch_size=batch_size or preset.eval.batch_size, seed=preset.runtime.seed,
                                           progress=None if quiet else log, show_bar=False if quiet else None)
    return dataclasses.asdict(report)


def mt_bench_judge(preset: Preset, model_ids: list[str], *, mode: str = "single", questions: str | Path | None = None,
                   answers: str | Path | None = None, references: str | Path | None = None,
                   out: str | Path | None = None, limit: int | None = None, judge_model: str | None = None,
                   simulated: bool = False, base_url: str | None = None, cache: str | Path | None = None,
                   max_retries: int | None = None, quiet: bool = False, log: Log = _quiet) -> dict:
    """Judge ``model_ids``' answers (``single``: each rated 1-10; ``pairwise``: exactly two models,
    both orders), write ``<out>/model_judgment/<judge>_single|pair.jsonl`` (rows of other models or
    pairs already there are kept) and score this run's rows: ``{judgments, n_judgments,
    n_kept_from_file, report, scores}``."""
    if mode not in ("single", "pairwise"):
        raise ValueError(f"mode must be 'single' or 'pairwise', got {mode!r}")
    if mode == "pairwise" and len(model_ids) != 2:
        raise ValueError(f"--mode pairwise compares exactly two models; got --model-id {' '.join(model_ids)}")
    bench = mt_bench.load_bench(questions, bench_dir=preset.eval.mt_bench_dir, limit=_limit(limit, preset))
    judge_prompts = bench.judge_prompts()
    out = _bench_out(out, bench)
    answers_path = Path(answers) if answers else out / "model_answer"
    if not answers_path.exists():
        raise FileNotFoundError(f"{answers_path}: no model answers here (run `starling mt-bench generate` first, "
                                "or pass --answers)")
    loaded = mt_bench.load_model_answers(answers_path)
    missing = [m for m in model_ids if m not in loaded]
    if missing:
        raise ValueError(f"{answers_path}: no answers for {missing} (have {sorted(loaded)})")
    reference_rows, references_path = bench.references(references)
    judge_model = judge_model or preset.judge.model
    safe_name = judge_model.replace("/", "_").replace("\\", "_")
    path = out / "model_judgment" / f"{safe_name}_{'single' if mode == 'single' else 'pair'}.jsonl"
    log(f"mt-bench judge: {mode}, {len(bench.questions)} questions from {bench.question_file}, models "
        f"{', '.join(model_ids)}, judge {judge_model}{' (simulated)' if simulated else ''}, "
        f"references {references_path or 'none'}")
    with judge_client(preset, model=judge_model, bench=bench.name,
                      simulated=SimulatedMTBenchJudge().respond if simulated else None, base_url=base_url,
                      cache=cache, max_retries=max_retries, progress=False if quiet else None, log=log) as client:
        if mode == "single":
            rows, report = mt_bench.judge_single(bench.questions, loaded, judge_prompts, client,
                                                 references=reference_rows, model_ids=model_ids)
            scores = mt_bench.score_single(rows)
        else:
            rows, report = mt_bench.judge_pairwise(bench.questions, loaded, judge_prompts, client, *model_ids,
                                                   references=reference_rows)
            scores = mt_bench.pairwise_rates(rows)
    all_rows, n_kept = mt_bench.merge_judgments(path, rows, mode, model_ids)
    mt_bench.write_judgments(path, all_rows)
    return {"judgments": str(path), "n_judgments": len(rows), "n_kept_from_file": n_kept, "report": report,
            "scores": scores}


def alpaca_eval_judge(preset: Preset, outputs: str | Path, reference: str | Path, *, style: str | None = None,
                      seed: int = 0, out: str | Path | None = None, judge_model: str | None = None,
                      simulated: bool = False, base_url: str | None = None, cache: str | Path | None = None,
                      max_retries: int | None = None, quiet: bool = False, log: Log = _quiet) -> dict:
    """Annotate ``outputs`` against ``reference`` (``style``: ``weighted`` or ``ranking``, default the
    preset's), write the annotations (default ``<outputs stem>_annotations.json``) and score them:
    ``{annotations, **judge report, scores}`` (``scores`` ``None`` when nothing was annotated)."""
    outputs = Path(outputs)
    model_outputs, reference_outputs = alpaca_eval.load_outputs(outputs), alpaca_eval.load_outputs(reference)
    style = style or preset.eval.alpaca_style
    judge_model = judge_model or preset.eval.alpaca_judge_model or preset.judge.model
    out = Path(out) if out else outputs.with_name(f"{outputs.stem}_annotations.json")
    log(f"alpaca-eval judge: {len(model_outputs)} outputs vs {len(reference_outputs)} references, style {style}, "
        f"judge {judge_model}{' (simulated)' if simulated else ''}, out {out}")
    with judge_client(preset, model=judge_model, bench="alpaca_eval",
                      simulated=SimulatedAlpacaJudge().respond if simulated else None, base_url=base_url,
                      cache=cache, max_retries=max_retries, progress=False if quiet else None, log=log) as client:
        annotations, report = alpaca_eval.judge_outputs(model_outputs, reference_outputs, client, style=style,
                                                        seed=seed)
    alpaca_eval.write_annotations(out, annotations)
    return {"annotations": str(out), **report,
            "scores": alpaca_eval.score_annotations(annotations) if annotations else None}
