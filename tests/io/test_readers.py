from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import ImplicitVRLittleEndian

from medseg.errors import GeometryError, InputError
from medseg.io import readers
from medseg.io.readers import read_scan
from tests.io.dicom_factory import ramp_volume, rotation, write_series

IBSI_CASES = ["002", "003", "008", "012", "015", "018", "019", "024", "025", "032", "035", "041", "042"]


def assert_same_grid(image: sitk.Image, reference: sitk.Image, tolerance: float = 1e-4) -> None:
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=tolerance)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=tolerance)


def voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image).astype(np.float64)


# --- real data -------------------------------------------------------------------------------------------------


@pytest.mark.data
@pytest.mark.parametrize("case", IBSI_CASES)
def test_ibsi_dicom_reads_exactly_as_its_nifti_twin(data_root: Path, case: str) -> None:
    patient = data_root / "ibsi_sts" / "dicom" / f"STS_{case}"
    reference = sitk.ReadImage(str(data_root / "ibsi_sts" / "nifti" / f"STS_{case}" / "CT_image.nii.gz"))
    for path in (patient / "CT" / "image", patient):
        scan = read_scan(path)
        assert scan.source_format == "dicom" and not scan.repaired and scan.warnings == []
        assert scan.image.GetPixelID() == sitk.sitkInt16
        assert_same_grid(scan.image, reference)
        assert np.abs(voxels(scan.image) - voxels(reference)).max() == 0
    # The patient folder holds the RTSTRUCT too: skipped, with the reason.
    assert [c.modality for c in scan.candidates] == ["CT", "RTSTRUCT"]
    assert scan.candidates[0] is scan.series and scan.series.skip_reason is None
    assert "RT structure set" in str(scan.candidates[1].skip_reason)


@pytest.mark.data
def test_jpeg2000_series_lands_on_the_reference_segmentation_grid(data_root: Path) -> None:
    folder = data_root / "totalsegmentator"
    scan = read_scan(folder / "example_ct_dicom")
    assert scan.image.GetSize() == (512, 512, 20) and scan.series is not None and scan.series.uid == ""
    segmentation = sitk.ReadImage(str(folder / "example_seg_dicom.nii.gz"))  # stored LAS (rows flipped)
    image, labels = sitk.DICOMOrient(scan.image, "LPS"), sitk.DICOMOrient(segmentation, "LPS")
    assert_same_grid(image, labels)
    hu, label = voxels(image), sitk.GetArrayFromImage(labels)
    # Same grid is not enough: the voxels must line up. Enhanced liver and bone where the labels say.
    assert 40 < hu[label == 5].mean() < 150  # liver
    assert hu[label == 69].mean() > 300  # humerus
    assert hu[label[:, ::-1, :] == 5].mean() < 0  # a flipped reading would miss the liver


@pytest.mark.data
@pytest.mark.parametrize(
    ("folder", "by_numpy"),
    [
        ("ibsi_sts/dicom/STS_019/CT/image", True),  # implicit VR
        ("pydicom/CT5N", True),  # explicit VR
        ("dcmqi/ct-3slice", True),
        ("totalsegmentator/example_ct_dicom", False),  # JPEG 2000: GDCM decodes it
    ],
)
def test_real_series_read_by_numpy_equal_gdcm_bit_for_bit(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, folder: str, by_numpy: bool
) -> None:
    native, image, gdcm = _read_both_ways(data_root / folder, monkeypatch)
    assert (native is not None) == by_numpy
    assert_identical(image, gdcm)


@pytest.mark.data
def test_nrrd_geometry_equals_its_label(data_root: Path) -> None:
    scan = read_scan(data_root / "pyradiomics" / "lung1_image.nrrd")
    label = sitk.ReadImage(str(data_root / "pyradiomics" / "lung1_label.nrrd"))
    assert scan.source_format == "nrrd" and scan.image.GetSize() == (512, 512, 48)
    assert_same_grid(scan.image, label, tolerance=1e-9)
    assert scan.orientation == "LPS"


