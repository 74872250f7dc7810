"""The Starling-RM-7B-alpha checkpoint format: a Llama-2 trunk with a scalar ``v_head``.

What it is for: training and loading reward models in the layout the paper's reward model was
published in (``berkeley-nest/Starling-RM-7B-alpha``), so the full preset can start from, compare
with, or hand on that checkpoint, and the tiny presets exercise the very same code.

The published format, as the model card's ``GPTRewardModel`` defines it:

- **Network.** ``Llama-2-7b-chat-hf`` with its LM head unused; ``v_head = Linear(hidden, 1,
  bias=False)`` maps each position's last hidden state to a scalar.
- **Which position.** ``c_ind`` = the first position whose token id is ``PAD_ID`` (the row length
  when there is none); the reward is read at ``c_ind - 1``. The tokenizer pads with ``<unk>``,
  on the right, truncates on the left, ``max_length=2048``.
- **Text.** ``"<s>[INST] {prompt} </s> [/INST] {answer}</s>"`` (:data:`STARLING_RM_TEMPLATE`).
- **Weights.** ``pytorch_model.bin``, a ``torch.save`` of the wrapper's state dict. The wrapper
  registers the trunk twice, as ``self.model`` (the causal LM) and ``self.transformer =
  model.model``, so its keys are ``model.model.*`` and ``model.lm_head.weight``, then
  ``transformer.*`` (the same tensors again), then ``v_head.weight``. (This layout is read off the
  wrapper's code; the loader below accepts either trunk prefix.) The card loads the file with
  ``load_state_dict(..., strict=False)``, which would keep Llama-2-chat's weights for any key the
  file lacks without a word.

How this module reads it:

- :class:`StarlingRewardModel` registers the decoder **once**, as ``transformer``, and drops the
  LM head (the reward never uses it). Its state dict is ``transformer.*`` + ``v_head.weight``:
  no tensor under two names, so ``transformers.Trainer`` can write it as ``model.safetensors``
  (safetensors refuses shared tensors) and resume from it.
- :func:`save_starling_rm` writes the published layout (both prefixes, one storage; no
  ``lm_head``: the card's loader keeps Llama-2-chat's own there) plus ``starling_rm.json``.
- :func:`load_starling_rm` accepts ``transformer.*`` or ``model.model.*`` (or both, which must
  agree), ignores ``model.lm_head.*`` and stale ``rotary_emb.inv_freq`` buffers, and raises a
  ``ValueError`` naming the file and the keys when a trunk weight or ``v_head.weight`` is missing,
  a shape does not match, or a key belongs to no part of the model.

Padding. :func:`reward_index` is the published rule, vectorised, with Python's ``-1`` wrap kept:
right padding reads the last real token; a row with no pad reads the last position; a row that
*starts* with pad (left padding) gets ``c_ind = 0`` and wraps to the last position, which is the
last real token too. Left padding still shifts the rotary positions (the card passes no
``position_ids``), so rewards match the published model's only with right padding, which is what
it saw. A pad id that also occurs inside the text cuts the row there.

Two things in the card's code that a reproduction must copy, not fix:

- ``PAD_ID = tokenizer(tokenizer.pad_token)["input_ids"][0]``: the Llama-2 tokenizer adds ``<s>``
  by default, so this is ``<s>``'s id 1, not ``<unk>``'s 0. Every row starts with ``<s>``, so the
  card's rule reads position ``-1``: the last of the 2048 positions (``padding="max_length"``), a
  pad token for any shorter text. ``pad_token_id=1`` with rows padded to 2048 reproduces that;
  the default here (the tokenizer's pad, ``<unk>`` = 0 for Llama-2) reads the last real token, as
  the card's prose intends.
- The sample text begins with ``<s>`` and the tokenizer adds another (``add_special_tokens``
  defaults to true): the card's rows start ``[1, 1, ...]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch
import transformers
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from starling_lib.data.chat import LLAMA2_TEMPLATE, render_chat

PUBLISHED_CHECKPOINT = "berkeley-nest/Starling-RM-7B-alpha"
PUBLISHED_TRUNK = "meta-llama/Llama-2-7b-chat-hf"
PUBLISHED_MAX_LENGTH = 2048
"""Tokens per row in the card's ``get_reward`` (truncated on the left, padded on the right)."""
LLAMA2_UNK_ID = 0
"""``<unk>`` in the Llama-2 tokenizer: the card's pad token."""

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "starling_rm.json"
FORMAT = "starling-rm"

