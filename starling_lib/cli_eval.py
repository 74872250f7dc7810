"""``starling mt-bench`` and ``starling alpaca-eval``: thin wrappers over :mod:`starling_lib.evaluation`.

    starling mt-bench generate --model-id ID (--model PATH | --base-url URL [--served-model NAME])
    starling mt-bench judge --model-id ID [ID ...] [--mode single|pairwise] [--simulated]
    starling mt-bench score JUDGMENTS.jsonl [--json]
    starling alpaca-eval judge OUTPUTS.json --reference REFERENCE.json [--style weighted|ranking] [--simulated]
    starling alpaca-eval score ANNOTATIONS.json [--instruction-difficulty CSV] [--json]

Judge commands talk to any OpenAI-compatible endpoint (``--base-url``, else ``$STARLING_JUDGE_BASE_URL`` /
``$OPENAI_BASE_URL`` / the preset, else OpenAI); the API key is read from the environment only
(``$OPENAI_API_KEY``, ``judge.api_key_env``). ``--simulated`` starts an in-process fake server whose
judge is the benchmark's simulated one (tiny-world gold reward): offline, for demos and tests; its
answers go to their own cache so they are never mistaken for a real judge's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from pathlib import Path

EXIT_OK = 0


# ---------------------------------------------------------------------------------------- helpers

def _clean(value):
    """NaN / inf as ``null``, so ``--json`` output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _print_json(payload) -> None:
    from .cli import _print_json as print_json

    print_json(_clean(payload))


