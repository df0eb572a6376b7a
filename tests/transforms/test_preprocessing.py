from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, CropForegroundd, Invertd, SpatialPadd

from medseg.errors import MedsegError
from medseg.transforms import (
    HU_WINDOW_PRESETS,
    BodyMask,
    HUWindow,
    HUWindowd,
    StackSliceNeighbours,
    StackSliceNeighboursd,
    hu_window_range,
    preprocessing_chain,
    preprocessing_transforms,
    window_padding,
)

CHAIN = [
    "LoadImaged",
    "EnsureChannelFirstd",
    "Orientationd",
    "Spacingd",
    "CropForegroundd",
    "HUWindowd",
    "StackSliceNeighboursd",
]


def _names(transforms: Any) -> list[str]:
    return [type(t).__name__ for t in transforms]


def test_the_chain_reads_orients_resamples_crops_windows_and_stacks_in_order() -> None:
    transforms = preprocessing_transforms([2.0, 2.0, 3.0], "head_neck", body_threshold_hu=-400, slice_neighbours=1)
    assert _names(transforms) == CHAIN
    load, _, orientation, spacing, crop, window, stack = transforms
    assert list(load.keys) == ["image"] and not load.allow_missing_keys
    assert orientation.ornt_transform.axcodes == "RAS"
    assert list(spacing.mode) == ["bilinear"]
    assert np.allclose(spacing.spacing_transform.pixdim, [2.0, 2.0, 3.0])
    assert isinstance(crop.cropper.select_fn, BodyMask) and crop.cropper.select_fn.threshold_hu == -400
    assert list(window.keys) == ["image"] and list(stack.keys) == ["image"]
    assert stack.stacker.neighbours == 1 and stack.stacker.slice_axis == 2


def test_a_label_is_resampled_nearest_cropped_with_the_scan_and_may_be_missing() -> None:
    transforms = preprocessing_transforms([2.0, 2.0, 2.0], "soft_tissue", label_key="label")
    for transform in transforms[:5]:
        assert list(transform.keys) == ["image", "label"] and transform.allow_missing_keys
    assert list(transforms[3].mode) == ["bilinear", "nearest"]
    for transform in transforms[5:]:  # intensity and channels: the scan only
        assert list(transform.keys) == ["image"]


def test_without_body_crop_the_crop_alone_is_left_out() -> None:
    transforms = preprocessing_transforms([2.0, 2.0, 2.0], "head_neck", body_crop=False)
    assert _names(transforms) == [name for name in CHAIN if name != "CropForegroundd"]


@pytest.mark.parametrize(
    ("patch_size", "dims", "window"), [([96, 96, 96], 3, [96, 96, 96]), ([128, 128], 2, [128, 128, 1])]
)
def test_the_window_padding_mirrors_up_to_the_inferer_window(
    patch_size: list[int], dims: int, window: list[int]
) -> None:
    pad = window_padding(patch_size, dims)
    assert isinstance(pad, SpatialPadd) and list(pad.keys) == ["image"]
    assert list(pad.padder.spatial_size) == window and list(pad.mode) == ["symmetric"]
    small = pad({"image": MetaTensor(torch.arange(8.0).reshape(1, 2, 2, 2))})["image"]
    assert list(small.shape[1:]) == [*window[:2], 2 if dims == 2 else window[2]]
    assert set(torch.unique(small).tolist()) == set(range(8))  # mirrored, no zeros added


def test_the_inference_chain_is_the_image_chain_then_the_window_padding() -> None:
    chain = preprocessing_chain([2.0, 2.0, 2.0], "head_neck", patch_size=[64, 64, 64], spatial_dims=3)
    assert isinstance(chain, Compose)
    assert _names(chain.transforms) == [*CHAIN, "SpatialPadd"]
    assert list(chain.transforms[3].mode) == ["bilinear"]