TRUNK_PREFIXES = ("transformer.", "model.model.")
"""Where the published file keeps the decoder: both, as the same tensors."""
IGNORED_PREFIXES = ("model.lm_head.",)
"""In the published file but unused by the reward."""
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
"""Rotary buffers that older transformers versions saved; recomputed from the config."""
_NOT_WEIGHTS = ("optimizer.pt", "scheduler.pt", "training_args.bin", "rng_state.pth")
"""Files a Trainer checkpoint folder holds next to the weights."""

def _card_template() -> str:
    """The model card's sample text (its "llama2 chat template"): LLAMA2_TEMPLATE with ``</s>``
    closing the user turn inside ``[INST]`` and no space before the answer's ``</s>``. The card shows
    one turn only, so system messages and later turns follow LLAMA2_TEMPLATE's rules."""
    template = LLAMA2_TEMPLATE
    for llama2, card in (("' [/INST]' }}", "' ' + eos_token + ' [/INST]' }}"),
                         ("' '  + content.strip() + ' ' + eos_token", "' ' + content.strip() + eos_token")):
        if llama2 not in template:  # LLAMA2_TEMPLATE changed: this derivation must be revisited
            raise RuntimeError(f"LLAMA2_TEMPLATE no longer contains {llama2!r}")
        template = template.replace(llama2, card)
    return template


STARLING_RM_TEMPLATE = _card_template()


def starling_rm_prompt(messages: list[dict]) -> str:
    """``messages`` (the prompt's turns and the answer as the last assistant turn) in the card's format.

    ``[user "Hello?", assistant "Hi, how can I help you?"]`` gives the card's sample exactly:
    ``"<s>[INST] Hello? </s> [/INST] Hi, how can I help you?</s>"``. A collator can instead set
    ``tokenizer.chat_template = STARLING_RM_TEMPLATE`` (Llama-2 special tokens ``<s>``/``</s>``).
    """
    return render_chat(messages, STARLING_RM_TEMPLATE, bos_token="<s>", eos_token="</s>")


def reward_index(input_ids: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """``(B,)`` position of each row's reward: one before the first ``pad_token_id``, wrapping to ``T-1``.

    ``input_ids``: ``(B, T)``. The card's loop, ``rewards[i, c_ind - 1]`` with ``c_ind`` the first
    pad (``T`` if none); ``c_ind = 0`` gives Python's ``-1``, the last position.
    """
    is_pad = input_ids == pad_token_id  # (B, T)
    length = input_ids.shape[1]
    first_pad = torch.where(is_pad.any(dim=1), is_pad.int().argmax(dim=1), length)  # argmax: first True
    return (first_pad - 1) % length


class StarlingRewardModel(nn.Module):
    """A decoder trunk plus ``v_head``: ``(B, T)`` token ids -> ``logits (B, 1)``, the published readout.

    ``trunk``: a ``*ForCausalLM`` (its decoder, ``trunk.base_model``, is kept and its LM head
    dropped) or a bare decoder. ``pad_token_id``: the id :func:`reward_index` looks for.
    ``v_head``: an existing head, else a fresh ``Linear(hidden, 1, bias=False)`` (torch's default
    init, as in the card) on the trunk's device and dtype.

    Stands in for ``AutoModelForSequenceClassification(num_labels=1)`` under a ``Trainer`` that
    reads ``model(input_ids=..., attention_mask=...).logits``: ``config`` is the trunk's, and
    activation checkpointing passes through to the trunk.
    """

    main_input_name = "input_ids"
    accepts_loss_kwargs = False  # the Trainer subclass computes the loss, not the model
    _keys_to_ignore_on_save = None  # read by Trainer after loading a checkpoint

    def __init__(self, trunk: nn.Module, pad_token_id: int, v_head: nn.Linear | None = None):
        super().__init__()
        if pad_token_id is None:
            raise ValueError("pad_token_id is required: the reward is read one before the first pad token "
                             f"(the published model pads with Llama-2's <unk>, id {LLAMA2_UNK_ID})")
        self.transformer = getattr(trunk, "base_model", trunk)
        hidden_size = self.transformer.config.hidden_size
        if v_head is None:
            weight = next(self.transformer.parameters())
            v_head = nn.Linear(hidden_size, 1, bias=False, device=weight.device, dtype=weight.dtype)
        if tuple(v_head.weight.shape) != (1, hidden_size) or v_head.bias is not None:
            raise ValueError(f"v_head must be Linear({hidden_size}, 1, bias=False), got {v_head}")
        self.v_head = v_head
        self.pad_token_id = int(pad_token_id)

    @property
    def config(self) -> transformers.PreTrainedConfig:
        return self.transformer.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        """``input_ids``, ``attention_mask``: ``(B, T)``; other keyword arguments go to the trunk."""
        kwargs.setdefault("use_cache", False)
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        last = hidden[rows, reward_index(input_ids, self.pad_token_id)]  # (B, H)
        return SequenceClassifierOutput(logits=self.v_head(last.to(self.v_head.weight.dtype)))  # (B, 1)

    # Activation checkpointing: Trainer calls activation_checkpointing_enable (transformers 5),
    # older callers gradient_checkpointing_enable; both reach the trunk's own implementation.
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs) -> None:
        if hasattr(self.transformer, "activation_checkpointing_enable"):
            self.transformer.activation_checkpointing_enable(
                activation_checkpointing_kwargs=activation_checkpointing_kwargs, **kwargs)
        else:
            self.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=activation_checkpointing_kwargs,
                                                           **kwargs)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None, **kwargs) -> None:
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def activation_checkpointing_disable(self) -> None:
        trunk = self.transformer
        (getattr(trunk, "activation_checkpointing_disable", None) or trunk.gradient_checkpointing_disable)()

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_activation_checkpointing(self) -> bool:
        if hasattr(self.transformer, "is_activation_checkpointing"):
            return bool(self.transformer.is_activation_checkpointing)
        return bool(getattr(self.transformer, "is_gradient_checkpointing", False))

    is_gradient_checkpointing = is_activation_checkpointing