@pytest.mark.data
def test_small_real_series_and_single_file_entry(data_root: Path) -> None:
    scan = read_scan(data_root / "pydicom" / "CT5N")
    assert scan.image.GetSize() == (16, 16, 5) and scan.image.GetSpacing()[2] == pytest.approx(2.5)
    one_file = read_scan(data_root / "pydicom" / "CT5N" / "2392")  # a DICOM file stands for its series
    assert one_file.image.GetSize() == (16, 16, 5)
    assert np.array_equal(voxels(one_file.image), voxels(scan.image))
    with pytest.raises(InputError, match=r"CT_small\.dcm: has no CT image series.*single slice"):
        read_scan(data_root / "pydicom" / "CT_small.dcm")  # a 2D DICOM image


@pytest.mark.data
def test_nifti_reads_as_nibabel_does(data_root: Path) -> None:
    path = data_root / "totalsegmentator" / "example_ct.nii.gz"  # RAS-stored, int32 on disk
    scan = read_scan(path)
    reference = nib.load(path)
    np.testing.assert_allclose(scan.affine, reference.affine, rtol=0, atol=1e-4)
    assert np.array_equal(sitk.GetArrayFromImage(scan.image).T, np.asanyarray(reference.dataobj))
    assert scan.image.GetPixelID() == sitk.sitkInt16 and scan.orientation == "RAS"


@pytest.mark.data
def test_mr_nifti_gets_a_warning_not_an_error(data_root: Path) -> None:
    scan = read_scan(data_root / "monai" / "anatomical.nii")
    assert len(scan.warnings) == 1
    assert "-610..30393" in scan.warnings[0] and "do not look like CT in HU" in scan.warnings[0]


# --- synthetic geometry ----------------------------------------------------------------------------------------


def test_oblique_series_round_trips_through_read_and_nifti(tmp_path: Path) -> None:
    direction = rotation(z_degrees=20, x_degrees=15)
    volume = ramp_volume((7, 6, 5))
    write_series(tmp_path / "dicom", volume, direction=direction, step=1.5, pixel_spacing=(0.7, 0.8))
    scan = read_scan(tmp_path / "dicom")
    assert scan.warnings == [] and not scan.repaired
    np.testing.assert_allclose(np.reshape(scan.image.GetDirection(), (3, 3)), direction, atol=1e-6)
    np.testing.assert_allclose(scan.image.GetSpacing(), (0.8, 0.7, 1.5), atol=1e-6)
    np.testing.assert_allclose(scan.image.GetOrigin(), (-10.0, -20.0, 30.0), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(scan.image), volume)
    # Against SimpleITK's own series reading (GDCM sorts the files itself).
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "dicom"))
    reference = sitk.ReadImage(names)
    assert_same_grid(scan.image, reference, tolerance=1e-9)
    assert np.array_equal(voxels(scan.image), voxels(reference))
    # Written as NIfTI and read back by nibabel and by read_scan: same affine, same voxels.
    nifti = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(scan.image, str(nifti))
    np.testing.assert_allclose(nib.load(nifti).affine, scan.affine, atol=1e-4)
    again = read_scan(nifti)
    assert_same_grid(again.image, scan.image)
    assert np.array_equal(voxels(again.image), voxels(scan.image))


