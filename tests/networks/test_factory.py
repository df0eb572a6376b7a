from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from monai.networks.nets import DynUNet, UNet
from torch import nn

from medseg.errors import MedsegError
from medseg.networks import NETWORKS, FCN8s, build_network, dynunet_plan, factory
from medseg.networks.factory import (
    PrecisionPredictor,
    as_float32,
    autocast_context,
    check_precision,
    choose_network_path,
    cpu_flags,
    onednn_isa_cap,
    prepare_network,
    resolve_device,
    supports_bf16,
)

SMALL = (4, 8, 16, 32)


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (2, 5, 64, 48)), (3, (1, 1, 32, 32, 16))])
def test_networks_map_channels_and_keep_the_spatial_size(name: str, spatial_dims: int, shape: tuple) -> None:
    net = build_network(
        name,
        spatial_dims,
        in_channels=shape[1],
        out_channels=8,
        channels=SMALL,
        patch_size=shape[2:],
        spacing=[4, 4, 2.5],
    )
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(shape))
    assert out.shape == (shape[0], 8, *shape[2:])


def test_dynunet_training_output_stacks_deep_supervision_heads() -> None:
    net = build_network("dynunet", 3, 1, 8, channels=SMALL, patch_size=[32, 32, 32], spacing=[1, 1, 1])
    assert isinstance(net, DynUNet)
    out = net.train()(torch.randn(1, 1, 32, 32, 32))
    assert out.shape == (1, 3, 8, 32, 32, 32)  # main output + 2 heads, all at full resolution


def test_unet_is_monai_unet_with_requested_widths() -> None:
    net = build_network("unet", 3, 1, 4, channels=SMALL, num_res_units=1)
    assert isinstance(net, UNet) and list(net.channels) == list(SMALL) and list(net.strides) == [2, 2, 2]


def test_dynunet_plan_follows_nnunet_rule_for_thick_slices() -> None:
    # z is 3x coarser: it keeps kernel 1 and stride 1 until the in-plane spacing has caught up
    kernels, strides = dynunet_plan([64, 64, 16], [1.0, 1.0, 3.0])
    assert strides[:3] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    assert kernels[0] == [3, 3, 1] and kernels[1] == [3, 3, 3]
    assert len(kernels) == len(strides)


def test_dynunet_plan_rejects_patch_not_divisible_by_total_stride() -> None:
    with pytest.raises(MedsegError, match="divisible"):
        dynunet_plan([60, 64], [1.0, 1.0])


def test_unknown_network_and_bad_dims_are_user_errors() -> None:
    with pytest.raises(MedsegError, match="unknown network"):
        build_network("segformer", 3, 1, 2)
    with pytest.raises(MedsegError, match="spatial_dims"):
        build_network("unet", 4, 1, 2)
    with pytest.raises(MedsegError, match="patch_size"):
        build_network("dynunet", 3, 1, 2)


