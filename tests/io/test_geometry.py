from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError
from medseg.io.geometry import (
    SliceStack,
    check_nifti_header,
    orientation_code,
    plan_slices,
    ras_affine,
    resample_stack,
    set_ras_affine,
)
from medseg.io.readers import read_scan

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def plan(z: list[float], *, xy: list[tuple[float, float]] | None = None, **overrides: list) -> SliceStack:
    """Plan for axial slices at heights ``z`` (and in-plane positions ``xy``), 0.5 mm pixels, 4x4."""
    xy = xy or [(0.0, 0.0)] * len(z)
    positions = [(x, y, zz) for (x, y), zz in zip(xy, z, strict=True)]
    return plan_slices(
        positions,
        overrides.get("orientations", [AXIAL] * len(z)),
        overrides.get("spacings", [(0.5, 0.5)] * len(z)),
        overrides.get("sizes", [(4, 4)] * len(z)),
    )


def kinds(stack: SliceStack) -> list[str]:
    return [p.kind for p in stack.problems]


def test_regular_series_has_no_problem_whatever_the_file_order() -> None:
    stack = plan([4.0, 0.0, 2.0, 6.0])
    assert stack.problems == [] and stack.target_offsets is None
    assert stack.order == [1, 2, 0, 3]
    assert stack.spacing == (0.5, 0.5, 2.0)
    np.testing.assert_array_equal(stack.origin, [0, 0, 0])
    np.testing.assert_array_equal(stack.direction, np.eye(3))


def test_rounded_positions_are_not_uneven() -> None:
    # 0.625 mm slices written with 0.1 mm precision: steps of 0.6 and 0.7 mm, a rounding artefact, not a problem.
    z = [round(0.625 * k, 1) for k in range(12)]
    assert plan(z).problems == []


def test_uneven_spacing_is_found_and_resampled_to_the_median_step() -> None:
    stack = plan([0.0, 1.0, 2.0, 3.4, 4.4, 5.4])
    assert kinds(stack) == ["uneven"]
    assert "steps from 1 to 1.4 mm" in stack.problems[0].message
    assert stack.target_offsets is not None
    np.testing.assert_allclose(stack.target_offsets, np.linspace(0, 5.4, 6))


def test_one_missing_slice_is_a_gap_filled_by_interpolation() -> None:
    stack = plan([0.0, 2.0, 4.0, 8.0, 10.0])
    assert kinds(stack) == ["gap"]
    assert "4 mm between 4 and 8 (~1 missing)" in stack.problems[0].message
    np.testing.assert_allclose(stack.target_offsets, [0, 2, 4, 6, 8, 10])  # type: ignore[arg-type]
    assert stack.order == [0, 1, 2, 3, 4]


def test_a_wide_gap_keeps_the_largest_contiguous_block() -> None:
    stack = plan([-99.48, 103.02, 104.27, 105.52])
    assert kinds(stack) == ["gap"] and stack.problems[0].repairable
    assert stack.order == [1, 2, 3] and stack.target_offsets is None
    assert stack.step == pytest.approx(1.25)
    assert any("largest contiguous block of 3 slices" in a for a in stack.actions)


def test_two_equal_blocks_cannot_be_repaired() -> None:
    stack = plan([0.0, 1.0, 50.0, 51.0])
    assert not all(p.repairable for p in stack.problems)


def test_duplicates_keep_the_first_slice_given() -> None:
    # Input order stands for InstanceNumber order: index 1 and 3 repeat positions 2.0 and 4.0.
    stack = plan([0.0, 2.0, 2.0, 4.0, 4.0005, 6.0])
    assert kinds(stack) == ["duplicate"]
    assert "2 slice(s) repeat the position" in stack.problems[0].message
    assert stack.order == [0, 1, 3, 5] and stack.target_offsets is None


def test_all_slices_at_one_position_is_not_a_volume() -> None:
    stack = plan([5.0, 5.0, 5.0])
    assert kinds(stack)[0] == "duplicate" and not stack.problems[0].repairable


def test_gantry_tilt_is_found_from_positions_off_the_normal() -> None:
    # Tilt of 10 degrees: each 2 mm step along z also moves 2*tan(10 deg) mm in y.
    shift = 2 * np.tan(np.radians(10))
    stack = plan([0.0, 2.0, 4.0, 6.0], xy=[(0.0, k * shift) for k in range(4)])
    assert kinds(stack) == ["tilt"]
    assert "10 degrees" in stack.problems[0].message
    np.testing.assert_allclose(stack.shear, [0, np.tan(np.radians(10)), 0], atol=1e-12)


def test_positions_off_any_line_are_refused() -> None:
    stack = plan([0.0, 2.0, 4.0, 6.0], xy=[(0, 0), (3, 0), (0, 0), (3, 0)])
    assert kinds(stack) == ["not_collinear"] and not stack.problems[0].repairable


def test_mixed_orientation_pixel_spacing_and_size() -> None:
    tilted = (1.0, 0.0, 0.0, 0.0, 0.9, 0.1)
    stack = plan([0.0, 2.0, 4.0, 6.0], orientations=[AXIAL, AXIAL, AXIAL, tilted])
    assert kinds(stack) == ["mixed_orientation"] and stack.order == [0, 1, 2]
    stack = plan([0.0, 2.0, 4.0], spacings=[(0.5, 0.5), (0.5, 0.5), (0.6, 0.6)])
    assert kinds(stack) == ["mixed_pixel_spacing"] and stack.order == [0, 1]
    stack = plan([0.0, 2.0, 4.0], sizes=[(4, 4), (4, 4), (8, 8)])
    assert kinds(stack) == ["mixed_size"] and "Rows/Columns differs" in stack.problems[0].message
    stack = plan([0.0, 2.0], sizes=[(4, 4), (8, 8)])
    assert "no_majority" in kinds(stack)


