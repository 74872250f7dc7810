"""Presets are dataclass instances; overrides are typed; every field documents itself."""

import ast
import dataclasses
import inspect

import pytest

from starling_lib import config
from starling_lib.config import PRESETS, get_preset


def test_presets_are_fresh_copies():
    a, b = get_preset("tiny"), get_preset("tiny")
    a.world.n_prompts = 3
    assert b.world.n_prompts != 3


def test_smoke_is_smaller_than_tiny_and_full_reads_the_hub():
    smoke, tiny, full = (get_preset(n) for n in ("smoke", "tiny", "full"))
    assert smoke.world.n_prompts < tiny.world.n_prompts
    assert smoke.policy_model.hidden_size < tiny.policy_model.hidden_size
    assert smoke.tokenizer.vocab_size < tiny.tokenizer.vocab_size
    assert full.data.source == "berkeley-nest/Nectar"
    assert full.policy_model.name_or_path == "openchat/openchat_3.5"
    assert tiny.data.source == "tinyworld" and tiny.policy_model.name_or_path is None


def test_overrides_convert_types_and_name_bad_keys():
    p = get_preset("smoke", ["world.n_prompts=12", "world.temperature=0.25", "runtime.bf16=false",
                             "data.max_prompts=none", "policy_model.arch=mistral"])
    assert (p.world.n_prompts, p.world.temperature, p.runtime.bf16, p.data.max_prompts) == (12, 0.25, False, None)
    assert p.policy_model.arch == "mistral"
    assert get_preset("smoke", ["runtime.dtype=bf16"]).runtime.dtype == "bf16"
    with pytest.raises(ValueError, match="no field 'n_prompt'"):
        get_preset("smoke", ["world.n_prompt=3"])
    with pytest.raises(ValueError, match="no config section 'wrld'"):
        get_preset("smoke", ["wrld.n_prompts=3"])
    with pytest.raises(ValueError, match="cannot read 'many' as int"):
        get_preset("smoke", ["world.n_prompts=many"])
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("huge")


def test_every_config_field_has_a_docstring():
    tree = ast.parse(inspect.getsource(config))
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and dataclasses.is_dataclass(getattr(config, node.name))):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                documented = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                assert documented, f"{node.name}.{stmt.target.id} has no docstring"


def test_presets_serialise():
    for name in PRESETS:
        d = get_preset(name).to_dict()
        assert d["name"] == name and "world" in d and "runtime" in d


def test_starling_apa_preset_is_the_authors_trlx_run():
    # examples/hh/mistral_apa.py of the Starling trlx fork (thwu1/trlx) with zero2-bf16.yaml, 2 processes.
    preset, full = get_preset("starling-apa"), get_preset("full")
    p = preset.policy
    assert preset.policy_model.name_or_path == "openchat/openchat_3.5" and p.unfreeze_last_n == 4
    assert (p.algo, p.apa_anchor, p.apa_lambda) == ("apa", "rollout", 1.0)  # (log π − log π_old − Â)²
    assert (p.learning_rate, p.critic_learning_rate, p.adam_beta1, p.adam_beta2, p.adam_eps, p.weight_decay) == (
        2e-7, None, 0.9, 0.95, 1e-8, 1e-6)
    assert (p.lr_scheduler, p.lr_min, p.max_grad_norm) == ("cosine", 2e-7, 1.0)  # eta_min = lr; clipping 1.0
    assert (p.kl_coef, p.gamma, p.gae_lambda, p.whiten_advantages) == (0.01, 1.0, 0.95, False)
    assert (p.cliprange, p.cliprange_value, p.vf_coef, p.critic) == (0.2, 0.2, 1.0, "separate")
    assert (p.normalize_reward, p.reward_clip) == (True, 10.0)
    # num_rollouts 64 per process x 2 processes; batch_size 4 per process, no accumulation; ppo_epochs 2
    assert (p.prompts_per_iteration, p.minibatch_size, p.grad_accum, p.epochs_per_rollout) == (128, 4, 1, 2)
    assert p.iterations * (128 // 2 // 4) * 2 == 20_000  # total_steps
    assert (p.temperature, p.top_p, p.max_new_tokens, p.rm_max_length) == (1.0, 1.0, 1024, 2048)
    assert p.max_prompt_length + p.max_new_tokens == 2148 and not p.gradient_checkpointing  # seq_length
    assert preset.reward.backbone == "starling-rm:meta-llama/Llama-2-7b-chat-hf"
    # Everything outside the policy run is full's.
    for section in ("data", "policy_model", "reward_model", "judge", "sft", "eval", "rm_bench"):
        assert getattr(preset, section) == getattr(full, section), section
