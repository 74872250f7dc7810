"""Numeric precision: which dtype a run computes in, chosen for the hardware it runs on.

What it is for: bf16 autocast halves the cost of a matmul on hardware with bf16 instructions and
multiplies it by ~50 where bf16 is emulated (a 512x512 matmul on an AMD Zen 3 core: fp32 4.4 ms,
bf16 217 ms). So the default, ``runtime.dtype = "auto"``, is decided here once per process from
what the hardware *has*, never from the machine a default was tuned on:

- CUDA: bf16 where ``torch.cuda.is_bf16_supported()``, else fp32 (fp16 needs loss scaling: ask for
  it explicitly).
- CPU: fp32. Without native bf16 instructions (``avx512_bf16`` / ``amx_bf16`` on x86, ``bf16`` on
  ARMv8.6; read from ``/proc/cpuinfo``) bf16 is emulated and many times slower. With them, native
  is still not faster for this project's work: on a 2-core AMD EPYC with avx512_bf16, where a
  512x512 matmul is 5x faster in bf16, ``make reproduce`` on tiny ran 02 in 189 s and 03 in 399 s
  in bf16 against 154 s and 326 s in fp32 (reward-model training 74 s against 25 s, MiniLM
  encodings 28 s against 24 s; small matrices, in a new shape nearly every batch).
  A synthetic probe of forward and backward passes at varying lengths said the
  opposite (bf16 at 0.62-0.77x of fp32's time, flipping with the thread count), so no probe
  decides: fp32 is what holds on every CPU. ``runtime.dtype=bf16`` (or ``STARLING_DTYPE=bf16``)
  still runs bf16 autocast for anyone whose own measurement
  (``benchmarks/bench_reproduce.py --dtype bf16``) says it pays.
- anything else (MPS, XLA): fp32.

``STARLING_DTYPE=fp32|bf16|fp16`` in the environment decides ``auto`` for a whole run (tests, CI,
``make reproduce``) without editing a preset; an explicit ``runtime.dtype`` beats it.

Every resolved choice is remembered with its reason (:func:`precision_record`), so ``starling
info``, ``preset.json`` of each run and ``figures/MANIFEST.json`` say what a number was computed in.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass

import torch

DTYPE_NAMES = ("auto", "fp32", "bf16", "fp16")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ENV_VAR = "STARLING_DTYPE"
# CPU flags that mean bf16 runs in hardware: x86 (AVX512-BF16, AMX-BF16), ARMv8.6 (BF16).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class Precision:
    """A resolved compute dtype: ``fp32`` (no autocast), ``bf16`` or ``fp16`` (autocast)."""

    name: str
    """``fp32``, ``bf16`` or ``fp16``."""
    device_type: str
    """``cpu``, ``cuda``, ...: the device it was resolved for."""
    reason: str
    """Why this dtype, in words (shown by ``starling info`` and written into run records)."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.name]

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"

    def as_dict(self) -> dict:
        return {"dtype": self.name, "device": self.device_type, "reason": self.reason}


_USED: dict[tuple[str, str], Precision] = {}


def apply_threads(runtime=None) -> int:
    """Apply ``runtime.num_threads``: torch's intra-op threads in this process, and
    ``OMP_NUM_THREADS`` for the processes it starts (map_runs' spawned workers, notebook kernels,
    torchrun's ranks). ``None`` leaves both as they are. Returns the threads torch uses now.
    The CLI applies it for every command and ``starling reproduce`` passes it to each notebook's
    kernel; a script of your own calls this after ``get_preset``."""
    threads = thread_setting(runtime)
    if threads is not None:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return torch.get_num_threads()


def thread_setting(runtime=None) -> int | None:
    """``runtime.num_threads``, checked: ``None`` or a number >= 1 (a ``ValueError`` naming the field otherwise)."""
    threads = getattr(runtime, "num_threads", None)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"runtime.num_threads: {threads!r}; give a number of threads >= 1, or null for torch's "
                         "default (all cores)")
    return threads


def resolve_device(runtime=None) -> torch.device:
    """``auto`` (or ``None``) is CUDA when available, else CPU; any other string is a torch device
    string; a ``RuntimeConfig`` gives its ``device``."""
    if isinstance(runtime, torch.device):
        return runtime
    name = getattr(runtime, "device", runtime) or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def runtime_dtype(runtime=None, device=None) -> torch.dtype:
    """The torch dtype to autocast to for a ``RuntimeConfig`` (or a dtype name) on its device."""
    return resolve_precision(runtime, device).torch_dtype


