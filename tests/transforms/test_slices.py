from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.transforms import StackSliceNeighbours, StackSliceNeighboursd


def _ramp(channels: int = 1, depth: int = 4) -> MetaTensor:
    # voxel value = 10 * channel + slice index, so every output voxel says where it came from
    values = torch.arange(depth, dtype=torch.float32).view(1, 1, 1, depth).repeat(channels, 2, 3, 1)
    values += 10 * torch.arange(channels, dtype=torch.float32).view(channels, 1, 1, 1)
    return MetaTensor(values, affine=torch.diag(torch.tensor([1.0, 2.0, 3.0, 1.0])))


def test_edge_mode_repeats_end_slices() -> None:
    out = StackSliceNeighbours(neighbours=2)(_ramp())
    assert out.shape == (5, 2, 3, 4)
    column = out[:, 0, 0, :]  # (offset, slice)
    expected = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 3], [2, 3, 3, 3]], dtype=torch.float32)
    assert torch.equal(column.as_tensor(), expected)


def test_constant_mode_fills_outside_the_volume() -> None:
    out = StackSliceNeighbours(neighbours=1, mode="constant", fill=-1.0)(_ramp())
    expected = torch.tensor([[-1, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, -1]], dtype=torch.float32)
    assert torch.equal(out[:, 1, 2, :].as_tensor(), expected)


def test_channel_major_order_and_geometry_kept() -> None:
    image = _ramp(channels=2)
    out = StackSliceNeighbours(neighbours=1)(image)
    assert out.shape == (6, 2, 3, 4)
    # channels 0..2: input channel 0 at offsets -1, 0, +1; channels 3..5: input channel 1
    assert out[1, 0, 0, 2] == 2 and out[4, 0, 0, 2] == 12 and out[3, 0, 0, 2] == 11
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, image.affine)


def test_other_axis_and_numpy_input() -> None:
    volume = np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1)  # slices along spatial axis 0
    out = StackSliceNeighbours(neighbours=1, slice_axis=0)(volume)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out[:, :, 0, 0], [[0, 0, 1], [0, 1, 2], [1, 2, 2]])


def test_zero_neighbours_is_identity_and_dict_twin() -> None:
    image = _ramp()
    assert StackSliceNeighbours(neighbours=0)(image) is image
    data = StackSliceNeighboursd(keys="image", neighbours=1)({"image": image, "label": image})
    assert data["image"].shape[0] == 3 and data["label"].shape[0] == 1


def test_single_slice_volume_and_bad_arguments() -> None:
    out = StackSliceNeighbours(neighbours=2)(torch.ones(1, 2, 2, 1))
    assert out.shape == (5, 2, 2, 1)
    with pytest.raises(ValueError):
        StackSliceNeighbours(neighbours=-1)
    with pytest.raises(ValueError):
        StackSliceNeighbours(mode="wrap")
    with pytest.raises(ValueError):
        StackSliceNeighbours(neighbours=1, slice_axis=3)(torch.ones(1, 2, 2, 2))
