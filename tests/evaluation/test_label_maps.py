from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import InputError
from medseg.evaluation.label_maps import check_same_grid, read_label_map
from tests.evaluation.helpers import write_label_map

LPS_FLIP = (-1, 0, 0, 0, -1, 0, 0, 0, 1)


def test_read_keeps_geometry_with_spacing_in_array_order(tmp_path: Path) -> None:
    array = np.zeros((4, 5, 6), np.uint8)
    array[1, 2, 3] = 9
    path = write_label_map(tmp_path / "m.nii.gz", array, spacing_xyz=(0.5, 0.75, 3.0), origin=(10, -20, 5.5))
    label_map = read_label_map(path)
    assert label_map.array.shape == (4, 5, 6) and label_map.array[1, 2, 3] == 9
    assert label_map.spacing == (3.0, 0.75, 0.5)  # (z, y, x), matching array axes
    assert label_map.size == (6, 5, 4)
    assert label_map.origin == pytest.approx((10, -20, 5.5))
    assert label_map.voxel_volume_ml == pytest.approx(0.5 * 0.75 * 3.0 / 1000)
    assert label_map.diagonal_mm == pytest.approx(math.sqrt(3.0**2 + 3.75**2 + 12.0**2))


def test_integral_float_maps_are_accepted_others_refused(tmp_path: Path) -> None:
    integral = tmp_path / "integral.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[0.0, 2.0]]], np.float32)), str(integral))
    assert read_label_map(integral).array.tolist() == [[[0, 2]]]
    fractional = tmp_path / "prob.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[0.0, 0.4]]], np.float32)), str(fractional))
    with pytest.raises(InputError, match="non-integer"):
        read_label_map(fractional)


def test_refuses_what_is_not_a_label_map(tmp_path: Path) -> None:
    negative = tmp_path / "neg.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[0, -3]]], np.int16)), str(negative))
    with pytest.raises(InputError, match="negative label -3"):
        read_label_map(negative)
    vector = tmp_path / "layers.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 4, 2), np.uint8), isVector=True), str(vector))
    with pytest.raises(InputError, match="2 components"):
        read_label_map(vector)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read"):
        read_label_map(garbage)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"spacing_xyz": (1.0, 1.0, 3.001)}, "spacing (1, 1, 3.001) vs (1, 1, 3) (max difference 0.001 mm)"),
        ({"origin": (0.0, 0.5, 0.0)}, "origin (0, 0.5, 0) vs (0, 0, 0)"),
        ({"direction": LPS_FLIP}, "direction (-1, 0, 0, 0, -1, 0, 0, 0, 1) vs (1, 0, 0"),
        ({"shape": (4, 5, 7)}, "size (7, 5, 4) vs (6, 5, 4)"),
    ],
)
def test_grid_mismatch_names_both_files_and_the_difference(tmp_path: Path, change: dict, problem: str) -> None:
    ref = read_label_map(write_label_map(tmp_path / "ref.nii.gz", np.zeros((4, 5, 6)), spacing_xyz=(1, 1, 3)))
    geometry = {"spacing_xyz": (1.0, 1.0, 3.0), **change}
    shape = geometry.pop("shape", (4, 5, 6))
    pred = read_label_map(write_label_map(tmp_path / "pred.nii.gz", np.zeros(shape), **geometry))
    with pytest.raises(InputError) as raised:
        check_same_grid(pred, ref)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'pred.nii.gz'}: grid differs from reference {tmp_path / 'ref.nii.gz'}")
    assert problem in message


def test_differences_within_tolerance_pass(tmp_path: Path) -> None:
    ref = read_label_map(write_label_map(tmp_path / "ref.nii.gz", np.zeros((4, 5, 6)), spacing_xyz=(1, 1, 3)))
    pred = read_label_map(
        write_label_map(tmp_path / "pred.nii.gz", np.zeros((4, 5, 6)), spacing_xyz=(1, 1, 3.00005), origin=(5e-5, 0, 0))
    )
    check_same_grid(pred, ref)


def test_real_totalsegmentator_grids(data_root: Path) -> None:
    folder = data_root / "totalsegmentator"
    seg = read_label_map(folder / "example_seg.nii.gz")
    assert seg.array.shape == (30, 101, 122) and seg.spacing == (3.0, 3.0, 3.0)
    check_same_grid(read_label_map(folder / "example_seg_roi_subset.nii.gz"), seg)
    with pytest.raises(InputError, match=r"size \(512, 512, 20\) vs \(122, 101, 30\)"):
        check_same_grid(read_label_map(folder / "example_seg_dicom.nii.gz"), seg)
