"""The Starling-RM checkpoint format: the published readout checked by hand, the published key layout
written and read back into a differently seeded trunk, clear errors on a checkpoint that does not
fit, a Trainer save / resume / final-load round trip, and the launch configs in ``configs/``."""

import json
from pathlib import Path

import pytest
import torch
import transformers
import yaml

from starling_lib.config import ModelConfig, TinyWorldConfig, TokenizerConfig
from starling_lib.data.chat import render_chat
from starling_lib.data.tinyworld import corpus_texts
from starling_lib.models import _seeded, tiny_causal_lm, train_tokenizer
from starling_lib.paths import ROOT
from starling_lib.reward.starling_rm import (
    CONFIG_NAME, WEIGHTS_NAME, StarlingRewardModel, load_saved_starling_rm, load_starling_rm, reward_index,
    save_starling_rm, starling_rm_prompt)

CONFIGS = ROOT / "configs"
TRUNK = ModelConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                    intermediate_size=64, max_position_embeddings=128)
CARD_SAMPLE = "<s>[INST] Hello? </s> [/INST] Hi, how can I help you?</s>"  # the model card's test sample


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus_texts(TinyWorldConfig(n_prompts=30)), TokenizerConfig(vocab_size=300))


@pytest.fixture(scope="module")
def pad(tokenizer):
    return tokenizer.pad_token_id


def make_rm(tokenizer, seed: int) -> StarlingRewardModel:
    with _seeded(seed + 1000):  # the head too, so two seeds give two different models
        return StarlingRewardModel(tiny_causal_lm(TRUNK, tokenizer, seed=seed), tokenizer.pad_token_id).eval()


@pytest.fixture(scope="module")
def rm(tokenizer):
    return make_rm(tokenizer, seed=0)


@pytest.fixture(scope="module")
def batch(pad):
    """Right-padded rows by hand: lengths 7, 4 and 9 (the last with no pad at all)."""
    rows = [[1, 40, 41, 42, 43, 44, 2], [1, 50, 51, 2], [1, 60, 61, 62, 63, 64, 65, 66, 2]]
    width = max(map(len, rows))
    input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad).long()}


@pytest.fixture(scope="module")
def saved(rm, tmp_path_factory):
    return save_starling_rm(rm, tmp_path_factory.mktemp("starling_rm"))