# The chain as bundles/ct_unet/configs/train.json spelled it out before this module existed (commit 989597b),
# kept here as the reference the factory must reproduce voxel for voxel.
PREVIOUS_TRAIN_CHAIN: list[dict[str, Any]] = [
    {
        "_target_": "LoadImaged",
        "keys": ["image", "label"],
        "reader": "NibabelReader",
        "image_only": True,
        "allow_missing_keys": True,
    },
    {"_target_": "EnsureChannelFirstd", "keys": ["image", "label"], "allow_missing_keys": True},
    {"_target_": "Orientationd", "keys": ["image", "label"], "axcodes": "RAS", "allow_missing_keys": True},
    {
        "_target_": "Spacingd",
        "keys": ["image", "label"],
        "pixdim": "@spacing",
        "mode": ["bilinear", "nearest"],
        "allow_missing_keys": True,
    },
    {
        "_target_": "CropForegroundd",
        "keys": ["image", "label"],
        "source_key": "image",
        "select_fn": {"_target_": "medseg.transforms.BodyMask", "threshold_hu": -500, "largest_component": True},
        "margin": 2,
        "allow_smaller": True,
        "allow_missing_keys": True,
    },
    {"_target_": "medseg.transforms.HUWindowd", "keys": "image", "window": "head_neck"},
    {"_target_": "medseg.transforms.StackSliceNeighboursd", "keys": "image", "neighbours": 0, "slice_axis": 2},
    {"_target_": "SpatialPadd", "keys": "image", "spatial_size": [64, 64, 64], "mode": "symmetric"},
]
SPACING = [4.688, 4.688, 2.5]  # the shipped model's


def _previous_chain() -> Compose:
    parser = ConfigParser({"spacing": SPACING, "chain": {"_target_": "Compose", "transforms": PREVIOUS_TRAIN_CHAIN}})
    return parser.get_parsed_content("chain")


def _assert_same(new: dict[str, Any], old: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert isinstance(new[key], MetaTensor)
        assert torch.equal(new[key].as_tensor(), old[key].as_tensor()), key
        assert torch.equal(torch.as_tensor(new[key].affine), torch.as_tensor(old[key].affine)), key
        assert _names_of_ops(new[key]) == _names_of_ops(old[key]), key


def _names_of_ops(image: MetaTensor) -> list[str]:
    return [str(op["class"]) for op in image.applied_operations]


@pytest.fixture(scope="module")
def openkbp_case(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from medseg.datasets import prepare_dataset

    folder = Path(prepare_dataset("openkbp", tmp_path_factory.mktemp("openkbp"), max_cases=1))
    (image,) = sorted((folder / "imagesTr").glob("*.nii.gz"))
    return {"image": str(image), "label": str(folder / "labelsTr" / image.name)}


@pytest.mark.data
def test_the_chain_gives_the_previous_training_data_and_inference_input_on_a_real_case(
    openkbp_case: dict[str, str],
) -> None:
    old = _previous_chain()
    new = Compose([*preprocessing_transforms(SPACING, "head_neck", label_key="label"), window_padding([64] * 3, 3)])
    expected = old(dict(openkbp_case))
    _assert_same(new(dict(openkbp_case)), expected, ("image", "label"))
    assert len(np.unique(expected["label"].numpy())) > 1  # the label map is really there, and cropped alike

    # inference: the image alone (as inference.json had it, which the segmenter runs); its inversion back onto the
    # scan's grid is the same too
    chain = preprocessing_chain(SPACING, "head_neck", patch_size=[64] * 3, spatial_dims=3)
    image_only = {"image": openkbp_case["image"]}
    got, want = chain(dict(image_only)), old(dict(image_only))
    _assert_same(got, want, ("image",))
    scan_shape = nib.load(openkbp_case["image"]).shape
    inverted = []
    for transform, data in ((chain, got), (old, want)):
        pred = MetaTensor(data["image"].as_tensor().clone(), meta=dict(data["image"].meta))
        pred.applied_operations = list(data["image"].applied_operations)
        back = Invertd("pred", transform, "image", nearest_interp=True)({**data, "pred": pred})["pred"]
        assert tuple(back.shape[1:]) == tuple(scan_shape)
        inverted.append(back)
    assert torch.equal(inverted[0].as_tensor(), inverted[1].as_tensor())
    assert torch.equal(inverted[0].affine, inverted[1].affine)


@pytest.mark.parametrize(
    ("name", "lower", "upper"),
    [
        ("head_neck", -135.0, 215.0),
        ("soft_tissue", -160.0, 240.0),
        ("abdomen", -125.0, 225.0),
        ("lung", -1350.0, 150.0),
        ("bone", -500.0, 1300.0),
    ],
)
def test_presets_are_level_plus_minus_half_width(name: str, lower: float, upper: float) -> None:
    assert hu_window_range(name) == (lower, upper)
    assert set(HU_WINDOW_PRESETS) == {"head_neck", "soft_tissue", "abdomen", "lung", "bone"}


def test_head_neck_window_maps_hand_checked_values() -> None:
    # -135 -> 0, 40 (level) -> 0.5, 215 -> 1; air and bone saturate
    hu = torch.tensor([[-1024.0, -135.0, 40.0, 127.5, 215.0, 1500.0]])
    out = HUWindow("head_neck")(hu)
    np.testing.assert_allclose(np.asarray(out), [[0.0, 0.0, 0.5, 0.75, 1.0, 1.0]], atol=1e-6)


def test_explicit_range_and_output_range_without_clip() -> None:
    out = HUWindow([-1000, 1000], b_min=-1.0, b_max=1.0, clip=False)(np.array([[-2000.0, 0.0, 500.0]]))
    np.testing.assert_allclose(out, [[-2.0, 0.0, 0.5]])


def test_dict_twin_keeps_metatensor_geometry_and_leaves_other_keys() -> None:
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    image = MetaTensor(torch.full((1, 2, 2, 2), 240.0), affine=affine)
    label = torch.ones(1, 2, 2, 2)
    out = HUWindowd(keys="image", window="soft_tissue")({"image": image, "label": label})
    assert isinstance(out["image"], MetaTensor)
    assert torch.equal(out["image"].affine, affine.double())
    assert torch.all(out["image"] == 1.0) and out["image"].dtype == torch.float32
    assert out["label"] is label


@pytest.mark.parametrize("window", ["brain_stroke", [100, 100], [1, 2, 3], [float("nan"), 5]])
def test_bad_windows_are_user_errors(window: object) -> None:
    with pytest.raises(MedsegError, match="window"):
        HUWindow(window)  # type: ignore[arg-type]


def _scan() -> MetaTensor:
    """Air with a body block (soft tissue and a lung-like hole) and a separate "couch" strip."""
    hu = torch.full((1, 20, 16, 12), -1000.0)
    hu[0, 4:14, 3:12, 2:10] = 30.0  # body
    hu[0, 7:10, 5:8, 4:7] = -800.0  # lung inside the body (below threshold, still inside the body's box)
    hu[0, 17:19, 1:15, 0:12] = 200.0  # couch: bright but not connected to the body
    return MetaTensor(hu, affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0])))