def test_lps_nifti_with_non_identity_direction_matches_nibabel(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(ramp_volume((5, 6, 7)))
    image.SetDirection(tuple(rotation(z_degrees=-30, x_degrees=90).ravel()))
    image.SetOrigin((12.5, -40.0, 7.25))
    image.SetSpacing((0.9, 1.1, 2.5))
    path = tmp_path / "lps.nii.gz"
    sitk.WriteImage(image, str(path))
    scan = read_scan(path)
    assert_same_grid(scan.image, image, tolerance=1e-5)
    np.testing.assert_allclose(scan.affine, nib.load(path).affine, atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(scan.image).T, np.asanyarray(nib.load(path).dataobj))


def test_float64_and_wide_integer_images_become_float32_or_int16(tmp_path: Path) -> None:
    values = ramp_volume((3, 4, 5)).astype(np.float64)
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "f64.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(values.astype(np.int32)), str(tmp_path / "i32.nrrd"))
    sitk.WriteImage(sitk.GetImageFromArray(values.astype(np.int32) * 100), str(tmp_path / "big.mha"))
    assert read_scan(tmp_path / "f64.nii.gz").image.GetPixelID() == sitk.sitkFloat32
    assert read_scan(tmp_path / "i32.nrrd").image.GetPixelID() == sitk.sitkInt16
    big = read_scan(tmp_path / "big.mha")
    assert big.image.GetPixelID() == sitk.sitkFloat32 and big.source_format == "mha"
    assert np.array_equal(voxels(big.image), values * 100)


@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz"])
def test_nifti_read_slab_by_slab_equals_nibabel(tmp_path: Path, name: str) -> None:
    """More slices than one slab (the last slab a single slice), stored big-endian int16 with an intercept, and
    float with a fractional slope: the voxels nibabel returns for the whole file, in the type medseg keeps."""
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 3000, (9, 7, 2 * readers._NIFTI_SLAB + 1)).astype(">i2")
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    for slope, inter, kind in ((1.0, -1024.0, sitk.sitkInt16), (0.5, -1024.0, sitk.sitkFloat32)):
        nifti = nib.Nifti1Image(stored, affine)
        nifti.header.set_slope_inter(slope, inter)
        nib.save(nifti, tmp_path / name)
        image = read_scan(tmp_path / name).image
        assert image.GetPixelID() == kind and image.GetSize() == stored.shape
        expected = nib.load(tmp_path / name).get_fdata()
        np.testing.assert_array_equal(voxels(image), expected.transpose(2, 1, 0))


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    volume = ramp_volume((3, 4, 4))
    write_series(tmp_path / "a", volume, rescale=(1.0, -1024.0))
    even = (volume // 2) * 2  # a slope of 2 stores even values exactly
    write_series(tmp_path / "b", even, rescale=(2.0, -2048.0))
    assert np.array_equal(voxels(read_scan(tmp_path / "a").image), volume)
    assert np.array_equal(voxels(read_scan(tmp_path / "b").image), even)
    # Slices with different slopes (seen in the wild): every slice gets its own, in float32.
    import pydicom

    paths = write_series(tmp_path / "c", even, rescale=(1.0, -1024.0))
    ds = pydicom.dcmread(paths[2])
    ds.RescaleSlope, ds.RescaleIntercept = "2", "-2048"
    ds.PixelData = ((even[2].astype(np.int32) + 2048) // 2).astype(np.int16).tobytes()
    ds.save_as(paths[2])
    mixed = read_scan(tmp_path / "c").image
    assert mixed.GetPixelID() == sitk.sitkFloat32 and np.array_equal(voxels(mixed), even)


def _read_both_ways(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[sitk.Image | None, sitk.Image, sitk.Image]:
    """``folder`` read by read_scan as it is (recording what the numpy pixel reader returned) and with GDCM only."""
    native_reads: list[sitk.Image | None] = []

    def recording(*args: Any) -> sitk.Image | None:
        native_reads.append(real(*args))
        return native_reads[-1]

    real = readers._read_native_slices
    with monkeypatch.context() as patch:
        patch.setattr(readers, "_read_native_slices", recording)
        default = read_scan(folder).image
    with monkeypatch.context() as patch:
        patch.setattr(readers, "_read_native_slices", lambda *args: None)
        gdcm = read_scan(folder).image
    assert len(native_reads) == 1
    return native_reads[0], default, gdcm


def assert_identical(image: sitk.Image, reference: sitk.Image) -> None:
    """Same pixel type, voxels and geometry, bit for bit."""
    assert image.GetPixelIDTypeAsString() == reference.GetPixelIDTypeAsString()
    assert image.GetSize() == reference.GetSize()
    assert image.GetOrigin() == reference.GetOrigin()
    assert image.GetSpacing() == reference.GetSpacing()
    assert image.GetDirection() == reference.GetDirection()
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference))


@pytest.mark.parametrize(
    ("case", "options", "pixel_type"),
    [
        ("int16 explicit VR", {}, sitk.sitkInt16),
        ("implicit VR", {"transfer_syntax": ImplicitVRLittleEndian}, sitk.sitkInt16),
        ("no rescale", {"rescale": (1.0, 0.0)}, sitk.sitkInt16),
        ("uint16, 12 bits stored", {"signed": False, "bits_stored": 12}, sitk.sitkInt16),
        ("slope 2", {"rescale": (2.0, -2048.0)}, sitk.sitkInt16),
        ("fractional rescale", {"rescale": (0.5, -1024.5)}, sitk.sitkFloat32),
        ("beyond int16", {"scale": 40, "rescale": (2.0, 0.0)}, sitk.sitkFloat32),
        (
            "uint16 beyond int16",
            {"scale": 30, "offset": 30000, "signed": False, "rescale": (1.0, -100.0)},
            sitk.sitkFloat32,
        ),
        (
            "uint16 beyond int16, no rescale",
            {"scale": 30, "offset": 30000, "signed": False, "rescale": (1.0, 0.0)},
            sitk.sitkFloat32,
        ),
        ("oblique", {"direction": rotation(z_degrees=20, x_degrees=15), "step": 1.25}, sitk.sitkInt16),
    ],
)
def test_numpy_pixel_reading_equals_gdcm_bit_for_bit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, options: dict[str, Any], pixel_type: int
) -> None:
    volume = ramp_volume((4, 6, 5)).astype(np.int32) * options.pop("scale", 1) + options.pop("offset", 0)
    write_series(tmp_path, volume, **options)
    native, image, gdcm = _read_both_ways(tmp_path, monkeypatch)
    assert native is not None, f"{case}: read with GDCM, not numpy"
    assert image.GetPixelID() == pixel_type
    assert_identical(image, gdcm)
    slope, intercept = options.get("rescale", (1.0, -1024.0))
    assert np.array_equal(voxels(image), np.round((volume - intercept) / slope) * slope + intercept)  # as stored


