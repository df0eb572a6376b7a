from __future__ import annotations

import torch
from torch import nn

from medseg.networks import FlipEnsemble


class _Affine(nn.Module):
    """Not flip-invariant: output = input * weight along the last axis, so a wrong flip-back would show."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.arange(1.0, depth + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x * self.weight, -x], dim=1)


def test_flip_ensemble_averages_flipped_back_logits() -> None:
    net = _Affine(depth=4)
    x = torch.randn(2, 1, 3, 5, 4)
    ensemble = FlipEnsemble(net, spatial_axes=(2,))
    expected = (net(x) + torch.flip(net(torch.flip(x, [4])), [4])) / 2
    assert torch.allclose(ensemble(x), expected)


def test_flip_ensemble_uses_every_combination_and_is_exact_for_equivariant_nets() -> None:
    ensemble = FlipEnsemble(nn.Identity(), spatial_axes=(1, 2))
    assert ensemble.flip_dims == [[3], [4], [3, 4]]
    x = torch.randn(1, 2, 4, 5, 6)
    assert torch.allclose(ensemble(x), x)
    scripted = torch.jit.script(FlipEnsemble(nn.Conv3d(2, 3, 1), spatial_axes=(0,)))
    assert scripted(x).shape == (1, 3, 4, 5, 6)
