"""Inference precision: ``fp32`` (default: exact, reproducible) or ``bf16`` (opt-in, about 2x faster on CPUs with
bfloat16 instructions, a few organ-boundary voxels differ).

``bf16`` runs the network in channels-last memory order (``torch.channels_last_3d`` for 3D networks,
``torch.channels_last`` for 2D ones) under ``torch.autocast(bfloat16)``: convolutions compute in bfloat16 on
float32 weights, and the logits are cast back to float32 before the sliding window blends them, so blending,
softmax, argmax and inversion stay in float32. On this project's benchmark CPU (AMD EPYC Zen 4) that is 1.97x the
fp32 network with a lowest organ Dice of 0.996 against the fp32 masks (``benchmarks/network.py``).

It needs hardware bfloat16: on CPU the ``avx512_bf16`` or ``amx_bf16`` flag (``/proc/cpuinfo``, or torch's own
check where there is no such file); emulated bfloat16 is slower than fp32. On CUDA, ``torch.cuda.is_bf16_supported()``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from medseg.errors import MedsegError

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
CPU_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def _torch_cpu_bf16() -> bool:
    """torch's own check of the CPU's bfloat16 instructions (AVX512-BF16 or AMX tiles)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def _cuda_bf16(device: torch.device) -> bool:
    if not torch.cuda.is_available():
        return False
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported())


def supports_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes in bfloat16 in hardware: a CPU with ``avx512_bf16`` or ``amx_bf16``, or a CUDA
    device for which ``torch.cuda.is_bf16_supported()``."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_bf16(device)
    if device.type == "cpu":
        return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS) or _torch_cpu_bf16()
    return False


def check_precision(precision: str, device: torch.device | str) -> Precision:
    """``precision`` as a :data:`Precision`, after checking that ``device`` supports it.

    Raises:
        MedsegError: an unknown precision, or ``bf16`` on a device without bfloat16 hardware.
    """
    if precision not in PRECISIONS:
        raise MedsegError(None, f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "bf16" and not supports_bf16(device):
        if device.type == "cuda":
            why = f"CUDA device {device} has no bfloat16 support (torch.cuda.is_bf16_supported() is False)"
        elif device.type == "cpu":
            why = (
                f"this CPU lacks the {' or '.join(CPU_BF16_FLAGS)} flag (neither in {CPUINFO} nor found by torch), "
                "so bfloat16 would be emulated and slower than fp32"
            )
        else:
            why = f"device {device} is neither a CPU nor a CUDA device"
        raise MedsegError(None, f"--precision bf16: {why}; use --precision fp32")
    return "bf16" if precision == "bf16" else "fp32"


def memory_format(spatial_dims: int) -> torch.memory_format:
    """The channels-last memory format of a ``spatial_dims``-D network's tensors."""
    if spatial_dims == 3:
        return torch.channels_last_3d
    if spatial_dims == 2:
        return torch.channels_last
    raise ValueError(f"channels-last memory order exists for 2D and 3D networks, not {spatial_dims}D")


def to_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` ``(B, C, *spatial)`` in channels-last memory order (same values); other ranks as they are."""
    if tensor.ndim in (4, 5):
        return tensor.contiguous(memory_format=memory_format(tensor.ndim - 2))
    return tensor


def prepare_network(network: nn.Module, precision: Precision, spatial_dims: int = 3) -> nn.Module:
    """``network`` made ready for ``precision``, in place (and returned): for ``bf16`` its weights in channels-last
    memory order, once (they stay float32: autocast casts them per call); for ``fp32`` untouched."""
    if precision == "bf16":
        network.to(memory_format=memory_format(spatial_dims))  # type: ignore[call-overload]  # stubs lack it
    return network


def autocast_context(device: torch.device | str, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast(device type, bfloat16)`` for ``bf16``; a no-op context for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_float32(output: Any) -> Any:
    """The network's output with every floating tensor (also inside tuples, lists and dicts) in float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        return type(output)(as_float32(item) for item in output)
    if isinstance(output, dict):
        return {key: as_float32(value) for key, value in output.items()}
    return output


class PrecisionPredictor(nn.Module):
    """Runs ``predictor`` at ``precision`` inside a sliding window: each window batch in channels-last order,
    the call under bfloat16 autocast, the logits back in float32 (so the window blending is float32).

    Shapes: as ``predictor`` (``(B, C_in, *spatial)`` -> ``(B, C_out, *spatial)``), outputs float32.
    """

    def __init__(self, predictor: Callable[..., Any], device: torch.device | str, precision: Precision) -> None:
        super().__init__()
        self.predictor = predictor
        self.device_type = torch.device(device).type
        self.precision: Precision = precision

    def forward(self, windows: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.precision == "fp32":
            return self.predictor(windows, *args, **kwargs)
        with autocast_context(self.device_type, self.precision):
            output = self.predictor(to_channels_last(windows), *args, **kwargs)
        return as_float32(output)