def test_numpy_pixel_reading_of_slices_with_different_rescales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    even = (ramp_volume((3, 4, 4)) // 2) * 2
    paths = write_series(tmp_path, even, rescale=(1.0, -1024.0))
    ds = pydicom.dcmread(paths[2])
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024.25"
    ds.PixelData = ((even[2] + 1024.25) * 2).astype(np.int16).tobytes()
    ds.save_as(paths[2])
    native, image, gdcm = _read_both_ways(tmp_path, monkeypatch)
    assert native is not None and image.GetPixelID() == sitk.sitkFloat32
    assert_identical(image, gdcm)


@pytest.mark.parametrize("oddity", ["bits above BitsStored", "element after the pixel data", "MONOCHROME1"])
def test_unusual_pixel_data_is_left_to_gdcm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oddity: str) -> None:
    volume = ramp_volume((3, 4, 4))
    paths = write_series(tmp_path, volume, signed=False, bits_stored=12)
    ds = pydicom.dcmread(paths[1])
    if oddity == "bits above BitsStored":  # an overlay bit in bit 13: GDCM masks it off
        ds.PixelData = (np.frombuffer(ds.PixelData, np.uint16) | 0x2000).astype(np.uint16).tobytes()
    elif oddity == "element after the pixel data":
        ds.add_new(0xFFFCFFFC, "OB", b"\0" * 16)  # Data Set Trailing Padding
    else:
        ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(paths[1])
    native, image, gdcm = _read_both_ways(tmp_path, monkeypatch)
    assert native is None
    assert_identical(image, gdcm)
    if oddity != "MONOCHROME1":
        assert np.array_equal(voxels(image), volume)


