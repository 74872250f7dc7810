"""Dataclass configs, one per pipeline stage, and the presets that bundle them.

A preset is a set of config instances, not flags scattered through the code:

- ``smoke``: CI; every notebook finishes in under a minute on 2 CPU cores.
- ``tiny``:  the default of ``make reproduce``; all notebooks together within 15 minutes on
  2 CPU cores and 4 GiB of memory, with results that show the effect being studied.
- ``full``:  the paper's scale: Nectar from the hub, 7B models on GPUs, a GPT-4 judge.
- ``starling-apa``: ``full`` with the policy run set as the authors ran it (their trlx fork's
  ``mistral_apa.py``); its docstring lists what still differs.

Later stages (judge, reward model, policy, evaluation) add their own config class here and a
field on :class:`Preset`. ``get_preset("tiny", ["world.n_prompts=50"])`` returns a fresh copy
with overrides applied, so callers never mutate the shared presets.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field


@dataclass
class RuntimeConfig:
    """Where and how computation runs."""

    seed: int = 0
    """Global seed for Python, NumPy and torch."""
    device: str = "auto"
    """``auto`` picks CUDA when present, else CPU; or an explicit torch device string."""
    dtype: str = "auto"
    """Compute dtype: ``auto`` (bf16 on CUDA with bf16 and on CPUs with native bf16 instructions, fp32
    elsewhere; ``$STARLING_DTYPE`` can decide it), ``fp32``, ``bf16`` or ``fp16`` (CUDA only). See
    :mod:`starling_lib.precision`."""
    bf16: bool | None = None
    """Old alias of ``dtype``: ``true`` = ``bf16``, ``false`` = ``fp32``; ``None`` defers to ``dtype``."""
    num_threads: int | None = None
    """torch intra-op threads, and ``OMP_NUM_THREADS`` for the processes a run starts; ``None`` keeps
    torch's default (all cores). Applied by every ``starling`` command and passed by ``starling
    reproduce`` to each notebook's kernel; in your own script, call
    :func:`starling_lib.precision.apply_threads` with the preset's ``runtime``."""
    parallel_runs: int | None = None
    """Independent runs of a study (learning-curve points, algorithms x seeds, sweep settings) side by
    side in worker processes, each with its share of the threads (:mod:`starling_lib.parallel`).
    ``None``: one per torch thread on CPU (1 on a GPU); ``1``: one after another. Results do not depend on it."""


@dataclass
class DataConfig:
    """Which preference data a run reads."""

    source: str = "tinyworld"
    """``tinyworld`` (generated offline), a local JSONL/Parquet/rating-log path, or a hub id."""
    k: int = 7
    """Answers per prompt (Nectar has 7)."""
    strict: bool = True
    """Raise on the first malformed row (``True``) or drop bad rows and report counts."""
    max_prompts: int | None = None
    """Use at most this many prompts (``None``: all)."""


@dataclass
class TinyWorldConfig:
    """The synthetic Nectar-format world with a known gold reward."""

    n_prompts: int = 400
    """Prompts generated; each gets ``k`` answers from the simulated models."""
    k: int = 7
    """Answers per prompt."""
    temperature: float = 0.5
    """Plackett-Luce temperature when sampling ranks from gold rewards (0 = exact gold order)."""
    multi_turn_fraction: float = 0.2
    """Fraction of prompts with an earlier Human/Assistant exchange before the last question."""
    harmful_fraction: float = 0.15
    """Fraction of prompts that are not good natured (the harmless answer declines)."""
    seed: int = 0
    """Seed of the generator; the same seed gives byte-identical output."""


@dataclass
class TokenizerConfig:
    """Byte-level BPE tokenizer trained locally on tiny-world text."""

    vocab_size: int = 1024
    """Target vocabulary size, special tokens included. BPE stops early when the corpus runs out of
    pairs seen ``min_frequency`` times: the tiny-world corpus (a few hundred distinct words) fills
    about 1,000 entries, so a larger target would only be a promise the tokenizer cannot keep."""
    min_frequency: int = 2
    """Minimum pair frequency for a BPE merge."""
    n_corpus_prompts: int = 2000
    """Tiny-world prompts (with all their answers) used as the training corpus."""


@dataclass
class ModelConfig:
    """A causal LM or reward-model backbone: tiny from config, or pretrained by name."""

    name_or_path: str | None = None
    """Pretrained checkpoint (hub id or folder); when ``None`` a tiny model is built from config."""
    arch: str = "llama"
    """Tiny architecture: ``llama`` or ``mistral``."""
    hidden_size: int = 256
    """Width of the residual stream."""
    num_hidden_layers: int = 4
    """Transformer blocks."""
    num_attention_heads: int = 4
    """Query heads."""
    num_key_value_heads: int = 2
    """Key/value heads (grouped-query attention when fewer than query heads)."""
    intermediate_size: int = 688
    """MLP width."""
    max_position_embeddings: int = 512
    """Longest sequence the model accepts."""


