from __future__ import annotations

import pytest
import torch
from monai.inferers import SliceInferer

from medseg.networks import AxialSliceInferer


def test_matches_monai_slice_inferer_on_a_2d_network() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)).eval()
    volume = torch.rand(1, 3, 40, 30, 7)
    ours = AxialSliceInferer(roi_size=[24, 24], sw_batch_size=16, overlap=0.25)
    monai = SliceInferer(
        roi_size=[24, 24], sw_batch_size=4, overlap=0.25, mode="gaussian", padding_mode="reflect", spatial_dim=2
    )
    with torch.no_grad():
        expected, got = monai(volume, network), ours(volume, network)
    assert got.shape == (1, 2, 40, 30, 7)
    assert torch.allclose(got, expected, atol=1e-5)


def test_small_volume_is_padded_by_mirroring_and_cropped_back() -> None:
    calls: list[tuple[int, ...]] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return x[:, :1] * 2

    volume = torch.rand(1, 1, 20, 18, 3)
    out = AxialSliceInferer(roi_size=[32, 32], sw_batch_size=8)(volume, network)
    assert torch.allclose(out, volume * 2)
    assert calls == [(3, 1, 32, 32)]  # three slices in one batch, each seen as a 2D image


def test_roi_must_be_in_plane() -> None:
    with pytest.raises(ValueError, match="in-plane"):
        AxialSliceInferer(roi_size=[32, 32, 1])


def test_precision_inferer_runs_the_training_forward_in_bf16_and_returns_float32() -> None:
    from medseg.networks import PrecisionInferer

    network = torch.nn.Conv3d(1, 2, 3, padding=1)
    inputs = torch.randn(2, 1, 8, 8, 8)
    seen: list[torch.dtype] = []
    network.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    exact = PrecisionInferer("fp32")(inputs, network)
    mixed = PrecisionInferer("bf16")(inputs, network) if _cpu_bf16() else None
    assert seen[0] == torch.float32 and exact.dtype == torch.float32
    if mixed is not None:
        assert seen[1] == torch.bfloat16 and mixed.dtype == torch.float32
        assert torch.allclose(mixed, exact, atol=0.05)
        mixed.sum().backward()  # gradients flow back to the float32 weights
        assert network.weight.grad is not None and network.weight.grad.dtype == torch.float32


def _cpu_bf16() -> bool:
    from medseg.networks.factory import supports_bf16

    return supports_bf16("cpu")