def rewards(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# ----------------------------------------------------------------------------------------------
# The readout

def test_reward_index_is_the_published_rule_by_hand():
    pad = 0
    input_ids = torch.tensor([
        [5, 6, 7, 0, 0],  # right padding: one before the first pad
        [5, 6, 7, 8, 9],  # no pad: the card's c_ind = T, so T - 1
        [0, 0, 5, 6, 7],  # left padding: c_ind = 0, Python's -1 is the last position
        [5, 0, 6, 0, 0],  # a pad id inside the text cuts the row there
    ])
    assert reward_index(input_ids, pad).tolist() == [2, 4, 4, 0]


def test_reward_is_v_head_of_the_last_hidden_state_before_the_first_pad(rm, batch):
    hidden = rm.transformer(**batch).last_hidden_state  # what the card's self.transformer returns
    expected = torch.stack([hidden[0, 6], hidden[1, 3], hidden[2, 8]]) @ rm.v_head.weight.T  # picked by hand
    got = rm(**batch)
    assert isinstance(got, transformers.modeling_outputs.SequenceClassifierOutput)
    assert got.logits.shape == (3, 1)
    torch.testing.assert_close(got.logits, expected, rtol=0, atol=1e-6)


def test_the_trunk_is_the_causal_lms_decoder_without_its_lm_head(rm):
    assert type(rm.transformer).__name__ == "LlamaModel"
    assert rm.config is rm.transformer.config
    assert set(rm.state_dict()) == {"v_head.weight"} | {"transformer." + k for k in rm.transformer.state_dict()}


def test_more_right_padding_leaves_rewards_unchanged(rm, batch, pad):
    wider = torch.cat([batch["input_ids"], torch.full((3, 5), pad)], dim=1)
    torch.testing.assert_close(rewards(rm, {"input_ids": wider, "attention_mask": (wider != pad).long()}),
                               rewards(rm, batch), rtol=0, atol=1e-5)


def test_a_row_with_no_pad_is_read_at_its_last_token(rm, batch):
    alone = {k: v[2:] for k, v in batch.items()}  # the 9-token row, unpadded
    hidden = rm.transformer(**alone).last_hidden_state
    torch.testing.assert_close(rewards(rm, alone), hidden[:, -1] @ rm.v_head.weight.T, rtol=0, atol=1e-6)
    torch.testing.assert_close(rewards(rm, alone), rewards(rm, batch)[2:], rtol=0, atol=1e-5)


def test_gradients_reach_the_head_and_the_trunk(tokenizer, batch):
    model = make_rm(tokenizer, seed=3).train()
    model(**batch).logits.sum().backward()
    for name in ("v_head.weight", "transformer.embed_tokens.weight", "transformer.layers.0.self_attn.q_proj.weight",
                 "transformer.norm.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_activation_checkpointing_passes_through_and_gives_the_same_gradients(tokenizer, batch):
    plain, checkpointed = make_rm(tokenizer, seed=4).train(), make_rm(tokenizer, seed=4).train()
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    for model in (plain, checkpointed):
        model(**batch).logits.sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


# ----------------------------------------------------------------------------------------------
# The text format

def test_prompt_format_is_the_cards_sample_and_llama2_with_two_eos_moves():
    messages = [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi, how can I help you?"}]
    assert starling_rm_prompt(messages) == CARD_SAMPLE
    llama2 = render_chat(messages, "llama2")
    assert llama2 == "<s>[INST] Hello? [/INST] Hi, how can I help you? </s>"
    # The card closes the user turn with </s> inside [INST] and puts no space before the last </s>.
    assert llama2.replace(" [/INST]", " </s> [/INST]").removesuffix(" </s>") + "</s>" == CARD_SAMPLE


def test_prompt_format_multi_turn_with_a_system_message():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bees?"},
                {"role": "assistant", "content": "They make honey."}]
    assert starling_rm_prompt(messages) == ("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi </s> [/INST] Hello.</s>"
                                            "<s>[INST] Bees? </s> [/INST] They make honey.</s>")


# ----------------------------------------------------------------------------------------------
# Saving and loading

def test_saved_file_has_the_published_key_layout(rm, saved):
    state = torch.load(saved / WEIGHTS_NAME, weights_only=True)
    trunk_keys = set(rm.transformer.state_dict())
    assert set(state) == ({"transformer." + k for k in trunk_keys} | {"model.model." + k for k in trunk_keys}
                          | {"v_head.weight"})
    first = next(iter(trunk_keys))
    # One storage under both names, as torch.save of the card's wrapper stores it.
    assert state["transformer." + first].data_ptr() == state["model.model." + first].data_ptr()
    record = json.loads((saved / CONFIG_NAME).read_text())
    assert record["format"] == "starling-rm" and record["trunk_config"]["hidden_size"] == 32


def test_load_into_a_differently_seeded_trunk_gives_the_same_rewards(tokenizer, rm, saved, batch):
    fresh = tiny_causal_lm(TRUNK, tokenizer, seed=7)
    assert not torch.allclose(rewards(StarlingRewardModel(fresh, rm.pad_token_id), batch), rewards(rm, batch))
    loaded = load_starling_rm(saved / WEIGHTS_NAME, fresh).eval()
    assert loaded.pad_token_id == rm.pad_token_id
    torch.testing.assert_close(rewards(loaded, batch), rewards(rm, batch), rtol=0, atol=0)
    torch.testing.assert_close(rewards(load_saved_starling_rm(saved).eval(), batch), rewards(rm, batch), rtol=0, atol=0)


@pytest.mark.parametrize("prefix", ["transformer.", "model.model."])
def test_either_trunk_prefix_alone_loads_and_lm_head_is_ignored(tokenizer, rm, saved, batch, tmp_path, prefix):
    state = torch.load(saved / WEIGHTS_NAME, weights_only=True)
    other = "model.model." if prefix == "transformer." else "transformer."
    state = {k: v for k, v in state.items() if not k.startswith(other)}
    state["model.lm_head.weight"] = torch.zeros(len(tokenizer), 32)  # the card's file has it; unused
    torch.save(state, tmp_path / "rm.pt")
    loaded = load_starling_rm(tmp_path, tiny_causal_lm(TRUNK, tokenizer, seed=8)).eval()
    torch.testing.assert_close(rewards(loaded, batch), rewards(rm, batch), rtol=0, atol=0)


def _broken(saved, tmp_path, edit) -> Path:
    state = torch.load(saved / WEIGHTS_NAME, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "broken.bin")
    return tmp_path / "broken.bin"


def test_missing_v_head_raises_naming_the_file_and_key(tokenizer, saved, tmp_path):
    path = _broken(saved, tmp_path, lambda s: s.pop("v_head.weight"))
    with pytest.raises(ValueError, match=r"broken\.bin.*missing keys \(1\).*v_head\.weight"):
        load_starling_rm(path, tiny_causal_lm(TRUNK, tokenizer, seed=1))


def test_missing_trunk_weight_raises_naming_the_key(tokenizer, saved, tmp_path):
    key = "layers.1.mlp.down_proj.weight"
    path = _broken(saved, tmp_path, lambda s: (s.pop("transformer." + key), s.pop("model.model." + key)))
    with pytest.raises(ValueError, match=r"missing keys \(1\).*transformer\.layers\.1\.mlp\.down_proj\.weight"):
        load_starling_rm(path, tiny_causal_lm(TRUNK, tokenizer, seed=1))


def test_wrong_shapes_raise_naming_the_key(tokenizer, saved, tmp_path):
    path = _broken(saved, tmp_path, lambda s: s.update({"v_head.weight": torch.zeros(1, 16)}))
    with pytest.raises(ValueError, match=r"shape mismatches.*v_head\.weight: file \(1, 16\) vs model \(1, 32\)"):
        load_starling_rm(path, tiny_causal_lm(TRUNK, tokenizer, seed=1))
    wider = ModelConfig(**{**TRUNK.__dict__, "hidden_size": 48})  # a trunk of another shape altogether
    with pytest.raises(ValueError, match=r"shape mismatches \(\d+\).*embed_tokens\.weight"):
        load_starling_rm(saved, tiny_causal_lm(wider, tokenizer, seed=1))


def test_unexpected_or_disagreeing_keys_raise(tokenizer, saved, tmp_path):
    path = _broken(saved, tmp_path, lambda s: s.update({"score.weight": torch.zeros(1, 32)}))
    with pytest.raises(ValueError, match=r"unexpected keys \(1\).*score\.weight"):
        load_starling_rm(path, tiny_causal_lm(TRUNK, tokenizer, seed=1))
    key = "norm.weight"
    path = _broken(saved, tmp_path, lambda s: s.update({"model.model." + key: s["transformer." + key] + 1}))
    with pytest.raises(ValueError, match=r"transformer\.norm\.weight and model\.model\.norm\.weight hold different"):
        load_starling_rm(path, tiny_causal_lm(TRUNK, tokenizer, seed=1))


# ----------------------------------------------------------------------------------------------
# transformers.Trainer

class _RegressionTrainer(transformers.Trainer):
    """Reads ``model(input_ids=..., attention_mask=...).logits`` as the reward Trainer does."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return torch.nn.functional.mse_loss(logits.squeeze(-1), inputs["target"])


def _trainer(model, out: Path, batch) -> _RegressionTrainer:
    rows = [{"input_ids": ids, "attention_mask": mask, "target": torch.tensor(float(i % 3))}
            for i, (ids, mask) in enumerate(zip(batch["input_ids"].repeat(2, 1), batch["attention_mask"].repeat(2, 1)))]
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=2, save_steps=1, per_device_train_batch_size=2, learning_rate=1e-2,
        use_cpu=True, report_to="none", disable_tqdm=True, remove_unused_columns=False, logging_steps=1,
        seed=0, data_seed=0, dataloader_num_workers=0)
    collate = lambda rows: {k: torch.stack([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
    return _RegressionTrainer(model=model, args=args, train_dataset=rows, data_collator=collate)


def test_trainer_saves_resumes_and_the_final_folder_loads(tokenizer, batch, tmp_path):
    trained = make_rm(tokenizer, seed=5).train()
    before = rewards(trained, batch)
    trainer = _trainer(trained, tmp_path / "run", batch)
    trainer.train()
    trained.eval()
    assert not torch.allclose(rewards(trained, batch), before)  # it trained

    final = tmp_path / "final"
    trainer.save_model(str(final))  # not a PreTrainedModel: the Trainer writes the state dict as safetensors
    save_starling_rm(trained, final, weights=False)  # the trunk's config beside it
    for loaded in (load_starling_rm(final / "model.safetensors", tiny_causal_lm(TRUNK, tokenizer, seed=9)),
                   load_saved_starling_rm(final)):
        torch.testing.assert_close(rewards(loaded.eval(), batch), rewards(trained, batch), rtol=0, atol=0)

    # Resume from step 1 with a fresh, differently seeded model: step 2 lands on the same weights.
    resumed = make_rm(tokenizer, seed=6).train()
    _trainer(resumed, tmp_path / "run", batch).train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-1"))
    torch.testing.assert_close(rewards(resumed.eval(), batch), rewards(trained, batch), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Launch configs (configs/): they parse, and what they name exists

# Keys the Trainer fills when their value is "auto": HfTrainerDeepSpeedConfig.trainer_config_process
# and trainer_config_finalize in transformers/integrations/deepspeed.py (the optimizer.* and
# scheduler.* ones too, but these configs leave both to the Trainer).
TRAINER_FILLED = {"train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
                  "gradient_clipping", "fp16.enabled", "bf16.enabled", "zero_optimization.reduce_bucket_size",
                  "zero_optimization.stage3_prefetch_bucket_size",
                  "zero_optimization.stage3_param_persistence_threshold"}


def _auto_keys(config: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in config.items():
        if isinstance(value, dict):
            keys |= _auto_keys(value, f"{prefix}{key}.")
        elif value == "auto":
            keys.add(prefix + key)
    return keys


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_use_auto_only_where_the_trainer_fills_it(stage):
    config = json.loads((CONFIGS / f"deepspeed_zero{stage}.json").read_text())
    assert config["zero_optimization"]["stage"] == stage
    assert config["train_micro_batch_size_per_gpu"] == config["gradient_accumulation_steps"] == "auto"
    assert config["bf16"]["enabled"] == "auto"
    assert "optimizer" not in config and "scheduler" not in config  # the Trainer's AdamW and schedule
    assert {"train_micro_batch_size_per_gpu", "bf16.enabled"} <= _auto_keys(config) <= TRAINER_FILLED
    if stage == 3:  # Trainer.save_model gathers the full 16-bit weights into model.safetensors
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_are_filled_by_the_trainer(stage, rm, tmp_path):
    pytest.importorskip("deepspeed")  # its constructor insists on the package (needs a GPU machine)
    from transformers.integrations import deepspeed as hf_deepspeed

    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                          gradient_accumulation_steps=2, bf16=True, use_cpu=True, report_to="none")
    filled = hf_deepspeed.HfTrainerDeepSpeedConfig(str(CONFIGS / f"deepspeed_zero{stage}.json"))
    try:
        filled.trainer_config_process(args)
        filled.trainer_config_finalize(args, rm, num_training_steps=10)  # hidden-size "auto"s read rm.config
        assert filled.mismatches == [] and "auto" not in json.dumps(filled.config)
        assert filled.config["zero_optimization"]["reduce_bucket_size"] == 32 * 32
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()  # the constructor registered it globally


def test_fsdp_config_is_an_accelerate_config_wrapping_llama_layers(rm):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import constants

    path = CONFIGS / "fsdp_llama.yaml"
    raw = yaml.safe_load(path.read_text())
    cluster = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys would raise here
    fsdp = cluster.fsdp_config
    assert (raw["distributed_type"], raw["mixed_precision"], cluster.num_processes) == ("FSDP", "bf16", 8)
    # accelerate launch copies each fsdp_config entry onto its --fsdp_* option, silently, known or not.
    options = {action.dest for action in launch_command_parser()._actions}
    assert set(fsdp) <= options, set(fsdp) - options
    assert fsdp["fsdp_sharding_strategy"] == "FULL_SHARD" in constants.FSDP_SHARDING_STRATEGY
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" in constants.FSDP_AUTO_WRAP_POLICY
    assert fsdp["fsdp_state_dict_type"] in constants.FSDP_STATE_DICT_TYPE
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == type(rm.transformer.layers[0]).__name__ == "LlamaDecoderLayer"


def test_configs_readme_names_each_file():
    readme = (CONFIGS / "README.md").read_text()
    for name in ("deepspeed_zero3.json", "deepspeed_zero2.json", "fsdp_llama.yaml", "pip install deepspeed"):
        assert name in readme