@dataclass
class JudgeConfig:
    """An LLM judge behind any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, a local server)."""

    model: str = "tiny-judge"
    """Model name sent to the server (``gpt-4-0613`` in the paper)."""
    base_url: str | None = None
    """Endpoint; ``None`` reads ``$STARLING_JUDGE_BASE_URL`` then ``$OPENAI_BASE_URL`` (else OpenAI)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key; the key itself never lives in a config or file."""
    max_concurrency: int = 32
    """Requests in flight at once (async client)."""
    max_retries: int = 6
    """Retries per item on 429 / 5xx / timeouts / connection errors / malformed answers."""
    timeout_s: float = 120.0
    """Per-request timeout in seconds."""
    backoff_base_s: float = 1.0
    """First backoff delay; doubles per retry, with full jitter, unless the server sends Retry-After."""
    backoff_max_s: float = 60.0
    """Cap on one backoff delay (Retry-After included)."""
    temperature: float = 0.0
    """Sampling temperature sent with every request (part of the cache key)."""
    max_tokens: int = 2048
    """Completion token limit sent with every request (part of the cache key)."""
    context_tokens: int | None = None
    """The model's context window (prompt + completion tokens), checked before a run sends anything
    (:mod:`starling_lib.judge.context`); ``None``: as the server reports it, else unchecked; 0: no check."""
    cache_path: str | None = None
    """SQLite answer cache; ``None`` means ``<runs>/judge/cache.sqlite``."""
    prices: dict[str, list[float]] = field(default_factory=dict)
    """Overrides of the price table: ``{model: [usd_per_1M_input, usd_per_1M_output]}``."""


@dataclass
class BiasConfig:
    """The positional-bias study (Figure 6): which strategies, how many prompts, which judge."""

    strategies: list[str] = field(default_factory=lambda: [
        "no_pairwise", "pairwise_no_given_order", "pairwise_not_random",
        "baseline_no_tiebreak", "tiebreak_order_given", "tiebreak_order_given_static_2"])
    """Prompting strategies to run (names of the rating-log folders of the paper)."""
    n_prompts: int = 200
    """Tiny-world prompts ranked per strategy in the live study (the real logs have 181-199)."""
    judge: str = "server"
    """``simulated`` (in-process), ``server`` (simulated judge behind the local fake OpenAI server,
    through the real client), or ``api`` (the endpoint of :class:`JudgeConfig`)."""
    noise: float = 1.0
    """Gumbel noise scale of the simulated judge, in units of the gold reward's spread."""
    ci: str = "wilson"
    """Confidence intervals: ``wilson`` or ``bootstrap``."""
    confidence: float = 0.95
    """Confidence level of intervals."""
    n_bootstrap: int = 2000
    """Bootstrap resamples (when ``ci == 'bootstrap'``)."""
    power_n_grid: list[int] = field(default_factory=lambda: [25, 50, 100, 200, 400, 800])
    """Prompts per study at which the power analysis is evaluated."""
    power_n_sim: int = 400
    """Simulated studies per grid point in the power analysis."""


@dataclass
class RewardConfig:
    """Reward-model training: the loss, the backbone, the optimiser and the checkpointing."""

    loss_type: str = "kwise"
    """``kwise`` (Plackett-Luce over all K answers), ``pairwise`` (all K(K-1)/2 pairs) or ``adjacent``."""
    top_k: int | None = None
    """K-wise loss: score only the first ``top_k`` choices of each ranking (``None``: all)."""
    margin: float = 0.0
    """Pairwise losses: ``-log σ(r_i - r_j - margin)``."""
    backbone: str = "tiny"
    """``tiny`` (the preset's ``reward_model``: tiny config or its ``name_or_path``), ``minilm``
    (pretrained all-MiniLM-L6-v2 with a new head), or ``starling-rm:<trunk>`` (the Starling-RM
    format: a causal-LM trunk plus ``v_head``)."""
    max_length: int = 256
    """Tokens per prompt+answer; longer prompts are cut on the left, keeping the answer."""
    learning_rate: float = 1e-3
    """Peak learning rate (AdamW)."""
    optim: str | None = None
    """``TrainingArguments.optim`` (``None``: the Trainer's default, fused AdamW); ``sgd`` makes runs
    comparable across process counts (no per-coordinate normalisation to magnify rounding)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.0
    """Fraction of steps with linear warm-up."""
    lr_scheduler: str = "linear"
    """transformers scheduler name (``linear``, ``cosine``, ``constant``)."""
    epochs: float = 2.0
    """Passes over the training prompts."""
    max_steps: int = -1
    """Stop after this many optimiser steps (``-1``: run ``epochs``)."""
    prompts_per_batch: int = 8
    """Prompts per device per micro-batch; each brings all its K answers."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    eval_fraction: float = 0.2
    """Share of prompts held out for evaluation (split by prompt text, so a prompt is never on both sides)."""
    save_steps: int = 50
    """Checkpoint every this many optimiser steps (resume picks the latest)."""
    save_total_limit: int | None = 2
    """Checkpoints kept on disk (``None``: all)."""
    logging_steps: int = 5
    """Write a training-log line every this many steps."""
    deepspeed: str | None = None
    """DeepSpeed config file (``full``: ``configs/deepspeed_zero3.json``); needs ``pip install deepspeed``."""
    fsdp_config: str | None = None
    """FSDP config file for ``accelerate launch --config_file`` (an alternative to DeepSpeed)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (needed for a 7B trunk)."""