def _fmt(value, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _preset(args):
    from .config import get_preset

    return get_preset(args.preset, args.set)


def _safe_name(name: str) -> str:
    return name.replace("/", "_").replace("\\", "_")


@contextlib.contextmanager
def _judge_client(args, preset, *, model: str, bench: str, responder_factory=None):
    """A :class:`JudgeClient` per the judge flags; with ``--simulated``, behind a fake server that
    runs for the duration of the block."""
    from .judge.client import JudgeClient
    from .judge.fake_server import FakeOpenAIServer
    from .paths import runs_dir

    simulated = getattr(args, "simulated", False)
    overrides = {"model": model}
    if getattr(args, "max_retries", None) is not None:
        overrides["max_retries"] = args.max_retries
    default_cache = runs_dir() / "judge" / f"{bench}{'-simulated' if simulated else ''}-cache.sqlite"
    cache = Path(args.cache) if getattr(args, "cache", None) else default_cache
    with contextlib.ExitStack() as stack:
        if simulated:
            server = stack.enter_context(FakeOpenAIServer(responder_factory()))
            # A placeholder key: the user's real key is never sent to the local fake server.
            client = JudgeClient(preset.judge, api_key="sk-simulated", base_url=server.base_url, cache_path=cache,
                                 progress=not args.json, log=_stderr, **overrides)
        else:
            client = JudgeClient(preset.judge, base_url=getattr(args, "base_url", None), cache_path=cache,
                                 progress=not args.json, log=_stderr, **overrides)
        stack.callback(client.close)
        yield client


# ---------------------------------------------------------------------------------------- MT-Bench

def _mt_bench_source(preset, questions_arg) -> tuple[Path, Path, str]:
    """``(question.jsonl, its folder, bench name)`` from ``--questions`` or ``preset.eval.mt_bench_dir``."""
    from .evaluation.mt_bench import DEMO_DIR, resolve_bench_dir
    from .paths import shared_data

    path = Path(questions_arg) if questions_arg else resolve_bench_dir(preset.eval.mt_bench_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such MT-Bench question folder or file")
    file, folder = (path / "question.jsonl", path) if path.is_dir() else (path, path.parent)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no question.jsonl here (FastChat layout expected)")
    if folder.resolve() == DEMO_DIR.resolve():
        name = "demo"
    elif shared_data("mt_bench") is not None and folder.resolve() == shared_data("mt_bench").resolve():
        name = "mt_bench"
    else:
        name = folder.name
    return file, folder, name


def _mt_bench_out(args, bench: str) -> Path:
    from .paths import runs_dir

    return Path(args.out) if args.out else runs_dir() / "mt_bench" / bench


def _limited(questions, args, preset):
    limit = args.limit if args.limit is not None else preset.eval.mt_bench_questions
    return questions if limit is None else questions[:limit]


def _hf_generator(args, preset, max_new_tokens: int):
    from .evaluation.answers import HFChatGenerator
    from .models import resolve_device
    from .policy.pipeline import load_policy

    if Path(args.model).exists():
        model, tokenizer = load_policy(None, args.model)
    else:  # a hub id
        preset.policy_model.name_or_path = args.model
        try:
            model, tokenizer = load_policy(preset)
        except OSError as exc:  # transformers' "not a folder, not on the hub (or offline)"
            raise FileNotFoundError(f"{args.model}: not a model folder, and not loadable as a hub id "
                                    f"({str(exc).splitlines()[0]})") from None
    device = resolve_device(preset.runtime)
    return HFChatGenerator(model.to(device), tokenizer, max_new_tokens=max_new_tokens,
                           bf16=preset.runtime.bf16, name=args.model_id)


def cmd_mt_bench_generate(args) -> int:
    from .evaluation.answers import ServerChatGenerator, generate_mt_bench_answers
    from .evaluation.mt_bench import load_questions

    preset = _preset(args)
    question_file, _, bench = _mt_bench_source(preset, args.questions)
    questions = _limited(load_questions(question_file), args, preset)
    out = _mt_bench_out(args, bench)
    max_new_tokens = args.max_new_tokens or preset.eval.max_new_tokens
    batch_size = args.batch_size or preset.eval.batch_size
    _stderr(f"mt-bench generate: {len(questions)} questions from {question_file}, model {args.model_id} "
            f"({args.model or args.base_url}), out {out / 'model_answer'}")
    with contextlib.ExitStack() as stack:
        if args.model:
            generator = _hf_generator(args, preset, max_new_tokens)
        else:
            client = stack.enter_context(_judge_client(args, preset, model=args.served_model or args.model_id,
                                                       bench=f"{bench}-generate"))
            generator = ServerChatGenerator(client, max_tokens=max_new_tokens, name=args.model_id)
        report = generate_mt_bench_answers(questions, generator, args.model_id, out / "model_answer",
                                           batch_size=batch_size, seed=preset.runtime.seed,
                                           progress=None if args.json else _stderr)
    payload = dataclasses.asdict(report)
    if args.json:
        _print_json(payload)
    else:
        failed = f", {report.n_failed} failed (question ids {report.failed_ids})" if report.n_failed else ""
        print(f"{report.n_generated} generated, {report.n_skipped} already on disk{failed} of {report.n_items} "
              f"questions in {report.elapsed_s:.1f} s -> {report.path}")
    return EXIT_OK


def _merge_judgments(path: Path, rows: list[dict], mode: str, model_ids: list[str]) -> tuple[list[dict], int]:
    """Rows already in ``path`` for other models (or pairs) kept, then this run's rows."""
    from .evaluation.mt_bench import read_judgments

    if not path.exists():
        return rows, 0
    if mode == "single":
        kept = [r for r in read_judgments(path) if r.get("model") not in model_ids]
    else:
        pair = set(model_ids)
        kept = [r for r in read_judgments(path) if {r.get("model_1"), r.get("model_2")} != pair]
    return kept + rows, len(kept)


def _single_table(scores: dict) -> list[str]:
    lines = [f"{'model':32s} {'turn 1':>7s} {'turn 2':>7s} {'overall':>8s} {'n':>5s} {'failed':>6s}"]
    for model, s in scores.items():
        lines.append(f"{model:32s} {_fmt(s.get('turn_1')):>7s} {_fmt(s.get('turn_2')):>7s} "
                     f"{_fmt(s.get('overall')):>8s} {s['n_judgments']:5d} {s['n_failed']:6d}")
    return lines


def _pairwise_table(rates: dict) -> list[str]:
    lines = [f"{'model':32s} {'wins':>5s} {'losses':>6s} {'ties':>5s} {'win rate':>8s} {'n':>5s} {'failed':>6s}"]
    for model, r in rates.items():
        lines.append(f"{model:32s} {r['wins']:5d} {r['losses']:6d} {r['ties']:5d} {_fmt(r['win_rate']):>8s} "
                     f"{r['n']:5d} {r['n_failed']:6d}")
    return lines


def _pairwise_rates(rows: list[dict]) -> dict:
    from .evaluation.mt_bench import pairwise_win_rate

    models = sorted({r["model_1"] for r in rows} | {r["model_2"] for r in rows})
    return {m: pairwise_win_rate(rows, m) for m in models}


def cmd_mt_bench_judge(args) -> int:
    from .evaluation.mt_bench import (judge_pairwise, judge_single, load_judge_prompts, load_model_answers,
                                      load_questions, load_references, reference_file, score_single,
                                      write_judgments)
    from .evaluation.mt_bench_demo import SimulatedMTBenchJudge

    if args.mode == "pairwise" and len(args.model_id) != 2:
        raise ValueError(f"--mode pairwise compares exactly two models; got --model-id {' '.join(args.model_id)}")
    preset = _preset(args)
    question_file, folder, bench = _mt_bench_source(preset, args.questions)
    questions = _limited(load_questions(question_file), args, preset)
    prompts_file = folder / "judge_prompts.jsonl"
    if not prompts_file.is_file():
        raise FileNotFoundError(f"{prompts_file}: no judge prompts next to {question_file.name}")
    judge_prompts = load_judge_prompts(prompts_file)
    out = _mt_bench_out(args, bench)
    answers_path = Path(args.answers) if args.answers else out / "model_answer"
    if not answers_path.exists():
        raise FileNotFoundError(f"{answers_path}: no model answers here (run `starling mt-bench generate` first, "
                                "or pass --answers)")
    answers = load_model_answers(answers_path)
    missing = [m for m in args.model_id if m not in answers]
    if missing:
        raise ValueError(f"{answers_path}: no answers for {missing} (have {sorted(answers)})")
    references_path = Path(args.references) if args.references else reference_file(folder)
    references = load_references(references_path) if references_path else None
    judge_model = args.judge_model or preset.judge.model
    suffix = "single" if args.mode == "single" else "pair"
    path = out / "model_judgment" / f"{_safe_name(judge_model)}_{suffix}.jsonl"
    _stderr(f"mt-bench judge: {args.mode}, {len(questions)} questions from {question_file}, models "
            f"{', '.join(args.model_id)}, judge {judge_model}{' (simulated)' if args.simulated else ''}, "
            f"references {references_path or 'none'}")
    with _judge_client(args, preset, model=judge_model, bench=bench,
                       responder_factory=lambda: SimulatedMTBenchJudge().respond) as client:
        if args.mode == "single":
            rows, report = judge_single(questions, answers, judge_prompts, client, references=references,
                                        model_ids=args.model_id)
            scores = score_single(rows)
        else:
            rows, report = judge_pairwise(questions, answers, judge_prompts, client, *args.model_id,
                                          references=references)
            scores = _pairwise_rates(rows)
    all_rows, n_kept = _merge_judgments(path, rows, args.mode, args.model_id)
    write_judgments(path, all_rows)
    payload = {"judgments": str(path), "n_judgments": len(rows), "n_kept_from_file": n_kept,
               "report": report, "scores": scores}
    if args.json:
        _print_json(payload)
        return EXIT_OK
    cost = f"${report['cost_usd']:.4f}" if report["cost_usd"] is not None else "unknown"
    print(f"{report['n_requests']} judgments ({report['n_ok']} ok, {report['n_failed']} failed, "
          f"{report['n_cached']} from cache), cost {cost} -> {path}")
    if report["n_skipped"]:
        print("skipped: " + ", ".join(f"{kind} {entry['count']}" for kind, entry in report["skipped"].items()))
    print("\n".join(_single_table(scores) if args.mode == "single" else _pairwise_table(scores)))
    return EXIT_OK


def cmd_mt_bench_score(args) -> int:
    from .evaluation.mt_bench import _combine_games, read_judgments, score_single

    rows = read_judgments(args.judgments)
    if not rows:
        raise ValueError(f"{args.judgments}: no judgments")
    pairwise = ["g1_winner" in r and "model_1" in r for r in rows]
    if all(pairwise):
        mode = "pairwise"
        for r in rows:  # FastChat's files have no combined winner; ours do
            if "winner" not in r:
                combined = _combine_games(r["g1_winner"], r["g2_winner"])
                r["winner"] = {"model_1": r["model_1"], "model_2": r["model_2"]}.get(combined, combined)
        scores = _pairwise_rates(rows)
    elif not any(pairwise):
        mode = "single"
        bad = next((i for i, r in enumerate(rows, 1) if not {"model", "score", "turn"} <= set(r)), None)
        if bad is not None:
            raise ValueError(f"{args.judgments}: judgment {bad} lacks model / score / turn")
        scores = score_single(rows)
    else:
        raise ValueError(f"{args.judgments}: mixes single and pairwise judgments")
    if args.json:
        _print_json({"judgments": str(args.judgments), "mode": mode, "n_rows": len(rows), "scores": scores})
    else:
        print("\n".join(_single_table(scores) if mode == "single" else _pairwise_table(scores)))
    return EXIT_OK


# ---------------------------------------------------------------------------------------- AlpacaEval

def cmd_alpaca_judge(args) -> int:
    from .evaluation.alpaca_eval import (SimulatedAlpacaJudge, judge_outputs, load_outputs, score_annotations,
                                         write_annotations)

    preset = _preset(args)
    outputs_path = Path(args.outputs)
    outputs, references = load_outputs(outputs_path), load_outputs(args.reference)
    style = args.style or preset.eval.alpaca_style
    judge_model = args.judge_model or preset.eval.alpaca_judge_model or preset.judge.model
    out = Path(args.out) if args.out else outputs_path.with_name(f"{outputs_path.stem}_annotations.json")
    _stderr(f"alpaca-eval judge: {len(outputs)} outputs vs {len(references)} references, style {style}, "
            f"judge {judge_model}{' (simulated)' if args.simulated else ''}, out {out}")
    with _judge_client(args, preset, model=judge_model, bench="alpaca_eval",
                       responder_factory=lambda: SimulatedAlpacaJudge().respond) as client:
        annotations, report = judge_outputs(outputs, references, client, style=style, seed=args.seed)
    write_annotations(out, annotations)
    scores = score_annotations(annotations) if annotations else None
    payload = {"annotations": str(out), **report, "scores": scores}
    if args.json:
        _print_json(payload)
        return EXIT_OK
    print(f"{report['n_pairs']} pairs judged ({report['n_judged']} ok, {report['n_failed']} failed); "
          f"{report['missing']['count']} reference instructions without an output, "
          f"{report['unmatched']['count']} outputs without a reference, {len(report['malformed'])} malformed, "
          f"{report['duplicates']['count']} duplicates -> {out}")
    for failure in report["failures"][:5]:
        print(f"  failed {failure['id']}: {failure['reason']}")
    if scores:
        print("\n".join(_alpaca_score_lines(scores)))
    return EXIT_OK


def _read_difficulty(path) -> dict[str, float]:
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: not a CSV file ({exc})") from None
    if "instruction" not in df.columns:
        raise ValueError(f"{path}: needs an 'instruction' column (have {list(df.columns)})")
    others = [c for c in df.columns if c != "instruction" and not str(c).startswith("Unnamed")]
    named = [c for c in ("difficulty", "instruction_difficulty") if c in df.columns]
    column = named[0] if named else (others[0] if len(others) == 1 else None)
    if column is None:
        raise ValueError(f"{path}: needs a 'difficulty' column next to 'instruction' (have {list(df.columns)})")
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().nonzero()[0][0])
        raise ValueError(f"{path}: row {row}: {column!r} is not a number ({df[column].iloc[row]!r:.40})")
    return dict(zip(df["instruction"].astype(str), values.astype(float)))


def _alpaca_score_lines(s: dict) -> list[str]:
    return [f"win rate              {_fmt(s['win_rate'], '.2f')} (standard error {_fmt(s['standard_error'], '.2f')})",
            f"wins / losses / draws {s['n_wins']} / {s['n_wins_base']} / {s['n_draws']} of {s['n_total']}"
            + (f" ({s['n_dropped']} without a valid preference dropped)" if s["n_dropped"] else ""),
            f"discrete win rate     {_fmt(s['discrete_win_rate'], '.2f')}",
            f"avg length            {s['avg_length']}",
            f"LC win rate           {_fmt(s['length_controlled_winrate'], '.2f')} ({s['lc_variant']})"]


def cmd_alpaca_score(args) -> int:
    from .evaluation.alpaca_eval import length_controlled_winrate, load_annotations, score_annotations

    annotations = load_annotations(args.annotations)
    if not annotations:
        raise ValueError(f"{args.annotations}: no annotations")
    difficulty = _read_difficulty(args.instruction_difficulty) if args.instruction_difficulty else None
    scores = score_annotations(annotations, difficulty)
    note = length_controlled_winrate(annotations, difficulty)["note"]
    if args.json:
        _print_json({"annotations": str(args.annotations), **scores, "lc_note": note})
    else:
        print("\n".join(_alpaca_score_lines(scores)))
        print(f"note: {note}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- parsers

def _common(cmd, *, json_help: str = "print a JSON report") -> None:
    cmd.add_argument("--preset", default="tiny", choices=["smoke", "tiny", "full"])
    cmd.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                     help="override a preset field, e.g. --set eval.mt_bench_dir=shared (repeatable)")
    cmd.add_argument("--json", action="store_true", help=json_help)


def _judge_flags(cmd, bench: str, model_default: str) -> None:
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--base-url", default=None,
                       help="OpenAI-compatible endpoint (default: $STARLING_JUDGE_BASE_URL, $OPENAI_BASE_URL, the "
                            "preset's judge.base_url, else OpenAI); the API key is read from $OPENAI_API_KEY")
    where.add_argument("--simulated", action="store_true",
                       help="judge with the benchmark's simulated judge behind an in-process fake server "
                            "(offline; its own cache)")
    cmd.add_argument("--judge-model", default=None, help=f"judge model name (default: {model_default})")
    cmd.add_argument("--cache", default=None,
                     help=f"judge answer cache (default: runs/judge/{bench}-cache.sqlite, "
                          f"{bench}-simulated-cache.sqlite with --simulated)")
    cmd.add_argument("--max-retries", type=int, default=None, help="retries per request (default: the preset's)")


