"""The policy loop's launch configs (configs/policy_*.yaml): each is an accelerate config that
``accelerate launch`` turns into the engine it names (DDP, FSDP2, DeepSpeed ZeRO-2 bf16), read by
accelerate's own launcher code and plugins (no GPU needed: nothing is launched), and the loop refuses
a launcher whose precision contradicts the run's."""

import os

import pytest
import transformers
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from starling_lib.config import get_preset
from starling_lib.paths import ROOT
from starling_lib.policy.train import train_policy

CONFIGS = ROOT / "configs"


def _launch_env(name: str) -> tuple:
    """(parsed launch args, the environment ``accelerate launch --config_file`` gives each process)."""
    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "starling_lib.cli",
                                               "apa", "train"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:  # what accelerate's launch_command does before deepspeed_launcher
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return args, prepare_deepspeed_cmd_env(args)[1]
    return args, prepare_multi_gpu_env(args)


@pytest.mark.parametrize("name", ["policy_ddp.yaml", "policy_fsdp.yaml", "policy_zero2_bf16.yaml"])
def test_policy_launch_configs_give_their_engine(name, monkeypatch):
    cluster = ClusterConfig.from_yaml_file(str(CONFIGS / name))  # unknown top-level keys would raise here
    assert (cluster.num_machines, cluster.num_processes, cluster.mixed_precision, cluster.use_cpu) == (1, 8, "bf16", False)
    args, env = _launch_env(name)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16" and args.num_processes == 8
    for key, value in env.items():  # the plugins read the environment, as in each launched process
        monkeypatch.setenv(key, value)
    if name == "policy_ddp.yaml":
        assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    elif name == "policy_fsdp.yaml":
        assert args.use_fsdp and env["ACCELERATE_USE_FSDP"] == "true"
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.state_dict_type.name == "SHARDED_STATE_DICT"
        # The unit it wraps is the block class of Mistral-7B (OpenChat 3.5), the policy and the critic trunk.
        tiny = transformers.MistralConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, num_key_value_heads=1)
        block = transformers.MistralForCausalLM(tiny).model.layers[0]
        assert plugin.transformer_cls_names_to_wrap == [type(block).__name__] == ["MistralDecoderLayer"]
    else:
        assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
        plugin = DeepSpeedPlugin()
        plugin.set_mixed_precision("bf16")
        config = plugin.deepspeed_config
        # The authors' zero2-bf16.yaml (Starling's trlx fork): ZeRO-2, bf16, clipping 1.0, no accumulation
        # by DeepSpeed, nothing offloaded. The micro-batch size is left to the loop ("auto").
        assert config["zero_optimization"]["stage"] == 2 and config["bf16"] == {"enabled": True}
        assert config["gradient_clipping"] == 1.0 and config["gradient_accumulation_steps"] == 1
        assert config["zero_optimization"]["offload_optimizer"]["device"] == "none"
        assert config["train_micro_batch_size_per_gpu"] == "auto" and "optimizer" not in config
        assert get_preset("full").policy.max_grad_norm == config["gradient_clipping"]  # the loop insists they agree
    raw = yaml.safe_load((CONFIGS / name).read_text())
    assert raw["distributed_type"] == {"policy_ddp.yaml": "MULTI_GPU", "policy_fsdp.yaml": "FSDP",
                                       "policy_zero2_bf16.yaml": "DEEPSPEED"}[name]


def test_a_launcher_precision_other_than_the_runs_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # as accelerate launch sets it from mixed_precision
    preset = get_preset("smoke", ["runtime.dtype=fp32", "runtime.device=cpu"])
    with pytest.raises(ValueError, match="mixed_precision=bf16 but this run computes in fp32.*runtime.dtype=bf16"):
        train_policy(preset, ["a prompt"], None, None, None, None, tmp_path)  # refused before any model is touched
    assert not os.environ.get("WORLD_SIZE")


def test_configs_readme_names_the_policy_configs():
    readme = (CONFIGS / "README.md").read_text()
    section = readme[readme.index("## Policy tuning on one machine, several processes, several GPUs"):]
    for name in ("policy_ddp.yaml", "policy_fsdp.yaml", "policy_zero2_bf16.yaml", "torchrun --nproc_per_node",
                 "accelerate launch --config_file configs/policy_zero2_bf16.yaml"):
        assert name in section, name
