"""Memory planner for a policy run: bytes per GPU under DDP, ZeRO-2, ZeRO-3 and FSDP, with no GPU.

What it is for: ``starling plan --preset full --gpus 8 --json`` says, before anyone rents a node,
what each GPU holds when :func:`starling_lib.policy.train.train_policy` tunes the preset's policy,
and which distribution strategy fits. Nothing is loaded or downloaded.

How it counts:

1. **Architectures.** The preset's policy and reward model are built with ``transformers`` on the
   meta device (shapes, no storage) from configs written out below from the published
   ``config.json`` values (:data:`PUBLISHED_CONFIGS`; there is no hub access here). Tiny presets
   use their own shapes at the tokenizer's target vocabulary.
2. **What the loop holds** (``layout``). ``copies``: the loop's own objects, made by running
   :func:`~starling_lib.policy.train.build_actor_critic` on the meta policy: the policy (its
   trainable part per ``unfreeze_last_n`` / LoRA), the critic (a copy of the trunk plus a value
   head, or only the head when ``critic="shared"``), the frozen reference (none with LoRA), and the
   frozen reward model. ``hydra``: the Starling trlx fork's arrangement
   (``MistralModelWithHydraValueHead``): the critic and the reference are branches of only the
   last ``unfreeze_last_n`` blocks that read the frozen trunk's hidden state, so the frozen blocks
   exist once.
3. **Bytes per parameter**, mixed precision with bf16 compute and fp32 Adam state (Rajbhandari et
   al. 2020, ZeRO, §3.1: 2 + 2 + K bytes with K = 12 for fp32 master weights and two moments).
   ``T``: trainable parameters, ``F``: frozen parameters of the trained model(s), ``X``: separate
   frozen models (reference, reward model), ``N``: GPUs::

       strategy  weights                       gradients  optimiser state
       ddp       4T (fp32) + 2F + 2X (bf16)     4T         8T  (Adam m, v)
       zero2     2T + 2F + 2X (bf16)            2T/N       12T/N (fp32 master, m, v)
       zero3     (2T + 2F)/N + 2X               2T/N       12T/N
       fsdp      4T/N (fp32) + 2F/N + 2X        4T/N       8T/N

   DDP and FSDP keep fp32 weights and compute under autocast; DeepSpeed keeps bf16 weights and
   its own fp32 master copy. With ``shard_frozen`` ZeRO-3 and FSDP shard ``X`` too (2X/N).
   ZeRO-3 and FSDP also hold the gathered bf16 parameters of the unit being computed and of the
   prefetched next one (``2 × 2 × largest unit``, a decoder block or the embedding).
4. **Activations of one micro-batch** (``b = minibatch_size / grad_accum`` sequences of
   ``s = max_prompt_length + max_new_tokens`` tokens), counted per decoder block the way Korthikanti
   et al. 2022 (arXiv 2205.05198, §4.1, eq. 1: ``sbh(34 + 5as/h)`` bytes for a GPT block) count
   them, for a Llama/Mistral block (RMSNorm, grouped-query attention through SDPA so no ``s × s``
   matrix is stored, SwiGLU, no dropout), 2 bytes per stored value::

       per block  = s·b·(12h + 4h_kv + 8I)      h_kv = key/value heads × head size, I = MLP width
                    attention: norm input, its output, q, k, v, attention output  = 8h + 4h_kv
                    MLP: norm input, its output, gate, SiLU(gate), up, their product = 4h + 8I
       checkpointed block = 2·s·b·h (its input), plus one whole block recomputed at a time
       heads      = 4·s·b·h per network (final norm input and output) + logits: 2·s·b·V (bf16)
                    + 8·b·R·V (fp32 copy of the response logits and their log-softmax), R = max_new_tokens

   Only blocks that gradients pass through store anything: with ``unfreeze_last_n = n`` the last
   ``n`` of the policy and of a separate critic; the frozen blocks below run without a graph.
5. **The rollout** (no gradients) on ``B = ⌈prompts_per_iteration / N⌉`` prompts per GPU, all at
   once as the loop samples them (``rollout_batch`` sets another ``B``): the KV cache, ``4·L·s·B·h_kv`` bytes, or the scoring forward's
   logits, ``B·(2sV + 16RV)`` (bf16 logits; log-probabilities and entropy in fp32), whichever is
   larger. The peak is the static memory plus the larger of the update's and the rollout's.

Not counted: the CUDA context and allocator slack (1-3 GiB in practice), DDP's communication
buckets (a second copy of the gradients unless ``gradient_as_bucket_view=True``), DeepSpeed's
reduce and all-gather buckets (set in its config), and the reward model's working memory.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from starling_lib.config import ModelConfig, Preset

STRATEGIES = ("ddp", "zero2", "zero3", "fsdp")
LAYOUTS = ("copies", "hydra")
GIB = 2 ** 30

# Published hyperparameters (each model's config.json), written out because there is no hub access.
_MISTRAL_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                   rope_theta=10000.0, sliding_window=4096, rms_norm_eps=1e-5, tie_word_embeddings=False)
_LLAMA_2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                   num_attention_heads=32, num_key_value_heads=32, head_dim=128, max_position_embeddings=4096,
                   rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
PUBLISHED_CONFIGS: dict[str, tuple[str, dict]] = {
    "mistralai/Mistral-7B-v0.1": ("mistral", _MISTRAL_7B),
    # OpenChat 3.5 is Mistral-7B with two tokens added to the vocabulary (<|end_of_turn|> = 32000,
    # <|pad_0|> = 32001) and an 8,192-token window.
    "openchat/openchat_3.5": ("mistral", {**_MISTRAL_7B, "vocab_size": 32002, "max_position_embeddings": 8192}),
    "meta-llama/Llama-2-7b-hf": ("llama", _LLAMA_2_7B),
    "meta-llama/Llama-2-7b-chat-hf": ("llama", _LLAMA_2_7B),
}


# ----------------------------------------------------------------------------------------------
# Architectures on the meta device

def architecture_config(model: ModelConfig, vocab_size: int):
    """The ``transformers`` config of ``model``: published values for a known hub id, the tiny
    shape (at ``vocab_size``) when ``name_or_path`` is None; ``ValueError`` for any other name."""
    from transformers import LlamaConfig, MistralConfig

    classes = {"llama": LlamaConfig, "mistral": MistralConfig}
    if model.name_or_path is None:
        from starling_lib.models import tiny_model_config

        return tiny_model_config(model, _Vocabulary(vocab_size))
    if model.name_or_path not in PUBLISHED_CONFIGS:
        raise ValueError(f"no published config written out for {model.name_or_path!r} (the planner has no hub "
                         f"access); known: {sorted(PUBLISHED_CONFIGS)}")
    arch, values = PUBLISHED_CONFIGS[model.name_or_path]
    return classes[arch](**values)


class _Vocabulary:
    """Stands in for a tokenizer where only its size matters (a tiny preset's target vocabulary)."""

    bos_token_id = eos_token_id = pad_token_id = None

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def meta_model(config, kind: str = "causal") -> nn.Module:
    """``config``'s causal LM (``kind="causal"``) or 1-label sequence classifier (``"reward"``) on the
    meta device: every parameter has its shape and dtype, none has storage."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    with torch.device("meta"):
        if kind == "reward":
            config = copy.deepcopy(config)
            config.num_labels = 1
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForCausalLM.from_config(config)


def count(module: nn.Module | None) -> tuple[int, int]:
    """(parameters, trainable parameters), each shared tensor once."""
    if module is None:
        return 0, 0
    params = {id(p): p for p in module.parameters()}.values()
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def layers_with_gradients(layers) -> int:
    """Blocks that store activations for the backward pass: from the first block with a trainable
    parameter to the last (gradients flow through every block above it)."""
    for i, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return len(layers) - i
    return 0


@dataclass
class Network:
    """One network the run holds: where it lives, its size, what trains."""

    name: str
    """``policy``, ``critic``, ``reference`` or ``reward_model``."""
    architecture: str
    """Model class and where its config came from."""
    params: int
    """Parameters (shared tensors once)."""
    trainable: int
    """Parameters with gradients and optimiser state."""
    trained_blocks: int
    """Decoder blocks that store activations in the update."""
    in_engine: bool
    """Part of the model the engine (DDP / DeepSpeed / FSDP) prepares; ``False``: a separate frozen model."""


def build_networks(preset: Preset, layout: str = "copies") -> tuple[list[Network], dict]:
    """The networks the run holds (see the module docstring) and the shapes the activation formulas
    need: ``hidden``, ``kv_width``, ``intermediate``, ``layers``, ``vocab``, ``largest_unit``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    from starling_lib.policy.models import transformer_layers
    from starling_lib.policy.train import build_actor_critic, check_config

    cfg = dataclasses.replace(preset.policy, gradient_checkpointing=False)  # a flag, not a parameter
    check_config(cfg)
    vocab = preset.tokenizer.vocab_size
    policy_config = architecture_config(preset.policy_model, vocab)
    reward_config = architecture_config(preset.reward_model, vocab)
    policy_name = f"{type(policy_config).__name__.removesuffix('Config')}ForCausalLM"
    source = preset.policy_model.name_or_path or f"tiny {preset.name}"
    rm_source = preset.reward_model.name_or_path or f"tiny {preset.name}"
    policy = meta_model(policy_config)
    with torch.device("meta"):
        if layout == "copies":
            model, reference = build_actor_critic(policy, cfg)
            critic_modules = [model.v_head] + ([model.critic_trunk] if model.critic_trunk is not None else [])
            critic_blocks = layers_with_gradients(model.critic_trunk.layers) if model.critic_trunk is not None else 0
            policy_module, critic_name = model.policy, ("trunk copy + value head" if cfg.critic == "separate"
                                                        else "value head on the policy's last hidden state")
            reward = meta_model(reward_config, "reward")
            reward_name = f"{type(reward).__name__} ({rm_source})"
        else:
            policy_module, critic_modules, critic_blocks, reference, critic_name = _hydra(policy, cfg)
            reward = meta_model(reward_config)  # the fork's reward model keeps the whole causal LM ...
            reward.v_head = nn.Linear(reward_config.hidden_size, 1, bias=False)  # ... plus its v_head
            reward_name = f"{type(reward).__name__} + v_head ({rm_source})"
    reward.requires_grad_(False)
    critic_params = [count(m) for m in critic_modules]
    networks = [
        Network("policy", f"{policy_name} ({source})", *count(policy_module),
                layers_with_gradients(transformer_layers(policy_module)), True),
        Network("critic", critic_name, sum(c[0] for c in critic_params), sum(c[1] for c in critic_params),
                critic_blocks, True),
        Network("reference", "frozen copy of the policy" if layout == "copies" else "frozen head: last blocks + lm_head",
                *count(reference), 0, layout == "hydra"),
        Network("reward_model", reward_name, *count(reward), 0, False),
    ]
    if reference is None:
        networks[2] = dataclasses.replace(networks[2], architecture="none: the policy with its LoRA adapters off")
    trunk = policy.get_decoder()
    block = count(trunk.layers[0])[0]
    shapes = {"hidden": policy_config.hidden_size, "layers": policy_config.num_hidden_layers,
              "kv_width": policy_config.num_key_value_heads * _head_dim(policy_config),
              "intermediate": policy_config.intermediate_size, "vocab": policy_config.vocab_size,
              "largest_unit": max(block, trunk.embed_tokens.weight.numel())}
    return networks, shapes


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _hydra(policy, cfg):
    """(policy, critic modules, critic's trained blocks, frozen head, name) as the Starling trlx fork
    builds them (``MistralModelBranch``: a copy of the embedding, the last ``n`` blocks, the final
    norm and a head) for ``num_layers_unfrozen = n``."""
    n = cfg.unfreeze_last_n
    if not n or cfg.lora_r:
        raise ValueError("layout 'hydra' needs policy.unfreeze_last_n (and no LoRA): the branches are the last blocks")
    from starling_lib.policy.models import freeze_all_but_last

    trunk = policy.get_decoder()

    def branch(head: nn.Module) -> nn.ModuleDict:
        return nn.ModuleDict({"embed_tokens": copy.deepcopy(trunk.embed_tokens).requires_grad_(False),
                              "layers": copy.deepcopy(trunk.layers[-n:]), "norm": copy.deepcopy(trunk.norm),
                              "head": head})

    frozen_head = branch(copy.deepcopy(policy.lm_head)).requires_grad_(False)
    freeze_all_but_last(policy, n)  # trlx's freeze_bottom_causal_layers: the same parameters train
    critic = branch(nn.Linear(trunk.config.hidden_size, 1, bias=False))
    critic["embed_tokens"].requires_grad_(False)
    critic["layers"].requires_grad_(True)
    return policy, [critic], n, frozen_head, f"value branch: last {n} blocks + value head"


# ----------------------------------------------------------------------------------------------
# Bytes

def block_activation_bytes(seq: int, batch: int, hidden: int, kv_width: int, intermediate: int) -> int:
    """Stored activations of one Llama/Mistral block in the backward pass (module docstring, item 4)."""
    return seq * batch * (12 * hidden + 4 * kv_width + 8 * intermediate)


def activation_bytes(preset: Preset, networks: list[Network], shapes: dict) -> dict:
    """The update's activations per GPU for one micro-batch, with and without checkpointing."""
    cfg = preset.policy
    b, s, r = cfg.minibatch_size // cfg.grad_accum, cfg.max_prompt_length + cfg.max_new_tokens, cfg.max_new_tokens
    h, v = shapes["hidden"], shapes["vocab"]
    block = block_activation_bytes(s, b, h, shapes["kv_width"], shapes["intermediate"])
    blocks = sum(n.trained_blocks for n in networks)
    heads = 2 * 4 * s * b * h + 2 * s * b * v + 8 * b * r * v  # policy and critic norms; logits
    without = blocks * block + heads
    with_checkpointing = blocks * 2 * s * b * h + (block if blocks else 0) + heads
    return {"micro_batch": b, "seq_len": s, "response_len": r, "trained_blocks": blocks, "per_block": block,
            "heads": heads, "without_checkpointing": without, "with_checkpointing": with_checkpointing,
            "gradient_checkpointing": cfg.gradient_checkpointing,
            "used": with_checkpointing if cfg.gradient_checkpointing else without}


def rollout_bytes(preset: Preset, shapes: dict, gpus: int, batch: int | None = None) -> dict:
    """The rollout's peak per GPU (module docstring, item 5) for ``batch`` prompts sampled at once
    (``None``: the loop's, a GPU's whole share)."""
    cfg = preset.policy
    batch = batch or math.ceil(cfg.prompts_per_iteration / gpus)
    s, r, v = cfg.max_prompt_length + cfg.max_new_tokens, cfg.max_new_tokens, shapes["vocab"]
    kv_cache = 4 * shapes["layers"] * s * batch * shapes["kv_width"]
    scoring = batch * (2 * s * v + 16 * r * v)
    return {"batch": batch, "kv_cache": kv_cache, "scoring_logits": scoring, "used": max(kv_cache, scoring)}


def _shard(n_bytes: int, gpus: int) -> int:
    return math.ceil(n_bytes / gpus)


def strategy_bytes(strategy: str, trainable: int, frozen_in: int, frozen_out: int, gpus: int,
                   largest_unit: int, shard_frozen: bool = False) -> dict:
    """Static bytes per GPU of ``strategy`` (module docstring, item 3): weights by dtype, gradients,
    optimiser state by part, gathered parameters."""
    t, f, x, n = trainable, frozen_in, frozen_out, gpus
    outside = _shard(2 * x, n) if shard_frozen and strategy in ("zero3", "fsdp") else 2 * x
    gathered = 2 * 2 * largest_unit if strategy in ("zero3", "fsdp") else 0
    if strategy == "ddp":
        weights, grads, optim = {"fp32": 4 * t, "bf16": 2 * (f + x)}, 4 * t, {"adam_m": 4 * t, "adam_v": 4 * t}
    elif strategy == "zero2":
        weights, grads = {"fp32": 0, "bf16": 2 * (t + f + x)}, _shard(2 * t, n)
        optim = {"fp32_master": _shard(4 * t, n), "adam_m": _shard(4 * t, n), "adam_v": _shard(4 * t, n)}
    elif strategy == "zero3":
        weights, grads = {"fp32": 0, "bf16": _shard(2 * (t + f), n) + outside}, _shard(2 * t, n)
        optim = {"fp32_master": _shard(4 * t, n), "adam_m": _shard(4 * t, n), "adam_v": _shard(4 * t, n)}
    elif strategy == "fsdp":
        weights, grads = {"fp32": _shard(4 * t, n), "bf16": _shard(2 * f, n) + outside}, _shard(4 * t, n)
        optim = {"adam_m": _shard(4 * t, n), "adam_v": _shard(4 * t, n)}
    else:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    static = sum(weights.values()) + grads + sum(optim.values()) + gathered
    return {"weights": weights, "gradients": grads, "optimizer": optim, "gathered": gathered, "static": static}


# ----------------------------------------------------------------------------------------------
# The plan

@dataclass
class MemoryPlan:
    """What :func:`plan_memory` returns; ``to_dict()`` is ``starling plan --json``."""

    preset: str
    gpus: int
    gpu_memory_gib: float
    layout: str
    networks: list[Network]
    activations: dict
    rollout: dict
    strategies: dict[str, dict]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"preset": self.preset, "gpus": self.gpus, "gpu_memory_gib": self.gpu_memory_gib,
                "layout": self.layout, "networks": [dataclasses.asdict(n) for n in self.networks],
                "params": sum(n.params for n in self.networks),
                "trainable": sum(n.trainable for n in self.networks),
                "activations": self.activations, "rollout": self.rollout, "strategies": self.strategies,
                "fits": [name for name, s in self.strategies.items() if s["fits"]], "notes": self.notes}

    def format_text(self) -> str:
        lines = [f"{self.preset} on {self.gpus} GPU(s) of {self.gpu_memory_gib:g} GiB, layout {self.layout}", "",
                 "| network | architecture | parameters | trainable |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {n.name} | {n.architecture} | {n.params:,} | {n.trainable:,} |" for n in self.networks]
        a, r = self.activations, self.rollout
        lines += ["", f"update: {a['micro_batch']} sequences x {a['seq_len']} tokens per GPU, {a['trained_blocks']} blocks "
                      f"with gradients: activations {_gib(a['without_checkpointing'])} GiB, "
                      f"{_gib(a['with_checkpointing'])} GiB checkpointed"
                      f"{' (used)' if a['gradient_checkpointing'] else ''}",
                  f"rollout: {r['batch']} prompts per GPU at once: KV cache {_gib(r['kv_cache'])} GiB, "
                  f"scoring logits {_gib(r['scoring_logits'])} GiB", "",
                  "| GiB per GPU | weights fp32 | weights bf16 | gradients | optimiser | gathered | update act. "
                  "| rollout | peak | fits |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for name, s in self.strategies.items():
            lines.append(f"| {name} | {_gib(s['weights']['fp32'])} | {_gib(s['weights']['bf16'])} | "
                         f"{_gib(s['gradients'])} | {_gib(sum(s['optimizer'].values()))} | {_gib(s['gathered'])} | "
                         f"{_gib(a['used'])} | {_gib(r['used'])} | {_gib(s['peak'])} | {'yes' if s['fits'] else 'no'} |")
        return "\n".join(lines + [""] + [f"- {note}" for note in self.notes])


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f}"


