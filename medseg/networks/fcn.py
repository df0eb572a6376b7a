"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015) for 2D or 3D images, as a baseline next to the U-Nets.

The encoder is VGG-shaped (5 blocks of 3x3 convolutions, each ending in a 2x max-pool), followed by the
"fully convolutional" fc6/fc7 layers and a 1x1 class score. Decoding is the paper's 8-stride skip architecture:
upsample the stride-32 score 2x, add the pool4 score, upsample 2x, add the pool3 score, upsample 8x. Widths scale
with ``base_channels`` (VGG-16 is ``base_channels=64``), and the network is trained from scratch, so every
encoder convolution is followed by a normalisation layer (the original had none and started from ImageNet weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers import Conv, Pool
from torch import nn


class _VGGBlock(nn.Sequential):
    """``n_convs`` x (3^d conv -> norm -> ReLU), then a 2x max-pool."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, n_convs: int, norm: str | tuple | None
    ) -> None:
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers.append(
                Convolution(
                    spatial_dims,
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size=3,
                    act="relu",
                    norm=norm,
                )
            )
        layers.append(Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2))
        super().__init__(*layers)


def _upsampler(spatial_dims: int, channels: int, factor: int) -> nn.Module:
    """Learned exact ``factor``-x upsampling (transposed convolution, kernel 2*factor, padding factor/2)."""
    return Conv[Conv.CONVTRANS, spatial_dims](
        channels, channels, kernel_size=2 * factor, stride=factor, padding=factor // 2, bias=False
    )


class FCN8s(nn.Module):
    """FCN-8s for ``spatial_dims`` 2 or 3.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for CT; 2n+1 for 2.5D slice stacks).
        out_channels: classes including background.
        base_channels: width of the first block; blocks have (1, 2, 4, 8, 8) x this, fc6/fc7 16 x this.
        norm: MONAI norm name for every encoder convolution (``"instance"``, ``"batch"``, or ``None``).
        dropout: dropout after fc6 and fc7 (0.5 in the paper).

    Shapes: ``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)`` logits. Any spatial size works: the
    input is padded up to a multiple of 32 and the logits are cropped back.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        base_channels: int = 16,
        norm: str | tuple | None = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        widths: Sequence[int] = [base_channels * m for m in (1, 2, 4, 8, 8)]
        fc_width = 16 * base_channels
        conv = Conv[Conv.CONV, spatial_dims]
        self.spatial_dims = spatial_dims
        self.block1 = _VGGBlock(spatial_dims, in_channels, widths[0], 2, norm)  # -> 1/2
        self.block2 = _VGGBlock(spatial_dims, widths[0], widths[1], 2, norm)  # -> 1/4
        self.block3 = _VGGBlock(spatial_dims, widths[1], widths[2], 3, norm)  # -> 1/8
        self.block4 = _VGGBlock(spatial_dims, widths[2], widths[3], 3, norm)  # -> 1/16
        self.block5 = _VGGBlock(spatial_dims, widths[3], widths[4], 3, norm)  # -> 1/32
        # fc6 was a 7x7 convolution over VGG's 7x7 pool5 map; 3^d keeps it usable on small 3D patches. No norm here:
        # the stride-32 map of a small patch can be a single voxel, where instance norm is undefined.
        self.fc6 = Convolution(spatial_dims, widths[4], fc_width, kernel_size=3, act="relu", norm=None, dropout=dropout)
        self.fc7 = Convolution(spatial_dims, fc_width, fc_width, kernel_size=1, act="relu", norm=None, dropout=dropout)
        self.score_fr = conv(fc_width, out_channels, kernel_size=1)
        self.score_pool4 = conv(widths[3], out_channels, kernel_size=1)
        self.score_pool3 = conv(widths[2], out_channels, kernel_size=1)
        self.upscore2 = _upsampler(spatial_dims, out_channels, 2)
        self.upscore_pool4 = _upsampler(spatial_dims, out_channels, 2)
        self.upscore8 = _upsampler(spatial_dims, out_channels, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size: list[int] = list(x.shape[2:])
        x = self._pad_to_stride(x)
        pool3 = self.block3(self.block2(self.block1(x)))  # stride 8
        pool4 = self.block4(pool3)  # stride 16
        pool5 = self.block5(pool4)  # stride 32
        score_fr = self.score_fr(self.fc7(self.fc6(pool5)))  # stride 32
        upscore2 = self.upscore2(score_fr)  # stride 16
        fuse_pool4 = upscore2 + self.score_pool4(pool4)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)  # stride 8
        fuse_pool3 = upscore_pool4 + self.score_pool3(pool3)
        logits = self.upscore8(fuse_pool3)  # stride 1
        return self._crop(logits, size)

    def _pad_to_stride(self, x: torch.Tensor) -> torch.Tensor:
        stride = 32  # five 2x poolings (a literal: TorchScript cannot read module-level constants)
        pad: list[int] = []
        for s in x.shape[2:][::-1]:  # F.pad lists the last dimension first
            pad += [0, (stride - s % stride) % stride]
        return F.pad(x, pad) if sum(pad) > 0 else x

    def _crop(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        if self.spatial_dims == 2:
            return x[:, :, : size[0], : size[1]]
        return x[:, :, : size[0], : size[1], : size[2]]