def test_fcn8s_is_scriptable_and_pads_odd_sizes() -> None:
    net = FCN8s(3, 1, 3, base_channels=4).eval()
    x = torch.randn(1, 1, 33, 20, 40)
    with torch.no_grad():
        eager = net(x)
        scripted = torch.jit.script(net)(x)
    assert eager.shape == (1, 3, 33, 20, 40)
    assert torch.allclose(eager, scripted, atol=1e-5)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(MedsegError, match="--device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MedsegError, match="CUDA is not available"):
            resolve_device("cuda")


needs_bf16 = pytest.mark.skipif(
    not supports_bf16("cpu"), reason="this CPU has neither avx512_bf16 nor amx_bf16: bfloat16 would be emulated"
)


@pytest.fixture(autouse=True)
def _no_onednn_isa_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the CPU's features themselves: a cap in the caller's environment must not decide them."""
    for variable in factory.ONEDNN_ISA_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def _tiny_unet(spatial_dims: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return UNet(spatial_dims, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="instance").eval()


def _no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset({"avx2", "avx512f"}))
    monkeypatch.setattr(factory, "_torch_cpu_bf16", lambda: False)
    monkeypatch.setattr(factory, "_cuda_bf16", lambda device: False)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu amx_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_fp32_is_always_accepted_and_unknown_precisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    assert check_precision("fp32", "cpu") == "fp32"
    assert check_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(MedsegError, match="--precision must be one of fp32, bf16, auto, got 'fp16'"):
        check_precision("fp16", "cpu")


def test_bf16_without_hardware_support_is_a_medseg_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    assert not supports_bf16("cpu")
    with pytest.raises(MedsegError, match=r"avx512_bf16 or amx_bf16 flag.*use --precision fp32"):
        check_precision("bf16", "cpu")
    with pytest.raises(MedsegError, match=r"cuda.*is_bf16_supported\(\) is False"):
        check_precision("bf16", torch.device("cuda"))
    # Either source of the CPU check is enough.
    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset({"amx_bf16"}))
    assert check_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset())
    monkeypatch.setattr(factory, "_torch_cpu_bf16", lambda: True)
    assert check_precision("bf16", "cpu") == "bf16"


def test_a_onednn_isa_cap_below_bf16_makes_auto_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset({"avx512_bf16"}))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_bf16")  # allows bf16
    assert check_precision("auto", "cpu") == "bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert onednn_isa_cap() == "ONEDNN_MAX_CPU_ISA=AVX2"
    assert not supports_bf16("cpu")
    assert check_precision("auto", "cpu") == "fp32"
    with pytest.raises(MedsegError, match="ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN below bfloat16"):
        check_precision("bf16", "cpu")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core")
    assert onednn_isa_cap() == "DNNL_MAX_CPU_ISA=AVX512_CORE"


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


def test_auto_is_bf16_only_where_the_hardware_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    assert check_precision("auto", "cpu") == "fp32"
    assert check_precision("auto", torch.device("cuda")) == "fp32"
    monkeypatch.setattr(factory, "cpu_flags", lambda cpuinfo=factory.CPUINFO: frozenset({"avx512_bf16"}))
    assert check_precision("auto", "cpu") == "bf16"
    assert check_precision("fp32", "cpu") == "fp32"  # never bf16 unless asked


def test_the_cpu_path_is_channels_last_with_one_window_per_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    path = choose_network_path("fp32", "cpu", 3, bundle_sw_batch_size=4, threads=2)
    assert (path.precision, path.channels_last, path.sw_batch_size) == ("fp32", True, 2)
    assert "channels-last" in path.why and "window batch 2" in path.why
    assert choose_network_path("fp32", "cpu", 3, bundle_sw_batch_size=4, threads=64).sw_batch_size == 4
    assert choose_network_path("fp32", "cpu", 3, bundle_sw_batch_size=4, threads=1).sw_batch_size == 1
    # The caller's own sw_batch_size stands; 2D slice inferers keep theirs; no bundle value: nothing to change.
    assert choose_network_path("fp32", "cpu", 3, 4, sw_batch_size_fixed=True, threads=2).sw_batch_size is None
    assert choose_network_path("fp32", "cpu", 2, bundle_sw_batch_size=32, threads=2).sw_batch_size is None
    assert choose_network_path("fp32", "cpu", 3, threads=2).sw_batch_size is None
    auto = choose_network_path("auto", "cpu", 3, bundle_sw_batch_size=4, threads=2)
    assert auto.precision == "fp32" and "no avx512_bf16 or amx_bf16" in auto.why
    monkeypatch.setattr(factory, "_torch_cpu_bf16", lambda: True)
    assert choose_network_path("auto", "cpu", 3, bundle_sw_batch_size=4, threads=2).precision == "bf16"


def test_gpus_keep_fp32_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_bf16(monkeypatch)
    path = choose_network_path("fp32", torch.device("cuda"), 3, bundle_sw_batch_size=4, threads=2)
    assert (path.precision, path.channels_last, path.sw_batch_size) == ("fp32", False, None)
    with pytest.raises(MedsegError, match="bf16"):
        choose_network_path("bf16", torch.device("cuda"), 3)


def test_fp32_channels_last_windows_give_the_same_logits() -> None:
    """The exact lever: channels-last weights and windows compute the same float32 values (to rounding)."""
    network = _tiny_unet()
    windows = torch.randn(2, 1, 24, 24, 24, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        plain = network(windows)
        predictor = PrecisionPredictor(prepare_network(_tiny_unet(), "fp32", channels_last=True), "cpu", "fp32", True)
        fast = predictor(windows)
    assert fast.dtype == torch.float32 and fast.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
