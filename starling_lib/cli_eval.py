"""``starling mt-bench``, ``starling alpaca-eval`` and ``starling judge report``: argument parsing over :mod:`starling_lib.evaluation`.

    starling mt-bench generate --model-id ID (--model PATH | --base-url URL [--served-model NAME])
    starling mt-bench judge --model-id ID [ID ...] [--mode single|pairwise] [--simulated]
    starling mt-bench score JUDGMENTS.jsonl [--json]
    starling alpaca-eval judge OUTPUTS.json --reference REFERENCE.json [--style weighted|ranking] [--simulated]
    starling alpaca-eval score ANNOTATIONS.json [--instruction-difficulty CSV] [--json]
    starling alpaca-eval lc --weights CSV --preferences CSV.GZ --leaderboard CSV [--json]
    starling judge report FILE... [--answers MODEL_ANSWER_DIR] [--json]

Each command is one library call (:mod:`starling_lib.evaluation.pipeline`, or a scorer) and a
printout. Judge commands talk to any OpenAI-compatible endpoint (``--base-url``, else
``$STARLING_JUDGE_BASE_URL`` / ``$OPENAI_BASE_URL`` / the preset, else OpenAI); the API key is read
from the environment only (``$OPENAI_API_KEY``, ``judge.api_key_env``). ``--simulated`` runs the
benchmark's simulated judge (tiny-world gold reward) behind a local server
(:mod:`starling_lib.judge.endpoint`): offline, for demos and tests; its answers go to their own
cache so they are never mistaken for a real judge's.
"""

from __future__ import annotations

import math
import sys

from starling_lib.cli_common import add_common_flags, print_json

EXIT_OK = 0


def _fmt(value, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec) if isinstance(value, float) else str(value)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _preset(args):
    from .cli_common import load_preset

    return load_preset(args.preset, args.set)


def _judge_options(args) -> dict:
    return {"judge_model": args.judge_model, "simulated": args.simulated, "base_url": args.base_url,
            "cache": args.cache, "max_retries": args.max_retries, "quiet": args.json, "log": _stderr}


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


def _alpaca_score_lines(s: dict) -> list[str]:
    from .evaluation.alpaca_eval import LC_FIELDS

    return [f"win rate              {_fmt(s['win_rate'], '.2f')} (standard error {_fmt(s['standard_error'], '.2f')})",
            f"wins / losses / draws {s['n_wins']} / {s['n_wins_base']} / {s['n_draws']} of {s['n_total']}"
            + (f" ({s['n_dropped']} without a valid preference dropped)" if s["n_dropped"] else ""),
            f"discrete win rate     {_fmt(s['discrete_win_rate'], '.2f')}",
            f"avg length            {s['avg_length']}",
            f"LC refit (not the published LC) {_fmt(s[LC_FIELDS[s['lc_variant']]], '.2f')} ({s['lc_variant']})"]


# ---------------------------------------------------------------------------------------- commands

def cmd_mt_bench_generate(args) -> int:
    from .evaluation.pipeline import mt_bench_generate

    report = mt_bench_generate(_preset(args), args.model_id, model=args.model, base_url=args.base_url,
                               served_model=args.served_model, questions=args.questions, out=args.out,
                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, limit=args.limit,
                               cache=args.cache, max_retries=args.max_retries, quiet=args.json, log=_stderr)
    if args.json:
        print_json(report)
    else:
        failed = (f", {report['n_failed']} failed (question ids {report['failed_ids']})"
                  if report["n_failed"] else "")
        print(f"{report['n_generated']} generated, {report['n_skipped']} already on disk{failed} of "
              f"{report['n_items']} questions in {report['elapsed_s']:.1f} s -> {report['path']}")
    return EXIT_OK


def cmd_mt_bench_judge(args) -> int:
    from .evaluation.pipeline import mt_bench_judge

    payload = mt_bench_judge(_preset(args), args.model_id, mode=args.mode, questions=args.questions,
                             answers=args.answers, references=args.references, out=args.out, limit=args.limit,
                             **_judge_options(args))
    if args.json:
        print_json(payload)
        return EXIT_OK
    report, scores = payload["report"], payload["scores"]
    cost = f"${report['cost_usd']:.4f}" if report["cost_usd"] is not None else "unknown"
    print(f"{report['n_requests']} judgments ({report['n_ok']} ok, {report['n_failed']} failed, "
          f"{report['n_cached']} from cache), cost {cost} -> {payload['judgments']}")
    if report["n_skipped"]:
        print("skipped: " + ", ".join(f"{kind} {entry['count']}" for kind, entry in report["skipped"].items()))
    print("\n".join(_single_table(scores) if args.mode == "single" else _pairwise_table(scores)))
    return EXIT_OK


def cmd_mt_bench_score(args) -> int:
    from .evaluation.mt_bench import score_judgments

    payload = score_judgments(args.judgments)
    if args.json:
        print_json(payload)
    else:
        scores = payload["scores"]
        print("\n".join(_single_table(scores) if payload["mode"] == "single" else _pairwise_table(scores)))
    return EXIT_OK


