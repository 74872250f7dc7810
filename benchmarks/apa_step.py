"""APA step cost: our rollout sampler vs raw ``generate``, and one APA iteration vs one TRL GRPO step.

    python benchmarks/apa_step.py [--preset tiny] [--completions 16] [--max-new-tokens 64] [--iterations 5] [--rounds 2]

1. Generation: ``sample_responses`` (``generate`` with KV cache, then the eos mask) vs a bare
   ``model.generate(..., use_cache=True, do_sample=True)``: same sampling settings, batch (tiny-world
   prompts through ``encode_prompts``), length, compute dtype and seed, so both draw the same tokens
   (generated tokens up to the first eos are counted and reported). Rounds alternate which goes first;
   ``generate_ratio`` = median tokens/s ours / raw (goal >= 0.8).
2. Iteration: ``train_policy`` (APA, one response to each of ``--completions`` prompts, one epoch, one
   minibatch) vs one ``GRPOTrainer`` step with as many completions (``--num-generations`` per prompt) of
   the same max length, one optimiser step per generation batch. Fair: the same untrained start policy,
   a frozen reference on both sides (TRL: ``beta > 0``), the same reward model through our
   ``RewardScorer`` (equal scoring cost), the preset's compute dtype (``--dtype``), learning rate and grad clipping; no
   gradient checkpointing, logging, saving or progress bars. Each side runs in blocks of
   ``--iterations`` (the first of a block is warm-up), ``--rounds`` blocks each, the order alternating by
   round so a drifting machine hits both alike; ``iteration_ratio`` = median ours / median TRL (goal
   <= 1). What differs is what each method costs: we also train a critic (``separate``: a copy of the
   trunk, one more forward in the rollout and one more forward/backward in the update) and take the
   sampling policy's log-probabilities in a no-grad pass (TRL skips it when generation and update are
   aligned, as here); GRPO's fewer distinct prompts pad to a narrower batch. Counting a backward as two
   forwards, beyond generation and scoring an iteration costs GRPO 4 forwards (reference; policy
   forward and backward) and us 9 with a separate critic (policy, critic and reference in the
   rollout; policy and critic forward and backward in the update) or 5 with a shared one, so the
   goal is reachable only with ``--critic shared``; the default measures Starling's separate critic. Completion lengths, generated tokens/s and the time-per-token ratio are reported
   alongside.

The last line is JSON.
"""

from __future__ import annotations

import os

for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)  # never try the network, as tests/conftest.py

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from starling_lib.config import get_preset  # noqa: E402
from starling_lib.data.chat import prompt_to_messages  # noqa: E402
from starling_lib.models import quiet_transformers  # noqa: E402
from starling_lib.precision import (DTYPE_NAMES, autocast_context, precision_record, resolve_precision,  # noqa: E402
                                    trainer_precision_args)
from starling_lib.policy.pipeline import load_policy, policy_prompts  # noqa: E402
from starling_lib.policy.rollout import (RewardScorer, _eos_ids, encode_prompts, response_mask,  # noqa: E402
                                         sample_responses)
from starling_lib.policy.train import train_policy  # noqa: E402
from starling_lib.reward.train import build_backbone  # noqa: E402

GENERATE_TARGET, ITERATION_TARGET = 0.8, 1.0
PHASES = ("generate_s", "forward_s", "score_s", "update_s")
log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731


