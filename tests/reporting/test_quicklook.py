from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.writers.labels import label_table
from medseg.reporting.quicklook import body_box, lps_voxels, organ_centre, orthogonal_views, write_quicklook

TABLE = label_table({1: "Marker", 2: "Absent"})


def _case(flip: tuple[bool, bool, bool] = (False, False, False), permute: tuple[int, int, int] = (0, 1, 2)):
    """A 30 x 24 x 16 (x, y, z) LPS scan, 1 x 1.5 x 2.5 mm, body (0 HU) in the middle and a marker (label 1) in
    the patient's left-anterior-superior part; stored with the axes flipped / permuted as asked, which must not
    change any view."""
    ct = np.full((16, 24, 30), -1000, dtype=np.int16)
    ct[2:14, 3:21, 4:26] = 0
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[10:13, 5:8, 19:24] = 1  # z high = superior, y low = anterior, x high = left
    images = []
    for array in (ct, labels):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.5, 2.5))
        image.SetOrigin((-15.0, -20.0, 7.0))
        images.append(sitk.PermuteAxes(sitk.Flip(image, list(flip)), list(permute)))
    return images[0], images[1]


def test_views_are_oriented_radiologically_with_physical_sizes() -> None:
    ct, labels = _case()
    axial, coronal, sagittal = orthogonal_views(ct, labels)
    assert axial.title == "axial z=11" and coronal.title == "coronal y=6" and sagittal.title == "sagittal x=21"
    for view, (right_half, top_half) in zip(
        (axial, coronal, sagittal), [(True, True), (True, True), (False, True)], strict=True
    ):
        rows, columns = np.nonzero(view.labels == 1)
        assert (columns.mean() > view.labels.shape[1] / 2) == right_half, view.title
        assert (rows.mean() < view.labels.shape[0] / 2) == top_half, view.title
        assert view.ct.shape == view.labels.shape
    assert axial.letters == ("R", "L", "A", "P") and sagittal.letters == ("A", "P", "S", "I")
    # Cropped to the body plus 10 mm: x 4..25 -> 0..30 (clipped), y 3..20 -> 0..24, z 2..13 -> 0..16.
    assert axial.ct.shape == (24, 30) and axial.size_mm == (30.0, 36.0)
    assert coronal.size_mm == (30.0, 40.0) and sagittal.size_mm == (36.0, 40.0)


@pytest.mark.parametrize(("flip", "permute"), [((True, True, False), (0, 1, 2)), ((False, True, True), (2, 0, 1))])
def test_views_do_not_depend_on_storage_order(flip: tuple[bool, bool, bool], permute: tuple[int, int, int]) -> None:
    reference = orthogonal_views(*_case())
    stored_otherwise = orthogonal_views(*_case(flip, permute))
    for first, second in zip(reference, stored_otherwise, strict=True):
        np.testing.assert_array_equal(first.ct, second.ct)
        np.testing.assert_array_equal(first.labels, second.labels)
        assert first.size_mm == pytest.approx(second.size_mm)


def test_lps_voxels_are_dicom_orient_without_the_copy() -> None:
    """Every axis permutation and flip (48 storage orders), axis-aligned and oblique: the view is DICOMOrient's
    array and spacing, and it is a view of the image's buffer."""
    import itertools

    rng = np.random.default_rng(0)
    turn = np.array([[np.cos(0.3), -np.sin(0.3), 0.0], [np.sin(0.3), np.cos(0.3), 0.0], [0.0, 0.0, 1.0]])
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            direction = np.zeros((3, 3))
            for column, row in enumerate(permutation):
                direction[row, column] = signs[column]
            for rotation in (np.eye(3), turn):
                image = sitk.GetImageFromArray(rng.integers(-1000, 1000, (4, 5, 6)).astype(np.int16))
                image.SetSpacing((0.7, 1.1, 2.5))
                image.SetDirection((rotation @ direction).ravel().tolist())
                expected = sitk.DICOMOrient(image, "LPS")
                voxels, spacing = lps_voxels(image)
                np.testing.assert_array_equal(voxels, sitk.GetArrayViewFromImage(expected))
                assert spacing == pytest.approx(expected.GetSpacing())
                assert np.shares_memory(voxels, sitk.GetArrayViewFromImage(image))


def test_centre_and_box_helpers() -> None:
    labels = np.zeros((5, 6, 7), dtype=np.uint8)
    assert organ_centre(labels) == (2, 3, 3)
    labels[1, 2, 3] = labels[3, 2, 5] = 4
    assert organ_centre(labels) == (2, 2, 4)
    image = np.full(labels.shape, -1000.0)
    assert body_box(image, np.zeros_like(labels), (10.0, 10.0, 10.0)) == [(0, 5), (0, 6), (0, 7)]
    image[2, 3, 4] = 40.0
    assert body_box(image, np.zeros_like(labels), (20.0, 5.0, 100.0)) == [
        (1, 4),
        (1, 6),
        (3, 6),
    ]  # margins 1, 2, 1 voxels


def test_png_is_written_with_the_overlay(tmp_path: Path) -> None:
    ct, labels = _case()
    path = write_quicklook(ct, labels, TABLE, tmp_path / "case_quicklook.png", title="case")
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (600, 1500)
    marker = np.asarray(TABLE[1].color) / 255.0
    # Overlay = 45 % marker colour over grey: some pixels are much redder than they are green or blue.
    red_dominant = (pixels[..., 0] - pixels[..., 1] > 0.3) & (pixels[..., 0] - pixels[..., 2] > 0.2)
    assert marker[0] > marker[1] and red_dominant.sum() > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_quicklook.png"]
    shifted = sitk.Image(labels)
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="grid"):
        write_quicklook(ct, shifted, TABLE, tmp_path / "bad.png")


@pytest.mark.data
def test_real_case_quicklook(data_root: Path, tmp_path: Path) -> None:
    ct = sitk.ReadImage(str(data_root / "ibsi_sts/nifti/STS_019/CT_image.nii.gz"))
    labels = sitk.ReadImage(str(data_root / "ibsi_sts/nifti/STS_019/CT_mask.nii.gz"), sitk.sitkUInt8)
    labels.CopyInformation(ct)  # the mask header differs from the CT's only by float32 rounding
    table = label_table({1: "GTV_Mass"})
    views = orthogonal_views(ct, labels)
    assert all((view.labels == 1).any() for view in views)  # every panel cuts the tumour
    path = write_quicklook(ct, labels, table, tmp_path / "STS_019_quicklook.png", title="STS_019")
    assert path.stat().st_size > 20_000
