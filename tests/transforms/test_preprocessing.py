from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, SpatialPadd

from medseg.transforms import BodyMask, preprocessing_chain, preprocessing_transforms, window_padding

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
