"""The memory planner (``starling plan``): parameter counts of the real 7B architectures on the meta
device, every byte of a toy plan computed by hand, the strategies' order, the CLI's JSON."""

import json

import pytest

from starling_lib.cli import main
from starling_lib.config import ModelConfig, get_preset
from starling_lib.policy.plan import (GIB, PUBLISHED_CONFIGS, architecture_config, count, meta_model, plan_memory,
                                      strategy_bytes)


def _published(name, kind="causal"):
    return count(meta_model(architecture_config(ModelConfig(name_or_path=name), 0), kind))[0]


def test_published_7b_sizes_from_the_architecture_formula():
    # One Mistral-7B block: q and o are 4096 x 4096, k and v 4096 x 1024 (8 KV heads of 128), the
    # SwiGLU MLP three 4096 x 14336 matrices, two RMSNorm weights of 4096.
    mistral_block = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert mistral_block == 218_112_000
    # 32 blocks, untied embedding and LM head of 32000 x 4096, the final norm: the published 7.24B.
    assert 32 * mistral_block + 2 * 32000 * 4096 + 4096 == 7_241_732_096
    assert _published("mistralai/Mistral-7B-v0.1") == 7_241_732_096
    # Llama-2-7B: 32 KV heads (no grouping), MLP width 11008: the published 6.74B.
    llama_block = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    assert 32 * llama_block + 2 * 32000 * 4096 + 4096 == 6_738_415_616
    assert _published("meta-llama/Llama-2-7b-chat-hf") == 6_738_415_616
    # OpenChat 3.5 adds two tokens to the embedding and the head; the reward model drops the LM head
    # for a 4096 -> 1 score head.
    assert _published("openchat/openchat_3.5") == 7_241_732_096 + 2 * 2 * 4096
    assert _published("meta-llama/Llama-2-7b-chat-hf", "reward") == 6_738_415_616 - 32000 * 4096 + 4096
    assert PUBLISHED_CONFIGS["openchat/openchat_3.5"][1]["num_key_value_heads"] == 8


@pytest.fixture(scope="module")
def full8():
    return plan_memory(get_preset("full"), gpus=8)


def test_full_preset_trains_the_last_4_blocks_of_policy_and_critic(full8):
    plan = full8
    nets = {n.name: n for n in plan.networks}
    # 4 blocks + final norm + the untied head (32002 x 4096) of the policy.
    assert nets["policy"].trainable == 4 * 218_112_000 + 4096 + 32002 * 4096 == 1_003_532_288
    # The critic: a trunk copy (no LM head) with the same 4 blocks and norm trainable, plus the value head (4096 + bias).
    assert nets["critic"].params == 7_241_748_480 - 32002 * 4096 + 4097
    assert nets["critic"].trainable == 4 * 218_112_000 + 4096 + 4097
    assert (nets["reference"].params, nets["reference"].trainable) == (7_241_748_480, 0)
    assert nets["reward_model"].trainable == 0
    assert plan.activations["trained_blocks"] == 8  # only blocks gradients pass through store activations


def _toy():
    # smoke's shapes: h = 64, 2 blocks, 2 heads of 32, 1 KV head (width 32), MLP 172, vocabulary 512.
    return get_preset("smoke", ["policy.unfreeze_last_n=1", "policy.minibatch_size=2", "policy.max_prompt_length=8",
                                "policy.max_new_tokens=4"])