def test_uneven_series_is_refused_then_resampled(tmp_path: Path) -> None:
    volume = np.stack([np.full((4, 4), 10 * k, np.int16) for k in range(5)])
    z = [0.0, 2.0, 4.0, 6.6, 8.6]  # one 2.6 mm step among 2 mm steps
    write_series(tmp_path, volume, positions=[(0.0, 0.0, zz) for zz in z])
    with pytest.raises(GeometryError, match=r"uneven slice spacing.*--fix-geometry"):
        read_scan(tmp_path)
    scan = read_scan(tmp_path, fix_geometry=True)
    assert scan.repaired and scan.image.GetSize() == (4, 4, 5)
    assert scan.image.GetSpacing()[2] == pytest.approx(2.15)
    assert any(w.startswith("repair: resampled 5 slices onto 5") for w in scan.warnings)
    # HU are interpolated linearly between the slices that bracket each new one.
    expected = np.interp(np.linspace(0, 8.6, 5), z, [0, 10, 20, 30, 40])
    np.testing.assert_allclose(voxels(scan.image)[:, 0, 0], expected, atol=1e-4)


def test_tilted_series_is_refused_then_de_sheared(tmp_path: Path) -> None:
    shift = 2.0 * np.tan(np.radians(12))
    write_series(tmp_path, ramp_volume((4, 8, 8)), positions=[(0.0, k * shift, 2.0 * k) for k in range(4)])
    with pytest.raises(GeometryError, match="gantry tilt: slice positions run 12 degrees off"):
        read_scan(tmp_path)
    scan = read_scan(tmp_path, fix_geometry=True)
    assert scan.repaired and scan.image.GetSpacing() == pytest.approx((0.8, 0.7, 2.0))
    np.testing.assert_allclose(scan.image.GetDirection(), np.eye(3).ravel())


# --- bad inputs ------------------------------------------------------------------------------------------------


def test_missing_input_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing\.nii\.gz: does not exist"):
        read_scan(tmp_path / "nothing.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.nii.gz: is an empty file \(0 bytes\)"):
        read_scan(tmp_path / "empty.nii.gz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty: is an empty file"):
        read_scan(tmp_path / "empty")


def test_folder_with_no_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no scan here")
    with pytest.raises(InputError, match="holds no DICOM series or image file"):
        read_scan(tmp_path)


def test_truncated_dicom_names_the_file(tmp_path: Path) -> None:
    paths = write_series(tmp_path, ramp_volume((4, 8, 8)))
    paths[2].write_bytes(paths[2].read_bytes()[:-20])
    with pytest.raises(InputError, match=r"IM0002: truncated: pixel data holds at most"):
        read_scan(tmp_path)


def test_corrupt_pixel_data_found_by_gdcm_names_the_file(tmp_path: Path) -> None:
    # A JPEG-2000 transfer syntax over raw bytes: the header is fine, the pixels cannot be decoded.
    paths = write_series(tmp_path, ramp_volume((3, 8, 8)))
    import pydicom

    ds = pydicom.dcmread(paths[1])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds.PixelData = pydicom.encaps.encapsulate([b"not a jpeg2000 stream"])
    ds.save_as(paths[1])
    with pytest.raises(InputError, match=r"IM0001: SimpleITK/GDCM cannot read it"):
        read_scan(tmp_path)


def test_mixed_series_folder_with_equal_series_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path, ramp_volume((4, 4, 4)), names=[f"a{k}" for k in range(4)], description="phase 1")
    write_series(tmp_path, ramp_volume((4, 4, 4)), names=[f"b{k}" for k in range(4)], description="phase 2")
    with pytest.raises(InputError, match=r"2 CT series that no rule tells apart") as refused:
        read_scan(tmp_path)
    assert "'phase 1'" in str(refused.value) and "'phase 2'" in str(refused.value)


def test_one_series_uid_with_conflicting_geometry_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path, ramp_volume((3, 4, 4)), series_uid="1.2.3", names=["a0", "a1", "a2"])
    write_series(
        tmp_path, ramp_volume((3, 4, 4)), series_uid="1.2.3", names=["b0", "b1", "b2"], direction=rotation(0, 90)
    )
    with pytest.raises(GeometryError, match="ImageOrientationPatient differs between slices"):
        read_scan(tmp_path)


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    paths = write_series(tmp_path, ramp_volume((6, 4, 4)))
    paths[3].unlink()
    with pytest.raises(GeometryError, match=r"missing slices: .*\(~1 missing\)"):
        read_scan(tmp_path)