# ----------------------------------------------------------------------------------------------
# Saving

def save_starling_rm(model: StarlingRewardModel, path: str | Path, weights: bool = True) -> Path:
    """Write ``path/pytorch_model.bin`` in the published layout and ``path/starling_rm.json``; returns ``path``.

    The file holds ``model.model.*``, ``transformer.*`` (the same tensors: ``torch.save`` stores
    them once) and ``v_head.weight``. ``weights=False`` writes only the json, e.g. next to the
    ``model.safetensors`` that ``Trainer.save_model`` gathered from a sharded (ZeRO-3/FSDP) run,
    where ``model.state_dict()`` would hold only this process's shard.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if weights:
        own = {key: tensor.detach().cpu() for key, tensor in model.state_dict().items()}  # transformer.*, v_head
        # The card's key order: model.model.*, then transformer.* (the same tensor objects), then v_head.
        published = {"model.model." + key.removeprefix("transformer."): tensor
                     for key, tensor in own.items() if key.startswith("transformer.")}
        torch.save(published | own, path / WEIGHTS_NAME)
    record = {"format": FORMAT, "pad_token_id": model.pad_token_id, "trunk_config": model.config.to_dict()}
    (path / CONFIG_NAME).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------
# Loading

def _weights_file(checkpoint: Path) -> Path:
    """``checkpoint`` itself, or the one weights file in that folder (the card's rule: ``*.pt`` or ``*model.bin``)."""
    if checkpoint.is_file():
        return checkpoint
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"no Starling-RM checkpoint at {checkpoint}")
    for name in ("model.safetensors", WEIGHTS_NAME):
        if (checkpoint / name).is_file():
            return checkpoint / name
    found = sorted(p for p in checkpoint.iterdir() if p.is_file() and p.name not in _NOT_WEIGHTS
                   and (p.suffix in (".pt", ".safetensors") or p.name.endswith("model.bin")))
    if len(found) != 1:
        raise FileNotFoundError(f"{checkpoint}: expected one weights file (model.safetensors, {WEIGHTS_NAME}, "
                                f"*.pt, *model.bin), found {[p.name for p in found]}")
    return found[0]


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return safetensors.torch.load_file(path, device="cpu")
    try:  # mmap: a 7B file is not read into memory twice
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # files in torch's legacy (non-zip) format cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _problems(kind: str, keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{kind} ({len(keys)}): {keys[:limit]}{more}"