def test_toy_plan_every_byte_by_hand():
    plan = plan_memory(_toy(), gpus=2)
    nets = {n.name: (n.params, n.trainable, n.trained_blocks, n.in_engine) for n in plan.networks}
    # block: q 64*64 + k 64*32 + v 64*32 + o 64*64 = 12,288; MLP 3*64*172 = 33,024; norms 128 -> 45,440
    # policy: embedding 512*64 + 2 blocks + norm 64 + head 512*64 = 156,480; trains block 2, norm, head
    assert nets["policy"] == (156_480, 45_440 + 64 + 32_768, 1, True)
    # critic: the trunk (156,480 - 32,768) + value head 64 + 1; trains block 2, norm, head
    assert nets["critic"] == (123_777, 45_440 + 64 + 65, 1, True)
    assert nets["reference"] == (156_480, 0, 0, False)
    assert nets["reward_model"] == (123_712 + 64, 0, 0, False)

    # T = 78,272 + 45,569 = 123,841 trainable; F = 78,208 + 78,208 frozen inside; X = 156,480 + 123,776 outside
    s = plan.strategies
    assert s["ddp"]["weights"] == {"fp32": 4 * 123_841, "bf16": 2 * (156_416 + 280_256)}
    assert (s["ddp"]["gradients"], sum(s["ddp"]["optimizer"].values())) == (495_364, 990_728)
    assert s["ddp"]["static"] == 495_364 + 873_344 + 495_364 + 990_728 == 2_854_800
    assert s["zero2"]["weights"]["bf16"] == 2 * (123_841 + 156_416 + 280_256) == 1_121_026
    assert (s["zero2"]["gradients"], s["zero2"]["optimizer"]["fp32_master"]) == (123_841, 247_682)
    assert s["zero2"]["static"] == 1_121_026 + 123_841 + 3 * 247_682 == 1_987_913
    # ZeRO-3 shards the trained model (ceil(560,514 / 2)), keeps X whole, gathers 2 blocks of 45,440 in bf16.
    assert s["zero3"]["weights"]["bf16"] == 280_257 + 560_512
    assert s["zero3"]["gathered"] == 2 * 2 * 45_440
    assert s["zero3"]["static"] == 840_769 + 123_841 + 743_046 + 181_760 == 1_889_416
    assert s["fsdp"]["weights"] == {"fp32": 247_682, "bf16": 156_416 + 560_512}
    assert s["fsdp"]["static"] == 247_682 + 716_928 + 247_682 + 2 * 247_682 + 181_760 == 1_889_416

    a = plan.activations  # b = 2 sequences of s = 12 tokens, response 4
    assert a["per_block"] == 12 * 2 * (12 * 64 + 4 * 32 + 8 * 172) == 54_528
    assert a["heads"] == 8 * 12 * 2 * 64 + 2 * 12 * 2 * 512 + 8 * 2 * 4 * 512 == 69_632
    assert a["without_checkpointing"] == 2 * 54_528 + 69_632 == 178_688
    assert a["with_checkpointing"] == 2 * (2 * 12 * 2 * 64) + 54_528 + 69_632 == 130_304
    r = plan.rollout  # 8 prompts over 2 GPUs: 4 at once
    assert (r["batch"], r["kv_cache"]) == (4, 4 * 2 * 12 * 4 * 32)
    assert r["scoring_logits"] == 4 * (2 * 12 * 512 + 16 * 4 * 512) == 180_224
    assert s["ddp"]["peak"] == 2_854_800 + 180_224


def test_lora_keeps_no_reference_and_trains_adapters_in_every_block():
    plan = plan_memory(get_preset("smoke", ["policy.lora_r=2"]), gpus=1)
    nets = {n.name: n for n in plan.networks}
    # rank 2 on q, k, v, o of 2 blocks: q and o 2*64 + 64*2, k and v 2*64 + 32*2 -> 896 per block
    assert nets["policy"].trainable == 2 * 896
    assert (nets["reference"].params, nets["policy"].trained_blocks) == (0, 2)
    assert nets["critic"].trainable == 2 * 896 + 65  # the trunk copy carries the adapters too


