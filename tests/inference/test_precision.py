"""``--precision``: the bfloat16 support check, the channels-last network and the autocast predictor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import UNet
from torch import nn

from medseg.errors import MedsegError
from medseg.inference import precision
from medseg.inference.precision import (
    PrecisionPredictor,
    as_float32,
    autocast_context,
    check_precision,
    cpu_flags,
    prepare_network,
    supports_bf16,
)

needs_bf16 = pytest.mark.skipif(
    not supports_bf16("cpu"), reason="this CPU has neither avx512_bf16 nor amx_bf16: bfloat16 would be emulated"
)


def _tiny_unet(spatial_dims: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(spatial_dims, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance").eval()


def _no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=precision.CPUINFO: frozenset({"avx2", "avx512f"}))
    monkeypatch.setattr(precision, "_torch_cpu_bf16", lambda: False)
    monkeypatch.setattr(precision, "_cuda_bf16", lambda device: False)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu amx_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_fp32_is_always_accepted_and_unknown_precisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    assert check_precision("fp32", "cpu") == "fp32"
    assert check_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(MedsegError, match="--precision must be one of fp32, bf16, got 'fp16'"):
        check_precision("fp16", "cpu")


def test_bf16_without_hardware_support_is_a_medseg_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    assert not supports_bf16("cpu")
    with pytest.raises(MedsegError, match=r"avx512_bf16 or amx_bf16 flag.*use --precision fp32"):
        check_precision("bf16", "cpu")
    with pytest.raises(MedsegError, match=r"cuda.*is_bf16_supported\(\) is False"):
        check_precision("bf16", torch.device("cuda"))
    # Either source of the CPU check is enough.
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=precision.CPUINFO: frozenset({"amx_bf16"}))
    assert check_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda cpuinfo=precision.CPUINFO: frozenset())
    monkeypatch.setattr(precision, "_torch_cpu_bf16", lambda: True)
    assert check_precision("bf16", "cpu") == "bf16"


def test_prepare_network_converts_bf16_networks_in_place_and_leaves_fp32_alone() -> None:
    network = _tiny_unet()
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    assert prepare_network(network, "fp32") is network
    assert all(p.is_contiguous() for p in network.parameters())
    assert prepare_network(network, "bf16") is network
    weights = [p for p in network.parameters() if p.ndim == 5]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in weights)
    assert all(p.dtype == torch.float32 for p in network.parameters())  # autocast casts per call
    assert all(torch.equal(p, before[name]) for name, p in network.named_parameters())
    flat = prepare_network(_tiny_unet(spatial_dims=2), "bf16", spatial_dims=2)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in flat.parameters() if p.ndim == 4)


def test_outputs_come_back_as_float32() -> None:
    half = torch.ones(2, dtype=torch.bfloat16)
    labels = torch.ones(2, dtype=torch.uint8)
    out = as_float32((half, [half, labels], {"a": half}))
    assert out[0].dtype == torch.float32 and out[1][0].dtype == torch.float32 and out[1][1].dtype == torch.uint8
    assert out[2]["a"].dtype == torch.float32
    with autocast_context("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")


def test_fp32_predictor_is_the_network_call_unchanged() -> None:
    network = _tiny_unet()
    windows = torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        assert torch.equal(PrecisionPredictor(network, "cpu", "fp32")(windows), network(windows))


@needs_bf16
def test_bf16_sliding_window_matches_fp32_masks() -> None:
    network = _tiny_unet()
    generator = torch.Generator().manual_seed(1)
    volume = torch.randn(1, 1, 40, 36, 28, generator=generator)
    volume[..., 10:30, 8:28, 6:22] += 2.0  # a "body" for the random network to respond to
    inferer = SlidingWindowInferer(roi_size=(32, 32, 32), sw_batch_size=2, overlap=0.25, mode="gaussian")
    with torch.inference_mode():
        fp32 = inferer(volume, network)
        predictor = PrecisionPredictor(prepare_network(network, "bf16"), "cpu", "bf16")
        bf16 = inferer(volume, predictor)
    assert isinstance(fp32, torch.Tensor) and isinstance(bf16, torch.Tensor)
    assert bf16.shape == fp32.shape and bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)  # bfloat16 ran
    agreement = (bf16.argmax(dim=1) == fp32.argmax(dim=1)).float().mean().item()
    assert agreement >= 0.95