@dataclass
class RewardStudyConfig:
    """Sizes of notebook 02's three levels: theory, tiny world, real GPT-4 rankings."""

    theory_dim: int = 8
    """Feature dimension d of the linear reward ``r(x) = θ·φ(x)``."""
    theory_n_grid: list[int] = field(default_factory=lambda: [25, 50, 100, 200, 400, 800])
    """Numbers of ranked prompts at which both estimators are fitted."""
    theory_seeds: int = 20
    """Independent datasets per grid point (error bars)."""
    curve_n_prompts: list[int] = field(default_factory=lambda: [25, 50, 100])
    """Tiny world: training prompts per point of the learning curve (a point at 200 cost as much as
    the three below it together: 2 x 3 runs of ~12.5 s on a 2-core AMD Zen 3, fp32)."""
    curve_seeds: int = 2
    """Tiny world: seeds per point."""
    curve_epochs: float = 1.0
    """Tiny world: passes over the training prompts (the same for every loss and n)."""
    curve_eval_prompts: int = 100
    """Tiny world: held-out prompts (fresh, never trained on)."""
    curve_losses: list[str] = field(default_factory=lambda: ["kwise", "pairwise", "adjacent"])
    """Tiny world: losses compared."""
    real_max_prompts: int | None = None
    """Real rankings: use at most this many distinct prompts (``None``: all 199)."""
    real_max_length: int = 256
    """Real rankings: MiniLM tokens per prompt+answer."""
    real_folds: int = 5
    """Real rankings: cross-validation folds, split by prompt."""
    real_repeats: int = 4
    """Real rankings: repetitions of the cross-validation with fresh fold assignments."""
    real_l2: float = 1e-2
    """Real rankings: ridge penalty of the linear reward head (fixed in advance, not tuned on test folds)."""


@dataclass
class RewardBenchConfig:
    """Notebook 05: our reward models on the Starling authors' benchmark (``starling rm bench``)."""

    max_items: int | None = 250
    """Items per benchmark file that our models score (the first ones; ``None``: all 2,847). Encoding
    every response with MiniLM takes minutes on 2 CPU cores (3,436 texts of 1,530 items: 113 s on a
    2-core AMD Zen 3 in fp32), so tiny scores 780 items: 95 % intervals of about ±0.06 on an accuracy,
    still far from RM-34B's on human preference and safety. RM-34B's published row always uses every item."""
    losses: list[str] = field(default_factory=lambda: ["kwise", "pairwise"])
    """Losses of the MiniLM reward models fitted to the real GPT-4 rankings."""
    n_boot: int = 2000
    """Bootstrap resamples over items for every interval."""
    finetune_epochs: float = 0.0
    """Fine-tune the whole MiniLM on the GPT-4 rankings for this many epochs per loss (0: frozen
    heads only; on 2 CPU cores an epoch over the 1,143 rankings takes several minutes)."""
    finetune_learning_rate: float = 3e-5
    """AdamW peak learning rate when fine-tuning MiniLM."""


@dataclass
class SftConfig:
    """Supervised fine-tuning of the policy on tiny-world (or Nectar) answers: the RL starting point."""

    answers: str = "all"
    """Which answers of each prompt are targets: ``all`` K (a weak, average chat model) or ``best``
    (the rank-1 answer only, as in OpenChat-style SFT on good data)."""
    n_prompts: int = 300
    """Prompts whose answers are trained on."""
    epochs: float = 1.0
    """Passes over the examples."""
    learning_rate: float = 1e-3
    """Peak learning rate (AdamW, linear decay)."""
    batch_size: int = 32
    """Examples per optimiser step."""
    max_length: int = 192
    """Tokens per prompt+answer (longer examples are cut on the right)."""
    continue_start: bool = False
    """Sweeps (``starling policy sweep``): train from the sweep's own SFT start (this preset's ``sft``
    settings) instead of the untrained policy, as a later stage; with ``answers=best`` it is the
    stand-in for offline preference training (``starling sft train --answers best --policy DIR``)."""


