"""One entry point for the bundle's networks: ``build_network("unet" | "dynunet" | "fcn8s", ...)``.

- ``unet``: MONAI ``UNet`` (residual units, strided convolutions), the bundle's default.
- ``dynunet``: MONAI ``DynUNet``, nnU-Net style: kernel sizes and strides planned from the patch size and the voxel
  spacing (:func:`dynunet_plan`), widths doubling per level up to 10x the first, deep supervision heads.
- ``fcn8s``: :class:`medseg.networks.fcn.FCN8s`, the FCN-8s baseline.

All three are 2D or 3D by ``spatial_dims`` and map ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)``
logits (DynUNet with deep supervision returns ``(B, 1 + heads, out_channels, *spatial)`` in training mode).

Where a network runs, for training and inference alike: :func:`resolve_device`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import DynUNet, UNet
from torch import nn

from medseg.errors import MedsegError
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
