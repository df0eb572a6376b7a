"""Mirroring test-time augmentation as a network wrapper, so it composes with any MONAI inferer.

Each sliding-window patch is predicted on the original and on flipped copies; the flipped logits are flipped back
and all are averaged (nnU-Net v2 averages logits the same way). Flip only axes that do not swap left and right
when the labels are lateralised (RightParotid / LeftParotid): after RAS orientation spatial axis 0 is left-right.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class FlipEnsemble(nn.Module):
    """Average ``network``'s logits over all combinations of flips of ``spatial_axes`` (2^k passes).

    Args:
        network: maps ``(B, C_in, *spatial)`` to ``(B, C_out, *spatial)``.
        spatial_axes: spatial axes (0-based, excluding batch and channel) to mirror; at least one.

    Shapes: same as ``network``.
    """

    def __init__(self, network: nn.Module, spatial_axes: Sequence[int] = (1, 2)) -> None:
        super().__init__()
        self.network = network
        axes = sorted({int(a) + 2 for a in spatial_axes})
        if not axes:
            raise ValueError("FlipEnsemble needs at least one spatial axis to flip")
        self.flip_dims = [list(combo) for r in range(1, len(axes) + 1) for combo in itertools.combinations(axes, r)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        for dims in self.flip_dims:
            logits = logits + torch.flip(self.network(torch.flip(x, dims)), dims)
        return logits / (1 + len(self.flip_dims))
