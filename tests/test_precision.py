"""The compute dtype: ``auto`` from the hardware's bf16 support, explicit choices, the old alias, the
environment override, and autocast. Flags are fed in as text, so every CPU runs every case."""

import os

import pytest
import torch

from starling_lib import precision
from starling_lib.config import RuntimeConfig, get_preset
from starling_lib.precision import (autocast_context, native_bf16_from_cpuinfo, precision_record, requested_dtype,
                                    resolve_device, resolve_precision, trainer_precision_args)

ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512vl\n"
SAPPHIRE = "flags\t\t: avx512f amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd crc32 atomics\n"


@pytest.mark.parametrize("text, native", [(ZEN3, False), (ZEN4, True), (SAPPHIRE, True), (GRAVITON3, True),
                                          (GRAVITON2, False), ("processor : 0\n", None)])
def test_native_bf16_read_from_cpu_flags(text, native):
    found, why = native_bf16_from_cpuinfo(text)
    assert found is native and why


@pytest.fixture
def fake_cpu(monkeypatch):
    """Pretend to be a CPU with (``True``), without (``False``) or with unreadable (``None``) bf16 flags."""
    def use(native):
        monkeypatch.setattr(precision, "cpu_native_bf16", lambda: (native, f"fake flags {native}"))
        monkeypatch.delenv(precision.ENV_VAR, raising=False)
    return use


def test_auto_is_fp32_on_every_cpu_and_says_why(fake_cpu):
    for native in (False, True, None):  # emulated bf16; native bf16 (measured slower end to end); unknown
        fake_cpu(native)
        chosen = resolve_precision(RuntimeConfig(), "cpu")
        assert (chosen.name, chosen.torch_dtype, chosen.autocast) == ("fp32", torch.float32, False)
        assert f"fake flags {native}" in chosen.reason
    fake_cpu(True)
    assert "bf16 autocast measured slower end to end" in resolve_precision("auto", "cpu").reason
    # every preset defaults to auto
    assert {get_preset(name).runtime.dtype for name in ("smoke", "tiny", "full")} == {"auto"}


def test_explicit_dtype_alias_and_environment(fake_cpu, monkeypatch):
    fake_cpu(False)
    emulated = resolve_precision(RuntimeConfig(dtype="bf16"), "cpu")
    assert emulated.name == "bf16" and "emulated" in emulated.reason  # honoured, with a warning in the reason
    assert resolve_precision(RuntimeConfig(dtype="fp32"), "cpu").name == "fp32"
    # the old boolean wins over dtype when set
    assert resolve_precision(RuntimeConfig(dtype="auto", bf16=True), "cpu").name == "bf16"
    assert resolve_precision(RuntimeConfig(dtype="bf16", bf16=False), "cpu").name == "fp32"
    assert requested_dtype("float32") == ("fp32", "dtype")
    # the environment decides auto, never an explicit choice
    monkeypatch.setenv(precision.ENV_VAR, "bf16")
    assert resolve_precision("auto", "cpu").name == "bf16"
    assert resolve_precision(RuntimeConfig(dtype="fp32"), "cpu").name == "fp32"
    monkeypatch.setenv(precision.ENV_VAR, "half")
    with pytest.raises(ValueError, match=r"\$STARLING_DTYPE='half'"):
        resolve_precision("auto", "cpu")


def test_bad_choices_are_refused_by_name(fake_cpu):
    fake_cpu(True)
    with pytest.raises(ValueError, match="runtime.dtype='bfloat8'"):
        resolve_precision(RuntimeConfig(dtype="bfloat8"), "cpu")
    with pytest.raises(ValueError, match="fp16 on CPU"):
        resolve_precision(RuntimeConfig(dtype="fp16"), "cpu")


def test_autocast_follows_the_resolved_dtype():
    x = torch.ones(2, 2)
    with autocast_context("cpu", torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
    for off in (None, torch.float32, resolve_precision("fp32", "cpu")):
        with autocast_context("cpu", off):
            assert (x @ x).dtype == torch.float32
    with autocast_context("cpu", resolve_precision("bf16", "cpu")):
        assert (x @ x).dtype == torch.bfloat16
    assert trainer_precision_args(resolve_precision("bf16", "cpu")) == {"bf16": True, "fp16": False}
    assert trainer_precision_args(resolve_precision("fp32", "cpu")) == {"bf16": False, "fp16": False}


def test_device_and_record():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) == resolve_device(RuntimeConfig()) == expected
    assert resolve_device(RuntimeConfig(device="cpu")) == torch.device("cpu")
    resolve_precision("fp32", "cpu")
    record = precision_record()
    assert record["cpu"] and record["cpu_bf16_reason"]
    assert any(r["dtype"] == "fp32" and r["device"] == "cpu" for r in record["resolved"])


def test_num_threads_is_applied_checked_and_reaches_child_processes(monkeypatch):
    from starling_lib.precision import apply_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert apply_threads(RuntimeConfig()) == before and os.environ["OMP_NUM_THREADS"] == "1"  # None: as it was
        assert apply_threads(RuntimeConfig(num_threads=3)) == 3 == torch.get_num_threads()
        assert os.environ["OMP_NUM_THREADS"] == "3"  # for spawned workers, kernels, torchrun ranks
        for bad in (0, -2, True, "2", 1.5):
            with pytest.raises(ValueError, match="runtime.num_threads"):
                apply_threads(RuntimeConfig(num_threads=bad))
    finally:
        torch.set_num_threads(before)


def test_every_command_runs_with_the_presets_threads(monkeypatch, capsys):
    from starling_lib import cli

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert cli.main(["plan", "--preset", "smoke", "--set", "runtime.num_threads=3", "--json"]) == 0
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
        capsys.readouterr()
        assert cli.main(["rm", "train", "--preset", "smoke", "--set", "runtime.num_threads=0"]) != 0
        assert "runtime.num_threads: 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
