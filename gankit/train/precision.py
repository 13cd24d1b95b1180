"""Mixed precision: which autocast dtype a run uses, and whether the machine supports it."""
from __future__ import annotations

import contextlib
import functools

import torch

from ..errors import ConfigError


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        if device.type == "cuda":
            # fp32 (cuDNN's convolutions use TF32 tensor cores by PyTorch's default): on an H200 it
            # beat bf16 autocast for gankit's GANs, whose small layers gain less from bf16 than the
            # casts cost (docs/gpu.md has the table).
            return "fp32"
        return "bf16" if cpu_has_bf16() else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: fp16 needs a CUDA device; use bf16, fp32 or auto on CPU")
    return name


def precision_reason(requested: str, resolved: str, device: torch.device) -> str:
    """Why a run uses ``resolved``, in a few words (printed at the start, kept in runtime.json)."""
    if requested != "auto":
        return f"train.precision={requested}"
    if device.type == "cuda":
        return "auto on a CUDA GPU: fp32 with TF32 convolutions was faster than bf16 autocast (docs/gpu.md)"
    return ("auto: this CPU has native bf16 dot products" if resolved == "bf16"
            else "auto: this CPU has no native bf16 dot products")


def autocast_factory(precision: str, device: torch.device):
    """A zero-argument callable returning the autocast context for forward passes. On a GPU the
    autocast weight cache is off: a CUDA graph must not capture casts cached by an earlier step."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return functools.partial(torch.autocast, device_type=device.type, dtype=dtype,
                             cache_enabled=device.type != "cuda")
