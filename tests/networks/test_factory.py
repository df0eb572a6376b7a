from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DynUNet, UNet

from medseg.errors import MedsegError
from medseg.networks import NETWORKS, FCN8s, build_network, dynunet_plan
from medseg.networks.factory import resolve_device

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