def _stack_image(values: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(values.astype(np.int16))


def test_resampling_interpolates_linearly_along_the_normal() -> None:
    z = [0.0, 1.0, 2.0, 3.4, 4.4, 5.4]
    stack = plan(z)
    # Each slice holds 100 * its height: the resampled slices must hold 100 * theirs.
    slices = np.stack([np.full((4, 4), 100 * zz) for zz in z])
    image = resample_stack(_stack_image(slices), stack)
    values = sitk.GetArrayFromImage(image)[:, 0, 0]
    np.testing.assert_allclose(values, 100 * np.linspace(0, 5.4, 6), rtol=0, atol=1e-3)
    assert image.GetSpacing() == pytest.approx((0.5, 0.5, 5.4 / 5))
    assert image.GetPixelID() == sitk.sitkFloat32


def test_de_shearing_puts_a_tilted_structure_back_on_one_column() -> None:
    # A bright voxel column at fixed physical (x, y) seen through a 10-degree tilted stack: in each slice it
    # appears at a different row. After repair it must sit in the same row in every slice.
    shift_per_slice = 2.0  # mm: 4 pixels of 0.5 mm
    n, size = 5, 24
    xy = [(0.0, k * shift_per_slice) for k in range(n)]
    stack = plan([2.0 * k for k in range(n)], xy=xy, sizes=[(size, size)] * n)
    slices = np.full((n, size, size), -1000.0)
    for k in range(n):
        slices[k, 12 - 4 * k + 8, 10] = 1000.0  # physical y = origin_y(k) + row * 0.5 stays 10 mm
    image = resample_stack(_stack_image(slices), stack)
    rows = sitk.GetArrayFromImage(image)[:, :, 10].argmax(axis=1)
    assert list(rows) == [20] * n
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel())
    assert image.GetSpacing() == pytest.approx((0.5, 0.5, 2.0))
    assert sitk.GetArrayFromImage(image)[4, 0, 0] == -1024.0  # outside the field of view: air


def _nifti_header(qform: np.ndarray | None, sform: np.ndarray | None) -> nib.Nifti1Header:
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), None)
    image.header.set_qform(qform, code=1 if qform is not None else 0)
    image.header.set_sform(sform, code=1 if sform is not None else 0)
    return image.header


def test_nifti_header_checks() -> None:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    assert check_nifti_header(_nifti_header(affine, affine)) == []
    assert check_nifti_header(_nifti_header(affine, None)) == []
    moved = affine.copy()
    moved[:3, 3] = [10, 0, 0]
    assert [p.kind for p in check_nifti_header(_nifti_header(affine, moved))] == ["qform_sform"]
    sheared = affine.copy()
    sheared[0, 1] = 0.5
    problems = check_nifti_header(_nifti_header(affine, sheared))
    assert "sform_shear" in [p.kind for p in problems] and not problems[0].repairable
    assert [p.kind for p in check_nifti_header(_nifti_header(None, None))] == ["no_orientation"]


def test_qform_sform_mismatch_is_refused_then_repaired_with_nibabels_affine(tmp_path: Path) -> None:
    qform = np.diag([2.0, 2.0, 2.0, 1.0])
    sform = qform.copy()
    sform[:3, 3] = [10.0, -4.0, 6.0]
    image = nib.Nifti1Image(np.full((4, 5, 6), -500, np.int16), None)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=1)
    path = tmp_path / "mismatch.nii.gz"
    nib.save(image, path)
    with pytest.raises(GeometryError, match="qform and sform disagree"):
        read_scan(path)
    scan = read_scan(path, fix_geometry=True)
    assert scan.repaired and any("qform and sform disagree" in w for w in scan.warnings)
    np.testing.assert_allclose(scan.affine, nib.load(path).affine, atol=1e-6)


def test_ras_affine_round_trip_and_orientation_code() -> None:
    image = sitk.Image(3, 4, 5, sitk.sitkInt16)
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0))
    affine = ras_affine(image)
    np.testing.assert_allclose(affine[:3, 3], [-1.0, -2.0, 3.0])
    assert orientation_code(affine) == "LPS"
    other = sitk.Image(3, 4, 5, sitk.sitkInt16)
    set_ras_affine(other, affine)
    assert other.GetOrigin() == image.GetOrigin() and other.GetSpacing() == image.GetSpacing()
    assert orientation_code(np.diag([1.0, 1.0, 1.0, 1.0])) == "RAS"


@pytest.mark.data
def test_monai_ct_dicom_is_refused_then_keeps_the_contiguous_block(data_root: Path) -> None:
    folder = data_root / "monai" / "CT_DICOM"
    with pytest.raises(GeometryError, match=r"CT_DICOM: unsafe geometry: missing slices.*202\.5 mm"):
        read_scan(folder)
    scan = read_scan(folder, fix_geometry=True)
    assert scan.image.GetSize() == (16, 16, 3)
    assert scan.image.GetSpacing()[2] == pytest.approx(1.25, abs=1e-4)
    assert scan.image.GetOrigin()[2] == pytest.approx(103.02, abs=1e-4)
    assert scan.repaired and any("largest contiguous block of 3 slices" in w for w in scan.warnings)