def test_nan_filled_nifti_is_refused(tmp_path: Path) -> None:
    values = np.full((4, 5, 6), np.nan, np.float32)
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=r"nan.nii.gz: contains 120 NaN/infinite voxel\(s\) of 120"):
        read_scan(tmp_path / "nan.nii.gz")
    # One bad voxel is enough (SimpleITK's own NIfTI reader would hand back 0 there); NRRD too.
    values = np.full((4, 5, 6), -100.0, np.float32)
    values[1, 2, 3] = np.inf
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "inf.nii.gz")
    with pytest.raises(InputError, match=r"contains 1 NaN/infinite voxel\(s\) of 120"):
        read_scan(tmp_path / "inf.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(values), str(tmp_path / "inf.nrrd"))
    with pytest.raises(InputError, match=r"inf.nrrd: contains 1 NaN/infinite voxel"):
        read_scan(tmp_path / "inf.nrrd")


def test_2d_and_4d_images_are_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((8, 9), np.int16), np.eye(4)), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.int16), np.eye(4)), tmp_path / "time.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 1), np.int16), np.eye(4)), tmp_path / "slice.nii.gz")
    with pytest.raises(InputError, match=r"flat.nii.gz: is a 2D image \(size 8x9\)"):
        read_scan(tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match=r"time.nii.gz: is a 4D image \(size 4x5x6x3\)"):
        read_scan(tmp_path / "time.nii.gz")
    with pytest.raises(InputError, match=r"slice.nii.gz: has a single slice"):
        read_scan(tmp_path / "slice.nii.gz")
    nib.save(nib.Nifti1Image(np.full((4, 5, 6, 1), -100, np.int16), np.eye(4)), tmp_path / "t1.nii.gz")
    assert read_scan(tmp_path / "t1.nii.gz").image.GetDimension() == 3  # a length-1 time axis is fine


def test_mr_dicom_is_not_ct(tmp_path: Path) -> None:
    write_series(tmp_path, ramp_volume((4, 4, 4)), modality="MR")
    with pytest.raises(InputError, match=r"has no CT image series to read.*modality MR is not CT"):
        read_scan(tmp_path)


def test_corrupt_nifti_names_the_format(tmp_path: Path) -> None:
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match=r"broken.nii.gz: cannot be read as NIFTI"):
        read_scan(tmp_path / "broken.nii.gz")


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "locked.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), -100, np.int16), np.eye(4)), path)
    folder = tmp_path / "series"
    paths = write_series(folder, ramp_volume((3, 4, 4)))
    path.chmod(0)
    paths[1].chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop this user from reading")
        with pytest.raises(InputError, match=r"locked\.nii\.gz: cannot be read: permission denied"):
            read_scan(path)
        with pytest.raises(InputError, match="IM0001: cannot be read: permission denied"):
            read_scan(folder)
    finally:
        path.chmod(0o644)
        paths[1].chmod(0o644)


def test_permission_denied_is_reported_even_when_running_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores chmod 000, so make the open itself fail the way it does for an ordinary user.
    import medseg.io.series as series_module

    paths = write_series(tmp_path, ramp_volume((3, 4, 4)))
    real_open = open

    def deny_second_slice(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == paths[1]:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(series_module, "open", deny_second_slice, raising=False)
    with pytest.raises(InputError, match=r"IM0001: cannot be read: permission denied \(Permission denied\)"):
        read_scan(tmp_path)


def test_inputs_are_not_modified(tmp_path: Path) -> None:
    paths = write_series(tmp_path, ramp_volume((4, 4, 4)), positions=[(0, 0, z) for z in (0.0, 2.0, 4.0, 7.0)])
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    read_scan(tmp_path, fix_geometry=True)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before
    shutil.rmtree(tmp_path)