def test_strategies_order_and_scale_with_gpus(full8):
    eight = full8
    t = sum(n.trainable for n in eight.networks)
    frozen_in = sum(n.params - n.trainable for n in eight.networks if n.in_engine)
    frozen_out = sum(n.params for n in eight.networks if not n.in_engine)
    one = {k: strategy_bytes(k, t, frozen_in, frozen_out, 1, 218_112_000) for k in eight.strategies}
    static = {k: v["static"] - v["gathered"] for k, v in one.items()}
    assert set(static.values()) == {16 * t + 2 * frozen_in + 2 * frozen_out}  # one GPU: 16 bytes per trained parameter
    s = {k: v["static"] for k, v in eight.strategies.items()}
    assert s["ddp"] > s["zero2"] > s["zero3"] and s["zero3"] == pytest.approx(s["fsdp"], abs=8)  # shards round up
    assert s["ddp"] == one["ddp"]["static"]  # DDP replicates everything
    assert s["ddp"] - s["zero2"] == pytest.approx(14 * t * 7 / 8, abs=16)  # 16T - (2T + 14T/8)
    assert eight.to_dict()["fits"] == ["zero2", "zero3", "fsdp"]
    assert [k for k, v in eight.strategies.items() if v["peak"] <= 80 * GIB] == ["zero2", "zero3", "fsdp"]
    sharded = plan_memory(get_preset("full"), gpus=8, strategies=["zero3"], shard_frozen=True)
    assert sharded.strategies["zero3"]["static"] < s["zero3"]
    with pytest.raises(ValueError, match="strategy must be one of"):
        strategy_bytes("zero4", 1, 1, 1, 1, 1)


def test_hydra_layout_shares_the_frozen_trunk(full8):
    plan = plan_memory(get_preset("full"), gpus=2, layout="hydra")
    nets = {n.name: n for n in plan.networks}
    # The fork's branches: a frozen embedding copy, the last 4 blocks, the final norm, a head.
    assert nets["critic"].params == 32002 * 4096 + 4 * 218_112_000 + 4096 + 4096
    assert nets["critic"].trainable == 4 * 218_112_000 + 4096 + 4096
    assert nets["reference"].params == 2 * 32002 * 4096 + 4 * 218_112_000 + 4096 and nets["reference"].in_engine
    assert nets["reward_model"].params == 6_738_415_616 + 4096  # the causal LM kept whole, plus v_head
    assert plan.to_dict()["params"] < full8.to_dict()["params"] - 12_000_000_000
    with pytest.raises(ValueError, match="unfreeze_last_n"):
        plan_memory(get_preset("smoke"), layout="hydra")


def test_plan_cli_json_and_errors(capsys):
    assert main(["plan", "--preset", "full", "--gpus", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["strategies"]) == ["ddp", "zero2", "zero3", "fsdp"] and out["gpus"] == 8
    assert out["fits"] == ["zero2", "zero3", "fsdp"]
    assert out["trainable"] == 1_003_532_288 + 872_456_193
    assert main(["plan", "--strategy", "zero2", "--gpus", "2"]) == 0
    text = capsys.readouterr().out
    assert "| zero2 |" in text and "| ddp |" not in text and "openchat/openchat_3.5" in text
    assert main(["plan", "--set", "policy_model.name_or_path=someone/unknown-7b"]) == 1
    assert "no published config written out for 'someone/unknown-7b'" in capsys.readouterr().err
    assert main(["plan", "--gpus", "0"]) == 1
    assert "gpus and rollout_batch must be >= 1" in capsys.readouterr().err


def test_plan_of_the_authors_run():
    from starling_lib.policy.train import check_config

    preset = get_preset("starling-apa")
    check_config(preset.policy)
    plan = plan_memory(preset, gpus=2, layout="hydra")
    a, r = plan.activations, plan.rollout
    # batch_size 4 per process, seq_length 2148, no checkpointing; 64 prompts per process sampled at once
    assert (a["micro_batch"], a["seq_len"], a["used"]) == (4, 2148, a["without_checkpointing"])
    assert r["batch"] == 64 and r["used"] == r["scoring_logits"] == 64 * (2 * 2148 * 32002 + 16 * 1024 * 32002)
    assert plan.strategies["zero2"]["gradients"] == 2 * 1_875_988_480 // 2  # policy + value branch, bf16, halved
    chunked = plan_memory(preset, gpus=2, layout="hydra", strategies=["zero2"], rollout_batch=4)
    assert chunked.rollout["scoring_logits"] == 4 * (2 * 2148 * 32002 + 16 * 1024 * 32002)
    assert chunked.strategies["zero2"]["fits"] and not plan.strategies["zero2"]["fits"]