def plan_memory(preset: Preset, gpus: int = 8, strategies=STRATEGIES, gpu_memory_gib: float = 80.0,
                layout: str = "copies", shard_frozen: bool = False, rollout_batch: int | None = None) -> MemoryPlan:
    """Per-GPU memory of ``preset``'s policy run under each of ``strategies`` (module docstring).
    ``rollout_batch``: prompts a GPU samples at once (``None``: its whole share, as the loop does;
    the authors' trlx run sampled ``chunk_size = 4``)."""
    if gpus < 1 or (rollout_batch is not None and rollout_batch < 1):
        raise ValueError(f"gpus and rollout_batch must be >= 1, got {gpus} and {rollout_batch}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {STRATEGIES}")
    networks, shapes = build_networks(preset, layout)
    activations = activation_bytes(preset, networks, shapes)
    rollout = rollout_bytes(preset, shapes, gpus, rollout_batch)
    trainable = sum(n.trainable for n in networks)
    frozen_in = sum(n.params - n.trainable for n in networks if n.in_engine)
    frozen_out = sum(n.params for n in networks if not n.in_engine)
    table = {}
    for name in strategies:
        s = strategy_bytes(name, trainable, frozen_in, frozen_out, gpus, shapes["largest_unit"], shard_frozen)
        s["peak"] = s["static"] + max(activations["used"], rollout["used"])
        s["fits"] = s["peak"] <= gpu_memory_gib * GIB
        table[name] = s
    notes = [f"separate frozen models ({', '.join(n.name for n in networks if not n.in_engine)}) are "
             f"{'sharded under zero3/fsdp' if shard_frozen else 'replicated on every GPU'}",
             "not counted: CUDA context and allocator slack (1-3 GiB), DDP's gradient buckets, DeepSpeed's "
             "communication buckets, the reward model's working memory"]
    return MemoryPlan(preset.name, gpus, gpu_memory_gib, layout, networks, activations, rollout, table, notes)