def _model_state_dict(saved: dict[str, torch.Tensor], model: StarlingRewardModel, path: Path) -> dict:
    """The saved tensors under ``model``'s own keys, checked: every key present, shapes equal, nothing unknown."""
    expected = model.state_dict()
    trunk_keys = [k.removeprefix("transformer.") for k in expected if k.startswith("transformer.")]
    found, missing, mismatched, unused = {}, [], [], set(saved)
    for key in trunk_keys:
        copies = [(prefix + key, saved[prefix + key]) for prefix in TRUNK_PREFIXES if prefix + key in saved]
        unused -= {name for name, _ in copies}
        if not copies:
            missing.append(f"transformer.{key} (or model.model.{key})")
            continue
        (name, tensor), *others = copies
        for other_name, other in others:
            if other.data_ptr() != tensor.data_ptr() and not torch.equal(other, tensor):
                raise ValueError(f"{path}: {name} and {other_name} hold different values; "
                                 "the published format stores the trunk twice as the same tensors")
        found["transformer." + key] = (name, tensor)
    if "v_head.weight" in saved:
        found["v_head.weight"] = ("v_head.weight", saved["v_head.weight"])
        unused.discard("v_head.weight")
    else:
        missing.append("v_head.weight")
    for key, (name, tensor) in found.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            mismatched.append(f"{name}: file {tuple(tensor.shape)} vs model {tuple(expected[key].shape)}")
    unused = {k for k in unused if not k.startswith(IGNORED_PREFIXES) and not k.endswith(IGNORED_SUFFIXES)}
    errors = [_problems(kind, keys) for kind, keys in
              (("missing keys", missing), ("shape mismatches", mismatched), ("unexpected keys", unused)) if keys]
    if errors:
        raise ValueError(f"{path} does not fit a Starling reward model on this trunk "
                         f"({type(model.transformer).__name__}, hidden {model.config.hidden_size}): "
                         + "; ".join(errors))
    return {key: tensor for key, (_, tensor) in found.items()}


def _trunk_from_record(record: dict, folder: Path, **from_config_kwargs) -> nn.Module:
    if not record:
        raise FileNotFoundError(f"no {CONFIG_NAME} in {folder}: pass trunk= (a causal LM, or a name such as "
                                f"{PUBLISHED_TRUNK!r}), or save with save_starling_rm")
    config_dict = dict(record["trunk_config"])
    config = transformers.AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    # Freshly initialised, then every weight is overwritten from the checkpoint (all are required).
    return transformers.AutoModel.from_config(config, **from_config_kwargs)


def load_starling_rm(checkpoint: str | Path, trunk: nn.Module | str | None = None, pad_token_id: int | None = None,
                     **from_pretrained_kwargs) -> StarlingRewardModel:
    """A :class:`StarlingRewardModel` with every weight from ``checkpoint``, checked (see module docstring).

    ``checkpoint``: a ``.bin``/``.pt``/``.safetensors`` file, or a folder holding one (the
    published repo, a :func:`save_starling_rm` folder, a ``Trainer`` checkpoint or ``final`` folder).
    ``trunk``: a causal LM or decoder of the right shape (its weights are replaced), a name or
    path for ``AutoModelForCausalLM.from_pretrained`` (``from_pretrained_kwargs`` go there, e.g.
    ``dtype=torch.bfloat16``; the published trunk is :data:`PUBLISHED_TRUNK`), or ``None`` to
    build it from the ``starling_rm.json`` next to the weights. ``pad_token_id``: else that json's,
    else the trunk config's, else Llama-2's ``<unk>`` (the card's pad token).
    """
    path = _weights_file(Path(checkpoint))
    record_path = path.parent / CONFIG_NAME
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    if trunk is None:
        trunk = _trunk_from_record(record, path.parent, **from_pretrained_kwargs)
    elif isinstance(trunk, (str, Path)):
        trunk = transformers.AutoModelForCausalLM.from_pretrained(trunk, **from_pretrained_kwargs)
    if pad_token_id is None:
        pad_token_id = record.get("pad_token_id", getattr(trunk.config, "pad_token_id", None))
    model = StarlingRewardModel(trunk, LLAMA2_UNK_ID if pad_token_id is None else pad_token_id)
    model.load_state_dict(_model_state_dict(_read_state_dict(path), model, path), strict=True)
    return model


def load_saved_starling_rm(model_dir: str | Path, **from_config_kwargs) -> StarlingRewardModel:
    """A folder with ``starling_rm.json`` (written by :func:`save_starling_rm`), trunk built from the json."""
    return load_starling_rm(model_dir, None, **from_config_kwargs)