@dataclass
class PolicyConfig:
    """APA / PPO / AWR / P3O policy tuning against a reward model (``starling apa train``)."""

    algo: str = "apa"
    """``apa`` (Zhu et al. 2023), ``ppo`` (clipped surrogate, Schulman et al. 2017), ``awr``, or
    ``p3o`` (Wu et al. 2023: two responses per prompt, their KL-penalised reward difference,
    trajectory-level clipped ratios, no critic, no GAE)."""
    apa_anchor: str = "init"
    """APA: ``init`` anchors the squared loss on the frozen initial policy, the official
    microsoft/RLHF-APA form (no KL term in the reward needed); ``rollout`` anchors on the policy
    that sampled the batch, the Starling fork (coefficient 1, KL penalty in the reward)."""
    apa_lambda: float = 0.3
    """APA's λ: the loss is ``(log π_θ − log π_anchor − Â/λ)²``, so ``adv_coeff_sq = 1/λ`` in the
    official code (which used 10, i.e. λ = 0.1). Smaller λ: larger steps away from the anchor. In
    pilot runs on the tiny world (whitened advantages, 60 iterations, 2 seeds), λ = 0.3 raised
    held-out gold reward by +0.42 on average, λ = 1 by +0.19."""
    kl_coef: float = 0.0
    """Per-token penalty ``−β (log π_old − log π_init)`` added to the reward (PPO's KL control; the
    Starling fork's APA; P3O's ``r̂``). 0 turns it off. With ``kl_target``, the initial β."""
    kl_target: float | None = None
    """Adaptive KL control (Ziegler et al. 2019, Sec. 2.2): after each iteration β is multiplied by
    ``1 + clip((KL − kl_target)/kl_target, ±0.2) · responses/kl_horizon``, where KL is the mean
    sequence KL ``Σ_t log π_old/π_init`` per response (the log's ``kl``, nats). ``None``: β fixed at
    ``kl_coef``. The β of each iteration is logged as ``kl_coef``."""
    kl_horizon: int = 10000
    """The adaptive controller's horizon, in **responses** (all processes): β moves by at most
    ``±0.2 · responses per iteration / kl_horizon`` per iteration (trl's and lm-human-preferences'
    10000; a short run needs a horizon near its own total responses for β to move at all)."""
    gamma: float = 1.0
    """GAE discount."""
    gae_lambda: float = 0.95
    """GAE λ."""
    whiten_advantages: bool = True
    """Standardise advantages over the rollout batch (masked, all processes)."""
    normalize_reward: bool = True
    """Divide scores by the running standard deviation of all scores seen (and centre them)."""
    reward_clip: float | None = 10.0
    """Clip (normalised) scores to ``±reward_clip`` (``None``: no clipping)."""
    cliprange: float = 0.2
    """PPO ratio clip ε."""
    cliprange_value: float = 0.2
    """Value clipping around the rollout values (PPO2 style); ``None`` turns it off."""
    vf_coef: float = 0.5
    """Weight of the value loss added to the policy loss."""
    awr_beta: float = 1.0
    """AWR temperature: weights ``exp(Â/β)``."""
    awr_max_weight: float = 20.0
    """AWR weight cap."""
    p3o_clipping: str = "joint"
    """P3O's trust region (Wu et al. 2023, Sec. 4.2): ``joint`` (P3O-V2: ``log(ρ1/ρ2)`` within
    ``±cliprange``, the first author's released code) or ``separate`` (P3O-V1: PPO's clip on each
    response's ratio ``ρ_i = π_θ(y_i|x)/π_old(y_i|x)``)."""
    p3o_weight_clip: float | None = 10.0
    """P3O: the importance weights ``sg(ρ1ρ2)`` (or ``sg(ρ_other)``) are clamped to ``[1/c, c]``
    (the released code's ``cliprange_ratio`` = 10); ``None``: no clamp."""
    critic: str = "separate"
    """``separate``: value head on a copy of the policy trunk (Starling); ``shared``: on the policy's
    own last hidden state (one forward, fewer parameters, the losses interact)."""
    unfreeze_last_n: int | None = None
    """Train only the last N transformer blocks (and the heads) of policy and critic; Starling used 4.
    ``None``: train everything."""
    lora_r: int = 0
    """LoRA rank through ``peft`` (0: off). With LoRA the reference policy is the model with its
    adapter disabled, so no second copy of the weights is kept."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Modules LoRA adapts."""
    learning_rate: float = 3e-4
    """Adam learning rate of the policy."""
    critic_learning_rate: float | None = None
    """Adam learning rate of the critic (``None``: the policy's)."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping (``None``: off)."""
    adam_beta1: float = 0.9
    """Adam β₁ (policy and critic)."""
    adam_beta2: float = 0.999
    """Adam β₂ (the authors' run: 0.95)."""
    adam_eps: float = 1e-6
    """Adam ε (the authors' run: 1e-8)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW; at 0 the same steps as Adam). The authors' run: 1e-6."""
    lr_scheduler: str = "constant"
    """``constant``, or ``cosine``: cosine annealing from the learning rates to ``lr_min`` over all
    the run's optimiser steps (the authors' run)."""
    lr_min: float = 0.0
    """Learning rate that ``cosine`` ends at (policy and critic)."""
    iterations: int = 40
    """Rollout-then-update rounds."""
    prompts_per_iteration: int = 16
    """Prompts sampled per rollout round (across all processes; one response each, two for
    ``p3o``, so P3O generates and scores twice as many responses per iteration)."""
    minibatch_size: int = 16
    """Responses per optimiser step (per process, summed over accumulation). ``p3o`` keeps each
    prompt's two responses in one micro-batch: ``minibatch_size / grad_accum`` must be even."""
    grad_accum: int = 1
    """Micro-batches per optimiser step: a minibatch is split into this many forward/backward passes."""
    epochs_per_rollout: int = 1
    """Passes over each rollout batch (PPO's ``ppo_epochs``)."""
    max_prompt_length: int = 128
    """Prompt tokens kept (cut on the left)."""
    max_new_tokens: int = 64
    """Response tokens sampled at most."""
    temperature: float = 1.0
    """Sampling temperature of rollouts."""
    top_p: float = 1.0
    """Nucleus sampling of rollouts (1.0: off)."""
    rm_max_length: int = 256
    """Tokens per prompt+response given to the reward model."""
    save_every: int = 10
    """Checkpoint every this many iterations (and at the end); resume takes the latest."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (7B)."""