def resolve_precision(runtime=None, device: torch.device | str | None = None) -> Precision:
    """The dtype to compute in on ``device`` (default: the runtime's) for a ``RuntimeConfig``, a dtype
    name, or ``None`` (= ``auto``).

    Raises ``ValueError`` for an unknown name, fp16 on CPU, or bf16 on a CUDA device without it.
    """
    if device is None:  # a RuntimeConfig's own device; ``auto`` for a bare dtype name
        device = resolve_device(getattr(runtime, "device", None))
    device_type = resolve_device(device).type
    requested, source = requested_dtype(runtime)
    if requested == "auto":
        name, reason = auto_dtype(device_type)
    else:
        name, reason = requested, f"{source} asks for {requested}"
        if name == "fp16" and device_type == "cpu":
            raise ValueError(f"{source}: fp16 on CPU is not supported here (no loss scaling on CPU); "
                             "use fp32 or bf16")
        if name == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{source}: this CUDA device has no bf16; use fp16 or fp32")
        if name == "bf16" and device_type == "cpu" and cpu_native_bf16()[0] is False:
            reason += " (emulated on this CPU: expect it to be many times slower than fp32)"
    precision = Precision(name, device_type, reason)
    _USED[(device_type, name)] = precision
    return precision


def requested_dtype(runtime=None) -> tuple[str, str]:
    """(``auto``/``fp32``/``bf16``/``fp16``, where it came from) for a runtime config, a name or ``None``."""
    if runtime is None or isinstance(runtime, str):
        name, source = runtime or "auto", "dtype"
    else:
        name, source = runtime.dtype, "runtime.dtype"
        legacy = getattr(runtime, "bf16", None)
        if legacy is not None:  # the old boolean, kept as an alias
            name, source = ("bf16" if legacy else "fp32"), "runtime.bf16"
    name = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(name, name)
    if name not in DTYPE_NAMES:
        raise ValueError(f"{source}={name!r}: choose one of {', '.join(DTYPE_NAMES)}")
    if name == "auto" and os.environ.get(ENV_VAR):
        env = os.environ[ENV_VAR].strip().lower()
        if env not in DTYPE_NAMES:
            raise ValueError(f"${ENV_VAR}={env!r}: choose one of {', '.join(DTYPE_NAMES)}")
        return env, f"${ENV_VAR}"
    return name, source


def auto_dtype(device_type: str) -> tuple[str, str]:
    """What ``auto`` means on a device type, with the reason."""
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this CUDA device supports bf16"
        return "fp32", "auto: this CUDA device has no bf16"
    if device_type == "cpu":
        native, why = cpu_native_bf16()
        if native:
            return "fp32", (f"auto: fp32 on CPU; {why}, but bf16 autocast measured slower end to end on such a "
                            "CPU (runtime.dtype=bf16 to use it anyway)")
        return "fp32", f"auto: fp32 on CPU; {why}"
    return "fp32", f"auto: fp32 on {device_type}"


@functools.lru_cache(maxsize=None)
def cpu_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> tuple[bool | None, str]:
    """(True/False, why) from the CPU's flags; (None, why) where they cannot be read."""
    try:
        with open(cpuinfo) as handle:
            text = handle.read()
    except OSError as exc:
        return None, f"{cpuinfo}: {exc.strerror or exc}"
    return native_bf16_from_cpuinfo(text)


def native_bf16_from_cpuinfo(text: str) -> tuple[bool | None, str]:
    """Parse ``/proc/cpuinfo`` text: x86 ``flags`` or ARM ``Features`` lines."""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return None, "no flags/Features line in /proc/cpuinfo"
    found = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if found:
        return True, f"the CPU has native bf16 ({', '.join(found)})"
    return False, "the CPU has no native bf16 (no avx512_bf16 / amx_bf16 / bf16 flag): bf16 would be emulated"


def trainer_precision_args(precision: Precision) -> dict:
    """``bf16`` / ``fp16`` flags of ``transformers.TrainingArguments`` (and TRL's configs) for ``precision``."""
    return {"bf16": precision.name == "bf16", "fp16": precision.name == "fp16"}


def autocast_context(device: torch.device | str, dtype: torch.dtype | Precision | None = None):
    """Autocast to ``dtype`` (a torch dtype or a :class:`Precision`) on ``device``; a no-op for fp32/``None``."""
    if isinstance(dtype, Precision):
        dtype = dtype.torch_dtype
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    device_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
    return torch.autocast(device_type, dtype=dtype)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def precision_record() -> dict:
    """What decided precision in this process: the CPU, its bf16 support, ``auto``'s answer on this
    CPU, and every dtype resolved so far with its reason (for run records and MANIFEST.json)."""
    native, why = cpu_native_bf16()
    return {
        "cpu": cpu_name(),
        "cpu_native_bf16": native,
        "cpu_bf16_reason": why,
        "torch_threads": torch.get_num_threads(),
        "dtype_env": os.environ.get(ENV_VAR) or None,
        "resolved": [p.as_dict() for p in _USED.values()],
    }