def cmd_alpaca_judge(args) -> int:
    from .evaluation.pipeline import alpaca_eval_judge

    payload = alpaca_eval_judge(_preset(args), args.outputs, args.reference, style=args.style, seed=args.seed,
                                out=args.out, **_judge_options(args))
    if args.json:
        print_json(payload)
        return EXIT_OK
    print(f"{payload['n_pairs']} pairs judged ({payload['n_judged']} ok, {payload['n_failed']} failed); "
          f"{payload['missing']['count']} reference instructions without an output, "
          f"{payload['unmatched']['count']} outputs without a reference, {len(payload['malformed'])} malformed, "
          f"{payload['duplicates']['count']} duplicates -> {payload['annotations']}")
    for failure in payload["failures"][:5]:
        print(f"  failed {failure['id']}: {failure['reason']}")
    if payload["scores"]:
        print("\n".join(_alpaca_score_lines(payload["scores"])))
    return EXIT_OK


def cmd_alpaca_score(args) -> int:
    from .evaluation.alpaca_eval import score_annotation_file

    payload = score_annotation_file(args.annotations, args.instruction_difficulty)
    if args.json:
        print_json(payload)
    else:
        print("\n".join(_alpaca_score_lines(payload)))
        print(f"note: {payload['lc_note']}")
    return EXIT_OK


def cmd_alpaca_lc(args) -> int:
    from .evaluation.alpaca_eval import lc_from_weights

    report = lc_from_weights(args.weights, args.preferences, args.leaderboard, ridge=args.ridge)
    if args.json:
        print_json(report)
        return EXIT_OK
    print(f"{report['method']}; ridge {report['ridge']:g} ({report['ridge_chosen_by']})")
    print("error of lc_winrate_estimated against the published length_controlled_winrate (points):")
    for part, e in report["errors"].items():
        print(f"  {part:9s} n {e['n']:4d}  mean abs {_fmt(e['mae'])}  rmse {_fmt(e['rmse'])}  max abs {_fmt(e['max_abs'])}"
              f"  ({e['worst_model']})")
    e = report["refit_no_difficulty"]["errors"]
    print(f"  refit without difficulty, n {e['n']}: mean abs {_fmt(e['mae'])}, max abs {_fmt(e['max_abs'])} ({e['worst_model']})")
    print(f"exact (difficulty coefficient 0): {', '.join(report['exact']['models'])}, max abs error "
          f"{_fmt(report['exact']['max_abs_error'], '.1e')}")
    left = report["left_out"]
    print(f"left out: {left['duplicate_rows']} duplicate rows ({', '.join(left['duplicate_models'])}); "
          f"annotations without weights: {', '.join(left['models_without_weights']) or '-'}; "
          f"{len(left['leaderboard_models_without_weights'])} leaderboard models without weights")
    return EXIT_OK


def cmd_judge_report(args) -> int:
    from .evaluation.judge_quality import judge_report

    reports = [judge_report(path, answers=args.answers) for path in args.files]
    if args.json:
        print_json(reports)
        return EXIT_OK

    def rate(p):
        if not p or p["rate"] is None:
            return "-"
        return f"{p['rate']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] ({p['k']}/{p['n']})"

    for r in reports:
        print(f"{r['file']} ({r['kind']}, {r['n_pairs']} pairs)")
        kappa = r["kappa_between_orders"]
        print(f"  flips when the answers swap  {rate(r['flip_rate'])}")
        print(f"  kappa between the two orders {_fmt(kappa) if kappa is not None else '-'}"
              + (f" [{r['kappa_ci95'][0]:.3f}, {r['kappa_ci95'][1]:.3f}]" if r.get("kappa_ci95") else ""))
        print(f"  prefers the first shown      {rate(r['prefers_first_shown'])}")
        print(f"  prefers the longer           {rate(r['prefers_longer'])}")
        for key in ("order_note", "prefers_longer_note"):
            if r.get(key):
                print(f"  note: {r[key]}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- parsers

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
    add_common_flags(gen)
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
    add_common_flags(judge)
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
    add_common_flags(ajudge)
    ajudge.set_defaults(func=cmd_alpaca_judge)

    ascore = alpaca_sub.add_parser("score", help="win rate, standard error and LC win rate of annotations")
    ascore.add_argument("annotations", help="annotations JSON (alpaca_eval schema)")
    ascore.add_argument("--instruction-difficulty", default=None,
                        help="CSV with columns instruction,difficulty (for the LC win rate)")
    ascore.add_argument("--json", action="store_true")
    ascore.set_defaults(func=cmd_alpaca_score)

    alc = alpaca_sub.add_parser("lc", help="LC win rates from the published GLM weights, with difficulties "
                                           "estimated from real annotations; error against the leaderboard")
    alc.add_argument("--weights", required=True, help="lc_glm_weights_baseline_gpt4_1106_preview.csv")
    alc.add_argument("--preferences", required=True, help="ae2_leaderboard_preferences.csv.gz")
    alc.add_argument("--leaderboard", required=True, help="the leaderboard csv with length_controlled_winrate")
    alc.add_argument("--ridge", type=float, default=None,
                     help="prior precision of the difficulties (default: chosen on a grid by the in-fit error)")
    alc.add_argument("--json", action="store_true")
    alc.set_defaults(func=cmd_alpaca_lc)

    judge = sub.add_parser("judge", help="how far to trust a pairwise judge")
    judge_sub = judge.add_subparsers(dest="judge_command", required=True)
    report = judge_sub.add_parser("report", help="order flips, kappa between orders, first-shown and longer "
                                                 "preference of MT-Bench pairwise judgments or AlpacaEval annotations")
    report.add_argument("files", nargs="+", help="FastChat *_pair.jsonl judgments and/or AlpacaEval annotations JSON")
    report.add_argument("--answers", default=None,
                        help="MT-Bench model_answer folder (for the longer-answer preference of pairwise judgments)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_judge_report)