def test_largest_component_drops_the_couch() -> None:
    mask = BodyMask(threshold_hu=-500)(_scan())
    assert mask.dtype == torch.bool and mask.shape == (1, 20, 16, 12)
    assert mask[0, 5, 4, 3] and not mask[0, 18, 5, 5] and not mask[0, 8, 6, 5]
    assert int(mask.sum()) == 10 * 9 * 8 - 3 * 3 * 3
    every = BodyMask(threshold_hu=-500, largest_component=False)(_scan())
    assert every[0, 18, 5, 5]


def test_no_body_means_no_crop() -> None:
    mask = BodyMask()(np.full((1, 4, 4, 4), -1024.0))
    assert isinstance(mask, np.ndarray) and mask.all()


def test_body_crop_is_exactly_invertible() -> None:
    image = _scan()
    label = MetaTensor(torch.zeros_like(image), affine=image.affine)
    label[0, 6, 6, 6] = 3
    crop = Compose(
        [
            CropForegroundd(
                keys=["image", "label"], source_key="image", select_fn=BodyMask(), margin=1, allow_smaller=True
            )
        ]
    )
    out = crop({"image": image, "label": label})
    assert out["image"].shape == (1, 12, 11, 10)  # body box 10x9x8 plus a 1-voxel margin
    assert torch.allclose(out["image"].affine[:3, 3], torch.tensor([3 * 0.8, 2 * 0.8, 1 * 2.5], dtype=torch.float64))
    restored = crop.inverse(out)
    assert restored["label"].shape == label.shape
    assert torch.equal(restored["label"].as_tensor(), label.as_tensor())
    assert torch.equal(restored["label"].affine, label.affine)


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