def bench_generate(preset, prompts, args) -> dict:
    model, tokenizer = load_policy(preset)
    model.eval()
    query, mask, _ = encode_prompts(tokenizer, prompts[:args.completions], preset.policy.max_prompt_length)
    eos, dtype = _eos_ids(tokenizer, model), resolve_precision(preset.runtime).torch_dtype

    def ours():
        _, resp_mask = sample_responses(model, tokenizer, query, mask, args.max_new_tokens, 1.0, 1.0, dtype)
        return int(resp_mask.sum())

    def raw():
        with torch.no_grad(), autocast_context(query.device, dtype):
            out = model.generate(input_ids=query, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                                 use_cache=True, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        return int(response_mask(out[:, query.shape[1]:], eos).sum())

    sides, rate, tokens = {"ours": ours, "raw": raw}, {"ours": [], "raw": []}, {"ours": [], "raw": []}
    raw()  # warm-up (allocator, kernels), not timed
    for round_ in range(args.repeats):
        for name in (("ours", "raw") if round_ % 2 == 0 else ("raw", "ours")):
            torch.manual_seed(1000 + round_)  # same seed on both sides: the same samples
            started = time.perf_counter()
            tokens[name].append(sides[name]())
            rate[name].append(tokens[name][-1] / (time.perf_counter() - started))
        log(f"generate round {round_}: ours {rate['ours'][-1]:.0f} tok/s ({tokens['ours'][-1]} tokens), "
            f"raw {rate['raw'][-1]:.0f} tok/s ({tokens['raw'][-1]} tokens)")
    med = {k: float(np.median(v)) for k, v in rate.items()}
    return {"tokens_per_s": {k: round(v, 1) for k, v in med.items()}, "tokens": tokens,
            "max_tokens": args.completions * args.max_new_tokens, "ratio": round(med["ours"] / med["raw"], 3)}


def bench_iterations(preset, prompts, reward, reward_tokenizer, out_dir, args) -> tuple[dict, dict]:
    """Blocks of ``--iterations`` APA iterations and of as many TRL steps, ``--rounds`` times, the order
    alternating by round (ours first, then TRL first, ...); the first iteration / step of every block
    is warm-up. Each block runs alone in the main thread: two Python threads calling torch at once
    slow each other down (OpenMP worker pools spin on 2 cores), which would bias an interleaving."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    cfg, precision = preset.policy, resolve_precision(preset.runtime)
    scorer = RewardScorer(reward, reward_tokenizer, cfg.rm_max_length, dtype=precision.torch_dtype)
    data = Dataset.from_dict({"prompt": [prompt_to_messages(p) for p in prompts], "prompt_text": list(prompts)})

    def rm_reward(prompts, completions, prompt_text, **kwargs):
        return scorer(prompt_text, [c[-1]["content"] for c in completions]).tolist()

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.started = [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

    def ours_block(round_):
        run = train_policy(preset, prompts, *load_policy(preset), reward, reward_tokenizer, out_dir / f"ours{round_}",
                           gold_fn=None, save_final=False)
        for record in run.history:
            log(f"round {round_} ours iteration {record['iteration']}: {record['iteration_s']:.2f} s "
                f"({record['response_length']:.1f} tokens/response; "
                + ", ".join(f"{p[:-2]} {record[p]:.2f}" for p in PHASES) + ")")
        return run.history

    def trl_block(round_):
        policy, tokenizer = load_policy(preset)  # the same start; TRL builds its reference from it
        timer = StepTimer()
        with quiet_transformers(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trl_args = GRPOConfig(
                output_dir=str(out_dir / f"trl{round_}"), per_device_train_batch_size=args.completions,
                gradient_accumulation_steps=1, num_generations=args.num_generations, num_iterations=1,
                max_completion_length=args.max_new_tokens, max_steps=args.iterations, beta=args.beta,
                learning_rate=cfg.learning_rate, max_grad_norm=cfg.max_grad_norm or 0.0, temperature=cfg.temperature,
                top_p=cfg.top_p, top_k=0, **trainer_precision_args(precision), use_cpu=True, activation_checkpointing=False, report_to="none",
                save_strategy="no", logging_steps=1, disable_tqdm=True, log_completions=False,
                dataloader_num_workers=0, seed=preset.runtime.seed)
            trainer = GRPOTrainer(model=policy, reward_funcs=rm_reward, args=trl_args, train_dataset=data,
                                  processing_class=tokenizer, callbacks=[timer])
            trainer.remove_callback(PrinterCallback)
            assert trainer.ref_model is not None and not trl_args.gradient_checkpointing
            trainer.train()
        lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
        for step, (seconds, length) in enumerate(zip(timer.seconds, lengths)):
            log(f"round {round_} trl step {step}: {seconds:.2f} s ({length:.1f} tokens)")
        return timer.seconds, lengths, trl_args.generation_batch_size

    ours_timed, trl_timed, trl_lengths, all_ours, all_trl = [], [], [], [], []
    for round_ in range(args.rounds):
        for side in (("ours", "trl") if round_ % 2 == 0 else ("trl", "ours")):
            if side == "ours":
                history = ours_block(round_)
                all_ours.append([r["iteration_s"] for r in history])
                ours_timed += history[1:]
            else:
                seconds, lengths, trl_completions = trl_block(round_)
                all_trl.append(seconds)
                trl_timed += seconds[1:]
                trl_lengths += lengths[1:]
    ours = {"iteration_s": float(np.median([r["iteration_s"] for r in ours_timed])), "all_s": all_ours,
            "completions": ours_timed[0]["responses"],
            "mean_length": float(np.mean([r["response_length"] for r in ours_timed])),
            "phases": {p: float(np.median([r[p] for r in ours_timed])) for p in PHASES}}
    trl = {"step_s": float(np.median(trl_timed)), "all_s": all_trl, "mean_length": float(np.mean(trl_lengths)),
           "completions": trl_completions}
    return ours, trl


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--completions", type=int, default=16, help="responses per iteration / step")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5, help="APA iterations and TRL steps per block (first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="blocks of each, the order alternating by round")
    parser.add_argument("--num-generations", type=int, default=4, help="TRL completions per prompt")
    parser.add_argument("--beta", type=float, default=0.04, help="TRL KL coefficient (> 0 keeps a reference model)")
    parser.add_argument("--repeats", type=int, default=5, help="generation rounds (alternating order)")
    parser.add_argument("--critic", default="separate", choices=["separate", "shared"], help="Starling: separate")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help="compute dtype (auto: the hardware's choice)")
    args = parser.parse_args(argv)
    if args.iterations < 2 or args.rounds < 1 or args.repeats < 1 or args.beta <= 0 or args.completions % args.num_generations:
        parser.error("need --iterations >= 2, --rounds >= 1, --repeats >= 1, --beta > 0, --completions divisible by --num-generations")
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset, [
        f"policy.iterations={args.iterations}", f"policy.prompts_per_iteration={args.completions}",
        f"policy.minibatch_size={args.completions}", "policy.grad_accum=1", "policy.epochs_per_rollout=1",
        f"policy.max_new_tokens={args.max_new_tokens}", "policy.algo=apa", f"policy.critic={args.critic}",
        "policy.save_every=1000000", f"runtime.dtype={args.dtype}"])
    prompts, _ = policy_prompts(preset)
    log(f"preset {args.preset}: {len(prompts)} prompts, dtype={resolve_precision(preset.runtime).name}, {torch.get_num_threads()} threads")

    gen = bench_generate(preset, prompts, args)
    reward, reward_tokenizer = build_backbone(preset)
    with tempfile.TemporaryDirectory() as tmp:
        ours, trl = bench_iterations(preset, prompts, reward, reward_tokenizer, Path(tmp), args)
    ratio = ours["iteration_s"] / trl["step_s"]
    tok_s = {"ours": ours["completions"] * ours["mean_length"] / ours["iteration_s"],
             "trl": trl["completions"] * trl["mean_length"] / trl["step_s"]}
    per_token = tok_s["trl"] / tok_s["ours"]  # our seconds per generated token / TRL's
    phases = {p[:-2]: {"s": round(v, 3), "share": round(v / ours["iteration_s"], 3)} for p, v in ours["phases"].items()}
    rate = gen["tokens_per_s"]
    print(f"generation: ours {rate['ours']:.0f} tok/s vs raw generate {rate['raw']:.0f} tok/s (generated tokens "
          f"{gen['tokens']['ours']} vs {gen['tokens']['raw']} of {gen['max_tokens']}): ratio {gen['ratio']:.3f} "
          f"(goal >= {GENERATE_TARGET})")
    print(f"iteration: ours {ours['iteration_s']:.2f} s (APA, {args.critic} critic) vs TRL GRPO step "
          f"{trl['step_s']:.2f} s: ratio {ratio:.3f} (goal <= {ITERATION_TARGET})")
    print(f"  {ours['completions']} vs {trl['completions']} completions, mean length {ours['mean_length']:.1f} vs "
          f"{trl['mean_length']:.1f}: {tok_s['ours']:.0f} vs {tok_s['trl']:.0f} generated tok/s; "
          f"time per generated token ratio {per_token:.3f}")
    print("  ours phases (median s, share of the iteration): "
          + ", ".join(f"{p} {v['s']:.2f} ({v['share']:.0%})" for p, v in phases.items()))
    result = {
        "benchmark": "apa_step", "preset": args.preset, "precision": resolve_precision(preset.runtime).as_dict(), "cpu": precision_record()["cpu"], "critic": args.critic,
        "completions": args.completions, "max_new_tokens": args.max_new_tokens,
        "generate_ratio": gen["ratio"], "generate_ok": bool(gen["ratio"] >= GENERATE_TARGET),
        "generate_tokens_per_s": rate, "generate_tokens": gen["tokens"],
        "iteration_ratio": round(ratio, 3), "iteration_ok": bool(ratio <= ITERATION_TARGET),
        "ours_iteration_s": round(ours["iteration_s"], 3), "trl_step_s": round(trl["step_s"], 3),
        "ours_all_s": [[round(x, 3) for x in block] for block in ours["all_s"]],
        "trl_all_s": [[round(x, 3) for x in block] for block in trl["all_s"]],
        "phases": phases, "completion_length": {"ours": round(ours["mean_length"], 2),
                                                "trl": round(trl["mean_length"], 2)},
        "generated_tokens_per_s": {k: round(v, 1) for k, v in tok_s.items()}, "per_token_ratio": round(per_token, 3),
        "ratio": round(ratio, 3)}
    result["ok"] = result["generate_ok"] and result["iteration_ok"]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