def add_eval_parsers(sub) -> None:
    """Register ``mt-bench`` and ``alpaca-eval`` on the ``starling`` subparsers."""
    mt = sub.add_parser("mt-bench", help="MT-Bench: generate answers, judge them, score the judgments")
    mt_sub = mt.add_subparsers(dest="mt_bench_command", required=True)

    gen = mt_sub.add_parser("generate", help="answer MT-Bench's two turns (FastChat's model_answer layout)")
    gen.add_argument("--model-id", required=True, help="the name the answers are filed under")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", default=None, help="a saved model folder (or run folder), or a hub id")
    source.add_argument("--base-url", default=None, help="an OpenAI-compatible server that serves the model")
    gen.add_argument("--served-model", default=None, help="model name on the server (default: --model-id)")
    gen.add_argument("--questions", default=None,
                     help="FastChat folder or question.jsonl (default: eval.mt_bench_dir, i.e. the demo set)")
    gen.add_argument("--out", default=None, help="benchmark folder (default: runs/mt_bench/<demo|mt_bench>)")
    gen.add_argument("--max-new-tokens", type=int, default=None, help="per turn (default: eval.max_new_tokens)")
    gen.add_argument("--batch-size", type=int, default=None, help="default: eval.batch_size")
    gen.add_argument("--limit", type=int, default=None, help="only the first N questions")
    gen.add_argument("--cache", default=None, help="server mode: answer cache "
                                                   "(default: runs/judge/<bench>-generate-cache.sqlite)")
    gen.add_argument("--max-retries", type=int, default=None, help="server mode: retries per request")
    _common(gen)
    gen.set_defaults(func=cmd_mt_bench_generate)

    judge = mt_sub.add_parser("judge", help="grade answers 1-10 (single) or compare two models (pairwise)")
    judge.add_argument("--model-id", nargs="+", required=True, help="models to judge (two for pairwise)")
    judge.add_argument("--mode", default="single", choices=["single", "pairwise"])
    judge.add_argument("--questions", default=None,
                       help="FastChat folder or question.jsonl (default: eval.mt_bench_dir, i.e. the demo set)")
    judge.add_argument("--answers", default=None, help="model_answer folder or file (default: <out>/model_answer)")
    judge.add_argument("--references", default=None,
                       help="reference answers file (default: the first <questions>/reference_answer/*.jsonl)")
    judge.add_argument("--out", default=None, help="benchmark folder (default: runs/mt_bench/<demo|mt_bench>)")
    judge.add_argument("--limit", type=int, default=None, help="only the first N questions")
    _judge_flags(judge, "<bench>", "the preset's judge.model")
    _common(judge)
    judge.set_defaults(func=cmd_mt_bench_judge)

    score = mt_sub.add_parser("score", help="scores of a judgments file (single or pairwise)")
    score.add_argument("judgments", help="model_judgment/<judge>_single.jsonl or _pair.jsonl")
    score.add_argument("--json", action="store_true")
    score.set_defaults(func=cmd_mt_bench_score)

    alpaca = sub.add_parser("alpaca-eval", help="AlpacaEval: judge outputs against a reference, score annotations")
    alpaca_sub = alpaca.add_subparsers(dest="alpaca_command", required=True)

    ajudge = alpaca_sub.add_parser("judge", help="annotate model outputs against reference outputs")
    ajudge.add_argument("outputs", help="model outputs: JSON list of {instruction, output[, generator]}")
    ajudge.add_argument("--reference", required=True, help="reference outputs, same schema")
    ajudge.add_argument("--style", default=None, choices=["weighted", "ranking"],
                        help="annotator style (default: eval.alpaca_style)")
    ajudge.add_argument("--seed", type=int, default=0, help="seed of the shown order of each pair")
    ajudge.add_argument("--out", default=None, help="annotations file (default: <outputs stem>_annotations.json)")
    _judge_flags(ajudge, "alpaca_eval", "eval.alpaca_judge_model, else judge.model")
    _common(ajudge)
    ajudge.set_defaults(func=cmd_alpaca_judge)

    ascore = alpaca_sub.add_parser("score", help="win rate, standard error and LC win rate of annotations")
    ascore.add_argument("annotations", help="annotations JSON (alpaca_eval schema)")
    ascore.add_argument("--instruction-difficulty", default=None,
                        help="CSV with columns instruction,difficulty (for the LC win rate)")
    ascore.add_argument("--json", action="store_true")
    ascore.set_defaults(func=cmd_alpaca_score)