@dataclass
class PolicyStudyConfig:
    """Sizes of notebook 03: SFT start, proxy reward model, APA vs PPO over seeds."""

    world_prompts: int = 4000
    """Tiny-world rows generated; their distinct prompts (about 990 of 4,000: single-turn prompts
    repeat) are split into SFT, reward-model, held-out and RL parts."""
    rm_prompts: int = 300
    """Prompts the proxy reward model is trained on (notebook 02's trainer, ``preset.reward``)."""
    eval_prompts: int = 192
    """Held-out prompts whose sampled answers measure gold and proxy reward before and after."""
    algos: list[str] = field(default_factory=lambda: ["apa", "ppo"])
    """Algorithms compared, each from the same SFT start with the same budget."""
    seeds: int = 3
    """Seeds per algorithm (bands in the plots)."""
    sample_table_rows: int = 6
    """Prompts in the before/after sample table."""


@dataclass
class DpoConfig:
    """DPO (Rafailov et al. 2023) with TRL's ``DPOTrainer`` on pairs from rankings (``starling dpo train``)."""

    pair_rule: str = "best_vs_worst"
    """Pairs per ranking: ``best_vs_worst`` (1), ``adjacent`` (K-1) or ``all`` (K(K-1)/2)."""
    max_pairs: int | None = None
    """Train on a seeded random subset of this many pairs (``None``: all)."""
    beta: float = 0.1
    """DPO's β: the implicit reward is ``β log π/π_ref``; larger β keeps the policy nearer the start."""
    loss_type: str = "sigmoid"
    """TRL's ``loss_type`` (``sigmoid``: the DPO paper's loss; ``ipo``, ``hinge``, ...)."""
    learning_rate: float = 1e-4
    """Peak learning rate (AdamW, linear decay)."""
    epochs: float = 1.0
    """Passes over the pairs."""
    max_steps: int = -1
    """Stop after this many optimiser steps (``-1``: run ``epochs``)."""
    batch_size: int = 16
    """Pairs per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimiser step."""
    max_length: int = 192
    """Tokens per prompt+answer (longer ones are cut on the right)."""
    precompute_ref: bool = True
    """Compute the reference (start) policy's log-probabilities of every pair once before training
    instead of keeping a frozen copy of the model."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (7B)."""


@dataclass
class EvalConfig:
    """MT-Bench and AlpacaEval: answer generation and judging (notebook 04, ``starling mt-bench``,
    ``starling alpaca-eval``); the judge itself is ``Preset.judge``."""

    mt_bench_dir: str | None = None
    """Folder in FastChat's layout (``question.jsonl``, ``judge_prompts.jsonl``, ``reference_answer/``);
    ``None``: the project's demo set (``data/mt_bench_demo``); ``shared``: ``../shared/data/mt_bench``."""
    mt_bench_questions: int | None = None
    """Use only the first N questions (``None``: all)."""
    alpaca_instructions: int | None = None
    """Instructions of the tiny world's AlpacaEval demo set (``None``: all 168)."""
    alpaca_reference: str = "tiny-rambler"
    """Simulated model whose answers are the demo set's reference outputs (a long-winded, middling one)."""
    alpaca_style: str = "weighted"
    """AlpacaEval annotator style: ``weighted`` (one-token verdict, log-probabilities) or ``ranking``."""
    alpaca_judge_model: str | None = None
    """Judge model for AlpacaEval (``None``: ``judge.model``); AlpacaEval 2 used gpt-4-1106-preview."""
    alpaca_temperatures: list[float] = field(default_factory=lambda: [0.0, 1.0])
    """Decoding temperatures the demo's policies answer the AlpacaEval set at (greedy, and the RL
    sampling temperature)."""
    max_new_tokens: int = 64
    """Longest answer per turn (FastChat: 1024)."""
    batch_size: int = 32
    """Conversations generated at once."""


