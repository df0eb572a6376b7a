"""One entry point for the bundle's networks: ``build_network("unet" | "dynunet" | "fcn8s", ...)``.

- ``unet``: MONAI ``UNet`` (residual units, strided convolutions), the bundle's default.
- ``dynunet``: MONAI ``DynUNet``, nnU-Net style: kernel sizes and strides planned from the patch size and the voxel
  spacing (:func:`dynunet_plan`), widths doubling per level up to 10x the first, deep supervision heads.
- ``fcn8s``: :class:`medseg.networks.fcn.FCN8s`, the FCN-8s baseline.

All three are 2D or 3D by ``spatial_dims`` and map ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)``
logits (DynUNet with deep supervision returns ``(B, 1 + heads, out_channels, *spatial)`` in training mode).

Where a network runs, for training and inference alike: :func:`resolve_device`. How it runs there, its path on the
machine: precision (``fp32``, ``bf16`` or ``auto``), memory order and window batch, chosen once at start
(:func:`choose_network_path`).

``fp32`` (default) is the exact reference. On a CPU it runs with the fastest *exact* levers (same float32
arithmetic, only the order of work changes; masks identical on the shipped model, see below):

* channels-last memory order (``torch.channels_last_3d`` for 3D networks, ``torch.channels_last`` for 2D ones):
  oneDNN's native layout for CPU convolutions, so no reorder per layer;
* a sliding-window batch of as many windows as the CPU has threads (at most the bundle's ``sw_batch_size``): one
  window per core keeps each core's working set in its cache; the bundle's value stands when the caller overrides
  ``sw_batch_size``, and on GPUs.

``bf16`` (opt-in, or ``auto`` where the hardware has it) runs the network in channels-last order under
``torch.autocast(bfloat16)``: convolutions compute in bfloat16 on float32 weights, and the logits are cast back to
float32 before the sliding window blends them, so blending, softmax, argmax and inversion stay in float32. It needs
hardware bfloat16: on CPU the ``avx512_bf16`` or ``amx_bf16`` flag (``/proc/cpuinfo``, or torch's own check where
there is no such file); emulated bfloat16 is slower than fp32. On CUDA, ``torch.cuda.is_bf16_supported()``.
``auto`` is ``bf16`` where it is supported and ``fp32`` elsewhere.

Measured on the project's benchmark CPU (AMD EPYC Zen 4, 2 cores, ``avx512_bf16``; the network section of
``benchmarks/results/amd-epyc-2core.md``, levers against the plain network with the bundle's window batch of 4):
channels-last 1.05x, window batch 2 1.27x, bf16 2.59x, all with identical fp32 masks except bf16 (lowest class Dice
0.995); ``benchmarks/network.py``'s row ``medseg_cpu_default`` measures the combination chosen here. No compiled or
exported graph: ``torch.compile`` gained 1.34x on that CPU but costs a minute of compilation per
process and per window shape, which a batch of small scans does not win back. Measured again on a 2-core Intel Xeon
(AVX-512, fp32, channels-last, window batch 2): one network call 0.100 -> 0.077 s (1.3x) compiled, but the compile
takes 25.7 s for the full window batch plus 11.3 s more for the last, smaller one (a recompile), and still 4.9 s per
process with the inductor cache warm; a 128^3 case has 5 window batches (0.1 s saved), so a batch of 10 such cases
loses 3.9 s even with a warm cache, and a full-size CT's network stage (0.12 s after the body crop) has nothing to
win back.

``ONEDNN_MAX_CPU_ISA=AVX2`` (with ``ATEN_CPU_CAPABILITY=avx2``) makes a newer CPU run as an AVX2-only one; ``auto``
then resolves to fp32 (:func:`onednn_isa_cap`), as it does on such a CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from monai.networks.nets import DynUNet, UNet
from torch import nn

from medseg.errors import MedsegError
from medseg.inference.options import PRECISIONS
from medseg.networks.fcn import FCN8s

NETWORKS = ("unet", "dynunet", "fcn8s")


def dynunet_plan(
    patch_size: Sequence[int], spacing: Sequence[float], max_downsamplings: int = 5, min_feature_size: int = 4
) -> tuple[list[list[int]], list[list[int]]]:
    """nnU-Net's rule for kernel sizes and strides.

    At each level an axis is downsampled (stride 2) while its spacing is at most twice the finest spacing and its
    feature map stays at least ``2 * min_feature_size`` voxels; an axis more than twice as coarse as the finest gets
    kernel 1 (no in-plane mixing across thick slices) until downsampling the others has caught up.

    Args:
        patch_size: training patch size per spatial axis (voxels).
        spacing: voxel spacing per spatial axis (mm), same length.
        max_downsamplings: at most this many stride-2 levels.
        min_feature_size: smallest feature map size an axis may be downsampled to.

    Returns:
        ``(kernel_sizes, strides)``, one entry per level; the first stride is all ones (the input block).

    Raises:
        MedsegError: when the patch size is not divisible by the planned total stride.
    """
    if len(patch_size) != len(spacing):
        raise MedsegError(None, f"patch_size {list(patch_size)} and spacing {list(spacing)} differ in length")
    sizes = [int(s) for s in patch_size]
    current = [float(s) for s in spacing]
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * len(sizes)]
    for _ in range(max_downsamplings):
        finest = min(current)
        ratio = [s / finest for s in current]
        stride = [2 if r <= 2 and size >= 2 * min_feature_size else 1 for r, size in zip(ratio, sizes, strict=True)]
        if all(s == 1 for s in stride):
            break
        kernels.append([3 if r <= 2 else 1 for r in ratio])
        strides.append(stride)
        sizes = [size // s for size, s in zip(sizes, stride, strict=True)]
        current = [c * s for c, s in zip(current, stride, strict=True)]
    kernels.append([3] * len(sizes))  # bottleneck
    total = [1] * len(sizes)
    for stride in strides:
        total = [t * s for t, s in zip(total, stride, strict=True)]
    if any(p % t for p, t in zip(patch_size, total, strict=True)):
        raise MedsegError(None, f"patch_size {list(patch_size)} is not divisible by the DynUNet total stride {total}")
    return kernels, strides


def build_network(
    name: str,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    num_res_units: int = 2,
    norm: str = "instance",
    dropout: float = 0.0,
    patch_size: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    deep_supervision: bool = True,
    deep_supervision_heads: int = 2,
) -> nn.Module:
    """Build the network called ``name`` (one of :data:`NETWORKS`).

    Args:
        name: ``"unet"``, ``"dynunet"`` or ``"fcn8s"``.
        spatial_dims: 2 or 3.
        in_channels: image channels (1, or ``2n+1`` for 2.5D).
        out_channels: classes including background.
        channels: UNet widths per level; DynUNet and FCN-8s take ``channels[0]`` as their base width.
        num_res_units: residual units per UNet level.
        norm: normalisation layer name (MONAI names: ``"instance"``, ``"batch"``).
        dropout: dropout probability.
        patch_size, spacing: DynUNet only: the kernel/stride plan (:func:`dynunet_plan`) needs both.
        deep_supervision, deep_supervision_heads: DynUNet only.

    Raises:
        MedsegError: unknown name, bad dimensionality or an inconsistent DynUNet plan.
    """
    if spatial_dims not in (2, 3):
        raise MedsegError(None, f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    widths = [int(c) for c in channels]
    if name == "unet":
        return UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=widths,
            strides=[2] * (len(widths) - 1),
            num_res_units=num_res_units,
            norm=norm,
            dropout=dropout,
        )
    if name == "dynunet":
        if patch_size is None or spacing is None:
            raise MedsegError(None, "dynunet needs patch_size and spacing to plan its kernels and strides")
        kernels, strides = dynunet_plan(patch_size[:spatial_dims], spacing[:spatial_dims])
        base = widths[0]
        filters = [min(base * 2**level, 10 * base) for level in range(len(strides))]
        return DynUNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=filters,
            dropout=dropout,
            norm_name=norm,
            deep_supervision=deep_supervision,
            deep_supr_num=max(1, min(deep_supervision_heads, len(strides) - 2)),
            res_block=True,
        )
    if name == "fcn8s":
        return FCN8s(spatial_dims, in_channels, out_channels, base_channels=widths[0], norm=norm, dropout=dropout)
    raise MedsegError(None, f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")


def resolve_device(value: Any) -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.

    Raises:
        MedsegError: an unknown device, or CUDA asked for where none is available.
    """
    if isinstance(value, torch.device):
        device = value
    else:
        text = "auto" if value is None else str(value).strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except RuntimeError as err:
            raise MedsegError(None, f"--device must be auto, cpu or cuda[:N], got {value!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedsegError(None, f"--device {value!r}: CUDA is not available on this machine (use --device cpu)")
    if device.type not in ("cpu", "cuda"):
        raise MedsegError(None, f"--device must be auto, cpu or cuda[:N], got {value!r}")
    return device


NetworkPrecision = Literal["fp32", "bf16"]  # what runs
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


# oneDNN instruction-set caps (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``) below bfloat16 dot products:
# under one of these, oneDNN runs bfloat16 convolutions emulated, whatever the CPU has.
ONEDNN_ISA_VARIABLES: tuple[str, ...] = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
ONEDNN_ISAS_WITHOUT_BF16: frozenset[str] = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def onednn_isa_cap() -> str | None:
    """The oneDNN instruction-set cap set in the environment when it excludes bfloat16 instructions (``AVX2``,
    say: how an AVX2-only CPU is emulated on a newer one); ``None`` when there is none or it allows them."""
    for variable in ONEDNN_ISA_VARIABLES:
        value = os.environ.get(variable, "").strip().upper()
        if value in ONEDNN_ISAS_WITHOUT_BF16:
            return f"{variable}={value}"
    return None


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
    """Whether ``device`` computes in bfloat16 in hardware: a CPU with ``avx512_bf16`` or ``amx_bf16`` (and no
    oneDNN instruction-set cap below them, :func:`onednn_isa_cap`), or a CUDA device for which
    ``torch.cuda.is_bf16_supported()``."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_bf16(device)
    if device.type == "cpu":
        if onednn_isa_cap() is not None:
            return False
        return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS) or _torch_cpu_bf16()
    return False


def check_precision(precision: str, device: torch.device | str) -> NetworkPrecision:
    """The precision the network runs at for the requested ``precision`` (``auto``: ``bf16`` where ``device`` has
    bfloat16 hardware, else ``fp32``), after checking that ``device`` supports it.

    Raises:
        MedsegError: an unknown precision, or ``bf16`` on a device without bfloat16 hardware.
    """
    if precision not in PRECISIONS:
        raise MedsegError(None, f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision == "auto":
        return "bf16" if supports_bf16(device) else "fp32"
    if precision == "bf16" and not supports_bf16(device):
        if device.type == "cuda":
            why = f"CUDA device {device} has no bfloat16 support (torch.cuda.is_bf16_supported() is False)"
        elif device.type == "cpu" and onednn_isa_cap() is not None:
            why = f"{onednn_isa_cap()} caps oneDNN below bfloat16 instructions, so bfloat16 would be emulated"
        elif device.type == "cpu":
            why = (
                f"this CPU lacks the {' or '.join(CPU_BF16_FLAGS)} flag (neither in {CPUINFO} nor found by torch), "
                "so bfloat16 would be emulated and slower than fp32"
            )
        else:
            why = f"device {device} is neither a CPU nor a CUDA device"
        raise MedsegError(None, f"--precision bf16: {why}; use --precision fp32 or auto")
    return "bf16" if precision == "bf16" else "fp32"


@dataclass(frozen=True)
class NetworkPath:
    """How the network runs on this machine (:func:`choose_network_path`).

    Attributes:
        precision: ``fp32`` or ``bf16`` (resolved from ``auto``).
        channels_last: weights and windows in channels-last memory order.
        sw_batch_size: windows per network call; ``None``: the bundle's.
        why: one line saying what was chosen and why (for logs and the benchmark report).
    """

    precision: NetworkPrecision
    channels_last: bool
    sw_batch_size: int | None
    why: str


def cpu_threads() -> int:
    """The threads torch computes with (``torch.get_num_threads()``: the CPUs this process may use, or
    ``OMP_NUM_THREADS``), at least 1."""
    return max(1, int(torch.get_num_threads()))


def choose_network_path(
    precision: str,
    device: torch.device | str,
    spatial_dims: int = 3,
    bundle_sw_batch_size: int | None = None,
    sw_batch_size_fixed: bool = False,
    threads: int | None = None,
) -> NetworkPath:
    """The fastest exact network path for ``device`` at the requested ``precision`` (see the module notes): on a
    CPU channels-last order and a window batch of ``threads`` windows (at most ``bundle_sw_batch_size``; unchanged
    when ``sw_batch_size_fixed``, the caller's own value); ``bf16`` in channels-last order everywhere; ``fp32`` on
    a GPU as it is. Rules from the CPU's features and thread count, no measurement: choosing costs nothing.

    Raises:
        MedsegError: as :func:`check_precision`.
    """
    device = torch.device(device)
    resolved = check_precision(precision, device)
    layout_ok = spatial_dims in (2, 3)
    if device.type != "cpu":
        channels_last = resolved == "bf16" and layout_ok
        why = f"{device.type}: {resolved}" + (", channels-last" if channels_last else "")
        return NetworkPath(resolved, channels_last, None, why)
    batch: int | None = None
    if spatial_dims == 3 and not sw_batch_size_fixed and bundle_sw_batch_size:
        threads = cpu_threads() if threads is None else max(1, int(threads))
        batch = max(1, min(int(bundle_sw_batch_size), threads))
    parts = [f"cpu ({os.cpu_count()} CPUs): {resolved}"]
    if resolved == "fp32" and precision == "auto":
        parts.append(f"(no {' or '.join(CPU_BF16_FLAGS)})")
    if layout_ok:
        parts.append("channels-last")
    if batch is not None:
        parts.append(f"window batch {batch} (one per thread)")
    return NetworkPath(resolved, layout_ok, batch, ", ".join(parts))


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


def prepare_network(
    network: nn.Module, precision: NetworkPrecision, spatial_dims: int = 3, channels_last: bool | None = None
) -> nn.Module:
    """``network`` made ready for its path, in place (and returned): its weights in channels-last memory order,
    once, when ``channels_last`` (default: for ``bf16`` only); they stay float32 (autocast casts them per call)."""
    if channels_last is None:
        channels_last = precision == "bf16"
    if channels_last:
        network.to(memory_format=memory_format(spatial_dims))  # type: ignore[call-overload]  # stubs lack it
    return network


def autocast_context(device: torch.device | str, precision: NetworkPrecision) -> contextlib.AbstractContextManager[Any]:
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
    """Runs ``predictor`` on its path inside a sliding window: each window batch in channels-last order (when
    ``channels_last``, default: for ``bf16``), under bfloat16 autocast for ``bf16``, the logits back in float32 (so
    the window blending is float32).

    Shapes: as ``predictor`` (``(B, C_in, *spatial)`` -> ``(B, C_out, *spatial)``), outputs float32.
    """

    def __init__(
        self,
        predictor: Callable[..., Any],
        device: torch.device | str,
        precision: NetworkPrecision,
        channels_last: bool | None = None,
    ) -> None:
        super().__init__()
        self.predictor = predictor
        self.device_type = torch.device(device).type
        self.precision: NetworkPrecision = precision
        self.channels_last = precision == "bf16" if channels_last is None else channels_last

    def forward(self, windows: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.channels_last:
            windows = to_channels_last(windows)
        if self.precision == "fp32":
            return self.predictor(windows, *args, **kwargs)
        with autocast_context(self.device_type, self.precision):
            output = self.predictor(windows, *args, **kwargs)
        return as_float32(output)
