"""What notebook 04 runs offline: the policies it evaluates and the tiny world's AlpacaEval demo set.

- :func:`tuned_policies`: notebook 03's SFT start and its APA-tuned policy (seed 0), read from
  ``<runs>/apa_study/<preset>/`` when notebook 03 left them there (``make reproduce`` runs 03
  first), else trained here the way notebook 03 trains them (same split, same configs), so
  notebook 04 also runs on its own.
- :func:`alpaca_demo_set`: AlpacaEval-style instructions written from the tiny world's templates
  (single-turn, every task and topic, some not-good-natured requests), with reference outputs from
  one of the world's simulated models, so a simulated judge that reads the gold reward can judge a
  tiny policy against them.
- Notebook 04's bookkeeping (tables, results, checks, verdict) is in :mod:`~starling_lib.evaluation.findings`,
  its figures in :mod:`~starling_lib.evaluation.figures`.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from starling_lib.config import Preset
from starling_lib.data.gold import HARMFUL_REQUESTS, PROMPT_TEMPLATES, TOPIC_NAMES, gold_reward
from starling_lib.data.tinyworld import MODELS_BY_NAME, simulate_answer
from starling_lib.paths import runs_dir
from starling_lib.rng import seeded_rng

ALPACA_DEMO_REFERENCE = "tiny-rambler"
"""The reference "model" of the demo set: a middling, long-winded simulated answerer (mean gold
2.55 on the demo instructions, against 4.76 for tiny-gpt-4 and 1.51 for tiny-offtopic), so the
tiny policies' win rates sit in the informative middle, and length matters, as in AlpacaEval."""


def alpaca_demo_set(n: int | None = None, *, reference_model: str = ALPACA_DEMO_REFERENCE, seed: int = 0
                    ) -> tuple[list[dict], list[dict]]:
    """``(instructions, reference_outputs)`` in AlpacaEval's schema.

    Instructions: every benign template × topic and every harmful template × request of the tiny
    world (168 in all), shuffled by ``seed``, the first ``n``. ``dataset`` names the task. Each
    reference output is ``reference_model``'s simulated answer, drawn from a generator seeded by the
    instruction, so the set is the same on every machine.
    """
    if reference_model not in MODELS_BY_NAME:
        raise ValueError(f"reference_model {reference_model!r}: not a simulated model; choose one of "
                         f"{sorted(MODELS_BY_NAME)}")
    items = [(template.format(t=topic), task, topic, None)
             for task in ("explain", "list", "advice", "poem") for template in PROMPT_TEMPLATES[task]
             for topic in TOPIC_NAMES]
    items += [(template.format(t=request.phrase), "harmful", request.noun, request)
              for template in PROMPT_TEMPLATES["harmful"] for request in HARMFUL_REQUESTS]
    order = np.random.default_rng(seed).permutation(len(items))
    items = [items[i] for i in order][:n]
    model = MODELS_BY_NAME[reference_model]
    instructions, references = [], []
    for text, task, topic, request in items:
        answer = simulate_answer(seeded_rng("alpaca-demo", seed, text, sep=":"), model,
                                 "explain" if request is not None else task, topic, request)
        instructions.append({"instruction": text, "dataset": f"tinyworld-{task}"})
        references.append({"instruction": text, "output": answer, "generator": reference_model,
                           "dataset": f"tinyworld-{task}"})
    return instructions, references


def instruction_gold(instruction: str, output: str) -> float:
    """The tiny world's gold reward of ``output`` as an answer to a single-turn ``instruction``."""
    return gold_reward(f"\n\nHuman: {instruction}\n\nAssistant: ", output)


def tuned_policies(preset: Preset, work_dir: str | Path | None = None, *, seed: int = 0,
                   log: Callable[[str], None] = print) -> dict[str, Path]:
    """``{"sft": folder, "apa": folder}``: notebook 03's SFT start and APA policy (``seed``).

    Each piece is reused when its folder exists under ``work_dir`` (default
    ``<runs>/apa_study/<preset>``, where notebook 03 writes) and trained there otherwise, with
    notebook 03's split and configs. An APA run notebook 03 finished without a ``final/`` folder is
    completed from its last checkpoint (no iteration is repeated).
    """
    from starling_lib.policy.pipeline import load_saved_policy, split_world
    from starling_lib.policy.sft import train_sft
    from starling_lib.policy.train import train_policy
    from starling_lib.reward.data import tinyworld_examples
    from starling_lib.reward.train import load_trained, train_reward_model

    if preset.data.source != "tinyworld":
        raise ValueError("tuned_policies builds the tiny world's policies; for other data train with "
                         "`starling sft train` and `starling apa train` and pass the folders")
    work = Path(work_dir) if work_dir is not None else runs_dir() / "apa_study" / preset.name
    sft_dir, rm_dir, apa_dir = work / "sft", work / "rm", work / "policy" / f"apa-seed{seed}"
    parts = None
    if not (sft_dir / "final" / "config.json").is_file():
        log(f"training the SFT start in {sft_dir}")
        parts = split_world(preset)
        train_sft(preset, parts["sft"], sft_dir)
    if not (apa_dir / "final" / "config.json").is_file():
        parts = parts or split_world(preset)
        if not (rm_dir / "final" / "config.json").is_file():
            log(f"training the proxy reward model in {rm_dir}")
            train_reward_model(preset, tinyworld_examples(parts["rm"]), tinyworld_examples(parts["eval"]), rm_dir)
        run_preset = copy.deepcopy(preset)
        run_preset.policy.algo, run_preset.runtime.seed = "apa", seed
        reward_model, reward_tokenizer = load_trained(rm_dir)
        policy, tokenizer = load_saved_policy(sft_dir)
        resumed = any(apa_dir.glob("checkpoint-*"))
        log(f"{'completing' if resumed else 'training'} the APA policy in {apa_dir}")
        train_policy(run_preset, [row["prompt"] for row in parts["rl"]], policy, tokenizer, reward_model,
                     reward_tokenizer, apa_dir, gold_fn=gold_reward, resume=True)
    return {"sft": sft_dir / "final", "apa": apa_dir / "final"}


def policy_fingerprint(folder: str | Path) -> str:
    """First 8 hex digits of the sha256 of a saved model's weight files: answer files are keyed by it,
    so a retrained policy never reuses (resumes from) the answers of an earlier one."""
    digest = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder}: no weight files (*.safetensors / *.bin)")
    for path in files:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:8]