@dataclass
class Preset:
    """A named bundle of stage configs; pass it (or one of its fields) to library calls."""

    name: str
    """``smoke``, ``tiny`` or ``full`` (or a user's own)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Device, precision and seed."""
    data: DataConfig = field(default_factory=DataConfig)
    """Preference data source."""
    world: TinyWorldConfig = field(default_factory=TinyWorldConfig)
    """Synthetic world (used when ``data.source == 'tinyworld'``)."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Tokenizer trained for tiny models."""
    policy_model: ModelConfig = field(default_factory=ModelConfig)
    """The policy (chat) model: tiny Llama here, OpenChat 3.5 in ``full``."""
    reward_model: ModelConfig = field(default_factory=ModelConfig)
    """The reward-model backbone: tiny Llama here, Llama-2-7b-chat (Starling-RM) in ``full``."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """The LLM judge: the local fake server here, GPT-4 (gpt-4-0613) in ``full``."""
    bias: BiasConfig = field(default_factory=BiasConfig)
    """The positional-bias study of notebook 01."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Reward-model training (notebook 02, ``starling rm train``)."""
    rm_study: RewardStudyConfig = field(default_factory=RewardStudyConfig)
    """The K-wise vs pairwise study of notebook 02."""
    rm_bench: RewardBenchConfig = field(default_factory=RewardBenchConfig)
    """The reward-model benchmark of notebook 05."""
    sft: SftConfig = field(default_factory=SftConfig)
    """Supervised fine-tuning of the policy before RL (notebook 03)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """APA / PPO tuning (notebook 03, ``starling apa train``)."""
    policy_study: PolicyStudyConfig = field(default_factory=PolicyStudyConfig)
    """The APA vs PPO study of notebook 03."""
    dpo: DpoConfig = field(default_factory=DpoConfig)
    """DPO from the SFT start on ranked pairs (``starling dpo train``)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """MT-Bench and AlpacaEval (notebook 04)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _smoke() -> Preset:
    return Preset(
        name="smoke",
        world=TinyWorldConfig(n_prompts=60),
        tokenizer=TokenizerConfig(vocab_size=512, n_corpus_prompts=200),
        policy_model=ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, intermediate_size=172,
                                 max_position_embeddings=256),
        reward_model=ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 num_key_value_heads=1, intermediate_size=172,
                                 max_position_embeddings=256),
        data=DataConfig(max_prompts=60),
        bias=BiasConfig(n_prompts=40, power_n_grid=[25, 50, 100, 200], power_n_sim=100, n_bootstrap=300),
        reward=RewardConfig(max_length=128),
        rm_study=RewardStudyConfig(theory_n_grid=[25, 50, 100, 200], theory_seeds=8, curve_n_prompts=[15, 45],
                                   curve_seeds=1, curve_epochs=3, curve_eval_prompts=40, real_max_prompts=30, real_max_length=128,
                                   real_folds=3, real_repeats=1),
        rm_bench=RewardBenchConfig(max_items=24, n_boot=200),
        sft=SftConfig(n_prompts=60),
        policy=PolicyConfig(iterations=3, prompts_per_iteration=8, minibatch_size=8, max_new_tokens=24,
                            max_prompt_length=96, rm_max_length=128, save_every=2),
        policy_study=PolicyStudyConfig(world_prompts=300, rm_prompts=40, eval_prompts=16, seeds=2,
                                       sample_table_rows=3),
        dpo=DpoConfig(max_pairs=32, learning_rate=5e-4),
        eval=EvalConfig(mt_bench_questions=8, alpaca_instructions=24, max_new_tokens=24),
    )


def _tiny() -> Preset:
    # Sized for the 15-minute budget in fp32 on a 2-core CPU without bf16 (issue 15): a policy of 2
    # blocks at width 256 (1.96M parameters; it fits the SFT data better than 4 blocks at width 128,
    # loss 1.18 vs 2.69) and a reward model of 4 blocks at width 128 (the same held-out gold accuracy
    # as width 256, 0.869 vs 0.855, in a third of the time). Notebook 03 ran 740 s -> 315 s in fp32.
    return Preset(
        name="tiny",
        policy_model=ModelConfig(num_hidden_layers=2),
        reward_model=ModelConfig(hidden_size=128, intermediate_size=344),
    )


def _full() -> Preset:
    return Preset(
        name="full",
        data=DataConfig(source="berkeley-nest/Nectar"),
        # The paper's models: Starling-LM-7B-alpha was tuned from OpenChat 3.5; Starling-RM-7B-alpha
        # is a Llama-2-7b-chat trunk with a scalar head.
        policy_model=ModelConfig(name_or_path="openchat/openchat_3.5", max_position_embeddings=8192),
        reward_model=ModelConfig(name_or_path="meta-llama/Llama-2-7b-chat-hf",
                                 max_position_embeddings=4096),
        tokenizer=TokenizerConfig(),
        judge=JudgeConfig(model="gpt-4-0613", max_concurrency=16),
        bias=BiasConfig(judge="api", n_prompts=200),
        # Starling-RM: 7B trunk, 2048 tokens per answer, one prompt (7 answers) per GPU per micro-batch;
        # launch with a config from configs/ (DeepSpeed ZeRO-3 or FSDP), see configs/README.md.
        reward=RewardConfig(learning_rate=1e-5, max_length=2048, prompts_per_batch=1, grad_accum=8, epochs=1,
                            warmup_ratio=0.03, lr_scheduler="cosine", save_steps=500, logging_steps=10,
                            eval_fraction=0.01, gradient_checkpointing=True),
        # Starling-LM-7B-alpha: OpenChat 3.5 tuned with APA against Starling-RM, only the last 4
        # transformer blocks (and the heads) trained, the critic a separate copy of the trunk. Data
        # parallel under torchrun (one full copy per GPU; see configs/README.md for the memory
        # arithmetic); 128 responses per iteration over all processes, 8 per process per step.
        sft=SftConfig(answers="best", n_prompts=183_000, learning_rate=2e-5, batch_size=8, max_length=2048),
        policy=PolicyConfig(unfreeze_last_n=4, apa_lambda=0.1, learning_rate=1e-6, critic_learning_rate=1e-5,
                            iterations=1000, prompts_per_iteration=128, minibatch_size=8, grad_accum=2,
                            max_prompt_length=1024, max_new_tokens=1024, rm_max_length=2048, save_every=50,
                            gradient_checkpointing=True),
        # FastChat's MT-Bench (80 questions, GPT-4 judge) and AlpacaEval 2 (805 instructions, GPT-4-turbo
        # weighted annotator); answers up to 1024 new tokens, as FastChat's gen_model_answer.
        eval=EvalConfig(mt_bench_dir="shared", alpaca_judge_model="gpt-4-1106-preview", max_new_tokens=1024,
                        batch_size=8),
        # Every benchmark item, and MiniLM fine-tuned end to end on the GPT-4 rankings (one epoch per loss).
        rm_bench=RewardBenchConfig(max_items=None, finetune_epochs=1.0),
        # DPO from the SFT start at Zephyr's settings (Tunstall et al. 2023: β 0.1, lr 5e-7, one epoch), one
        # best-vs-worst pair per Nectar ranking; 4 x 4 pairs per GPU per step.
        dpo=DpoConfig(learning_rate=5e-7, batch_size=4, grad_accum=4, max_length=2048, gradient_checkpointing=True),
    )


def _starling_apa() -> Preset:
    """The authors' run: the Starling trlx fork's ``examples/hh/mistral_apa.py`` (thwu1/trlx, the
    version with ``model_path="openchat/openchat_3.5"`` and ``lr=2e-7``), launched with
    ``accelerate launch --num_processes 2 --config_file zero2-bf16.yaml`` (DeepSpeed ZeRO-2, bf16,
    gradient clipping 1.0), in this repository's loop. Everything else is ``full``'s.

    Read off that file and the fork's trainer (``accelerate_ppo_trainer.py``, ``modeling_ppo.py``):
    OpenChat 3.5 with ``num_layers_unfrozen=4``; a value branch of the last 4 blocks; APA as the fork
    writes it, ``(log π_θ − log π_old − Â)²`` (``apa_anchor="rollout"``, coefficient 1) with a fixed
    per-token KL penalty 0.01 in the reward; AdamW lr 2e-7, β 0.9/0.95, ε 1e-8, weight decay 1e-6,
    cosine annealing with ``eta_min`` = the learning rate (so the rate stays at 2e-7); γ = 1, GAE
    λ = 0.95, no advantage whitening (the fork's ``use_whitening=False``); value clip 0.2, vf_coef 1;
    running reward scaling with reward clip 10; 64 rollouts per process per iteration (trlx counts
    ``num_rollouts`` per process: 128 over the 2 processes), 2 epochs over them in minibatches of 4
    per process; sampling at temperature 1, top_k 0, top_p 1, up to 1,024 new tokens; sequences of
    2,148 tokens, so prompts keep their last 1,124; the reward model reads 2,048 tokens.
    ``total_steps=20000`` optimiser steps at 32 per iteration (64 / 4 × 2 epochs) is 625 iterations.

    What still differs, and why (configs/README.md has the longer list):

    - Reward scaling: trlx clips the raw score at ±10, then divides by the running standard
      deviation without centring; ours centres and scales, then clips (``normalize_reward`` has no
      scale-only mode).
    - Rollouts: trlx samples 4 prompts at a time per process and stops at the strings
      ``GPT4 Correct User:`` / ``GPT4 Correct Assistant:``; ours samples a process's whole share at
      once and stops at the end-of-turn token (the loop has no chunk size or stop strings).
    - Reward model text: the fork scores ``[INST] {user} [/INST] {answer}</s>`` padded to 2,048 and
      reads the score at the last of those positions (its ``PAD_ID`` is ``<s>``'s id); ours renders
      the reward tokenizer's chat template and reads the last real token
      (:mod:`starling_lib.reward.starling_rm` documents the published rule).
    - Networks: the fork's critic and reference are branches of the last 4 blocks off the shared
      frozen trunk; ours are a trunk copy and a full frozen copy (the same values and
      log-probabilities, more memory: ``starling plan --preset starling-apa --layout hydra``).
      Its value head has no bias and a random start; ours has a bias and starts at zero.
    - One stored version of the fork's ``PPOConfig.loss`` trains only the value head while the value
      loss exceeds 1; ours always adds both losses.
    - Data: the fork's prompts are ``ThWu/rlhf_cleaned_prompt`` (not in Nectar's format); ours are
      Nectar's. No evaluation every 500 steps inside the loop; seeds are not comparable.
    - Precision: DeepSpeed keeps bf16 weights with fp32 master copies; the loop computes under bf16
      autocast (``runtime.dtype``) with fp32 trainable weights.
    """
    preset = _full()
    preset.name = "starling-apa"
    # The published reward model's layout (trunk + v_head), so `starling rm train --preset starling-apa`
    # writes what the authors' RL loaded (berkeley-nest/Starling-RM-7B-alpha).
    preset.reward.backbone = "starling-rm:meta-llama/Llama-2-7b-chat-hf"
    preset.policy = PolicyConfig(
        algo="apa", apa_anchor="rollout", apa_lambda=1.0, kl_coef=0.01,
        gamma=1.0, gae_lambda=0.95, whiten_advantages=False, normalize_reward=True, reward_clip=10.0,
        cliprange=0.2, cliprange_value=0.2, vf_coef=1.0, critic="separate", unfreeze_last_n=4,
        learning_rate=2e-7, critic_learning_rate=None, max_grad_norm=1.0,
        adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, weight_decay=1e-6, lr_scheduler="cosine", lr_min=2e-7,
        iterations=625, prompts_per_iteration=128, minibatch_size=4, grad_accum=1, epochs_per_rollout=2,
        max_prompt_length=1124, max_new_tokens=1024, temperature=1.0, top_p=1.0, rm_max_length=2048,
        save_every=16, gradient_checkpointing=False)
    return preset


PRESETS: dict[str, typing.Callable[[], Preset]] = {"smoke": _smoke, "tiny": _tiny, "full": _full,
                                                   "starling-apa": _starling_apa}
DEFAULT_PRESET = "tiny"


def get_preset(name: str = DEFAULT_PRESET, overrides: typing.Iterable[str] = ()) -> Preset:
    """A fresh copy of preset ``name`` with ``section.field=value`` overrides applied."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[name]()
    for item in overrides:
        apply_override(preset, item)
    return preset


def apply_override(preset: Preset, item: str) -> None:
    """Set ``section.field=value`` in place, converting ``value`` to the field's type."""
    key, sep, raw = item.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"override {item!r} must look like section.field=value, e.g. world.n_prompts=50")
    section_name, field_name = key.strip().split(".", 1)
    section = getattr(preset, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        sections = [f.name for f in dataclasses.fields(preset) if dataclasses.is_dataclass(getattr(preset, f.name))]
        raise ValueError(f"override {item!r}: no config section {section_name!r}; sections: {sections}")
    hints = typing.get_type_hints(type(section))
    if field_name not in hints:
        raise ValueError(f"override {item!r}: {type(section).__name__} has no field {field_name!r}; "
                         f"fields: {sorted(hints)}")
    setattr(section, field_name, _coerce(raw.strip(), hints[field_name], item))


def _coerce(raw: str, hint, item: str):
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        # Lists: JSON (``[25, 50]``) or comma-separated (``no_pairwise,baseline_no_tiebreak``);
        # dicts: JSON only.
        if origin is dict or raw.startswith("["):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"override {item!r}: cannot read {raw!r} as JSON: {exc}") from None
            if not isinstance(value, origin):
                raise ValueError(f"override {item!r}: expected a JSON {origin.__name__}, got {raw!r}")
            return value
        (element,) = typing.get_args(hint) or (str,)
        return [_coerce(part.strip(), element, item) for part in raw.split(",") if part.strip()]
    args = typing.get_args(hint)
    if raw.lower() in ("none", "null") and type(None) in args:
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if base is bool:
            if raw.lower() in ("1", "true", "yes"):
                return True
            if raw.lower() in ("0", "false", "no"):
                return False
            raise ValueError("expected true or false")
        return base(raw)
    except ValueError as exc:
        raise ValueError(f"override {item!r}: cannot read {raw!r} as {getattr(base, '__name__', base)}: {exc}") from None
