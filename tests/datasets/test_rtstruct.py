from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from medseg.datasets.rtstruct import (
    dice,
    find_rtstruct_cases,
    import_rtstruct_case,
    read_ct_series,
    rtstruct_to_labelmap,
)
from medseg.errors import GeometryError, InputError

FRAME = "1.2.826.0.1.3680043.8.498.1"


def reference_image() -> sitk.Image:
    """10x8x4 grid, anisotropic spacing, origin off zero and a 90-degree in-plane rotation, so a rasteriser that
    ignored spacing, origin or direction would put the mask elsewhere."""
    image = sitk.Image([10, 8, 4], sitk.sitkInt16)
    image.SetSpacing((2.0, 1.0, 3.0))
    image.SetOrigin((-5.0, 10.0, 20.0))
    image.SetDirection((0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    return image


def to_physical(image: sitk.Image, index_xy: Sequence[tuple[float, float]], k: float) -> np.ndarray:
    """Contour vertices given as continuous (x, y) indices on slice k -> flat LPS mm ContourData."""
    return np.array([image.TransformContinuousIndexToPhysicalPoint((x, y, k)) for x, y in index_xy]).ravel()


def write_rtstruct(
    path: Path,
    contours: Mapping[str, Sequence[np.ndarray | tuple[str, np.ndarray]]],
    frame: str = FRAME,
    modality: str = "RTSTRUCT",
) -> Path:
    """A minimal RTSTRUCT: one ROI per key of ``contours``; each contour is ContourData (or (type, data))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = [frame_item]
    rois, roi_contours = [], []
    for number, (name, items) in enumerate(contours.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        sequence = []
        for item in items:
            kind, data = item if isinstance(item, tuple) else ("CLOSED_PLANAR", item)
            contour = Dataset()
            contour.ContourGeometricType = kind
            contour.NumberOfContourPoints = len(data) // 3
            contour.ContourData = [f"{v:.6f}" for v in data]
            sequence.append(contour)
        roi_contour.ContourSequence = sequence
        roi_contours.append(roi_contour)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = roi_contours
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def test_contours_fill_pixel_centres_with_holes_and_direction(tmp_path: Path) -> None:
    image = reference_image()
    outer = to_physical(image, square(1.5, 2.5, 4.5, 5.5), 2)  # pixel edges: centres x 2..4, y 3..5
    hole = to_physical(image, square(2.5, 3.5, 3.5, 4.5), 2)  # the centre (3, 4)
    near = to_physical(image, square(6.5, 0.5, 7.5, 1.5), 3.3)  # 0.3 slice off: belongs to slice 3
    outside = to_physical(image, square(1.5, 1.5, 3.5, 3.5), 7)  # beyond the last slice
    point = ("POINT", to_physical(image, [(1, 1)], 0))
    path = write_rtstruct(tmp_path / "rs.dcm", {"Tumour": [outer, hole, near, outside, point]})
    reports: list = []
    labels = rtstruct_to_labelmap(path, image, reports=reports)
    array = sitk.GetArrayFromImage(labels)  # (z, y, x)
    expected = np.zeros((4, 8, 10), np.uint8)
    expected[2, 3:6, 2:5] = 1
    expected[2, 4, 3] = 0
    expected[3, 1, 7] = 1
    assert np.array_equal(array, expected)
    assert labels.GetSpacing() == image.GetSpacing() and labels.GetOrigin() == image.GetOrigin()
    assert labels.GetDirection() == image.GetDirection()
    assert reports[0].contours == 3 and reports[0].skipped == 2 and reports[0].voxels == 9


def test_centres_on_the_boundary_do_not_depend_on_vertex_order(tmp_path: Path) -> None:
    """Vertices exactly on pixel centres: skimage counts boundary centres as inside for either orientation;
    matplotlib's answer changes with the orientation, which is why the rasteriser does not use it."""
    image = reference_image()
    corners = square(1, 1, 4, 4)
    results = []
    for order in (corners, corners[::-1]):
        path = write_rtstruct(tmp_path / f"rs{len(results)}.dcm", {"Box": [to_physical(image, order, 1)]})
        results.append(sitk.GetArrayFromImage(rtstruct_to_labelmap(path, image))[1])
    assert np.array_equal(results[0], results[1])
    assert results[0].sum() == 16 and results[0][1:5, 1:5].all()
    centres = np.stack(np.meshgrid(np.arange(10), np.arange(8)), axis=-1).reshape(-1, 2)
    mpl = [MplPath(np.array(order)).contains_points(centres).sum() for order in (corners, corners[::-1])]
    assert mpl[0] != mpl[1]


def test_roi_selection_ids_and_overlap_order(tmp_path: Path) -> None:
    image = reference_image()
    big = to_physical(image, square(0.5, 0.5, 5.5, 5.5), 0)
    small = to_physical(image, square(1.5, 1.5, 2.5, 2.5), 0)
    path = write_rtstruct(tmp_path / "rs.dcm", {"Body": [big], "Spot": [small]})
    array = sitk.GetArrayFromImage(rtstruct_to_labelmap(path, image, {"Body": 3, "Spot": 300}))
    assert array.dtype == np.uint16
    assert array[0, 2, 2] == 300 and array[0, 1, 1] == 3 and np.count_nonzero(array == 3) == 24
    only_spot = sitk.GetArrayFromImage(rtstruct_to_labelmap(path, image, {"Spot": 1}))
    assert only_spot.sum() == 1
    with pytest.raises(InputError, match=r"ROI\(s\) \['Liver'\] not in the RTSTRUCT, which has \['Body', 'Spot'\]"):
        rtstruct_to_labelmap(path, image, {"Liver": 1})


def test_frame_of_reference_mismatch_raises(tmp_path: Path) -> None:
    image = reference_image()
    path = write_rtstruct(tmp_path / "rs.dcm", {"Tumour": [to_physical(image, square(1.5, 1.5, 3.5, 3.5), 1)]})
    with pytest.raises(GeometryError, match=r"FrameOfReferenceUID '1\.2\.826.*' but the CT is in '1\.2\.3'"):
        rtstruct_to_labelmap(path, image, frame_of_reference_uid="1.2.3")
    image.SetMetaData("0020|0052", "9.9.9")
    with pytest.raises(GeometryError, match="another scan"):
        rtstruct_to_labelmap(path, image)
    image.SetMetaData("0020|0052", FRAME)
    assert sitk.GetArrayFromImage(rtstruct_to_labelmap(path, image)).sum() == 4


def test_non_axial_contours_and_non_rtstruct_files_raise(tmp_path: Path) -> None:
    image = reference_image()
    tilted = np.concatenate(
        [to_physical(image, [(1, 1)], 1), to_physical(image, [(3, 1)], 1), to_physical(image, [(3, 3)], 2)]
    )
    path = write_rtstruct(tmp_path / "rs.dcm", {"Tilted": [tilted]})
    with pytest.raises(GeometryError, match="axial planes"):
        rtstruct_to_labelmap(path, image)
    ct = write_rtstruct(tmp_path / "ct.dcm", {"X": []}, modality="CT")
    with pytest.raises(InputError, match="not 'RTSTRUCT'"):
        rtstruct_to_labelmap(ct, image)


IBSI_CASES = [
    "STS_002",
    "STS_003",
    "STS_008",
    "STS_012",
    "STS_015",
    "STS_018",
    "STS_019",
    "STS_024",
    "STS_025",
    "STS_032",
    "STS_035",
    "STS_041",
    "STS_042",
]


@pytest.mark.data
def test_ibsi_rtstructs_match_the_reference_masks(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = find_rtstruct_cases(data_root / "ibsi_sts")
    assert sorted(cases) == IBSI_CASES
    table = []
    for case_id, (series_dir, rtstruct) in cases.items():
        ct, frame = read_ct_series(series_dir)
        labels = rtstruct_to_labelmap(rtstruct, ct, {"GTV_Mass_CT": 1}, frame)
        reference = sitk.ReadImage(str(data_root / "ibsi_sts" / "nifti" / case_id / "CT_mask.nii.gz"))
        assert reference.GetSize() == labels.GetSize()
        assert np.allclose(reference.GetOrigin(), labels.GetOrigin(), atol=1e-4)
        score = dice(sitk.GetArrayViewFromImage(labels) > 0, sitk.GetArrayViewFromImage(reference) > 0)
        table.append((case_id, score, int(sitk.GetArrayViewFromImage(labels).sum())))
    with capsys.disabled():
        print("\nRTSTRUCT rasterised at pixel centres vs IBSI NIfTI mask:")
        for case_id, score, voxels in table:
            print(f"  {case_id}: Dice {score:.4f} ({voxels} voxels)")
    assert all(score >= 0.95 for _, score, _ in table), table


@pytest.mark.data
def test_import_keeps_ct_voxels_and_geometry(data_root: Path, tmp_path: Path) -> None:
    case_dir = data_root / "ibsi_sts" / "dicom" / "STS_019" / "CT"
    nifti = data_root / "ibsi_sts" / "nifti" / "STS_019"
    report = import_rtstruct_case(
        "STS_019",
        case_dir / "image",
        case_dir / "mask" / "RS.dcm",
        tmp_path,
        {"GTV_Mass_CT": 1},
        nifti / "CT_mask.nii.gz",
    )
    assert report.dice_vs_reference == 1.0 and report.rois[0].contours == 15
    ours, theirs = (
        sitk.ReadImage(str(tmp_path / "imagesTr" / "STS_019.nii.gz")),
        sitk.ReadImage(str(nifti / "CT_image.nii.gz")),
    )
    assert ours.GetPixelID() == sitk.sitkInt16
    assert ours.GetSize() == theirs.GetSize() and ours.GetDirection() == theirs.GetDirection()
    assert np.allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-4)
    assert np.allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    with pytest.raises(GeometryError, match="FrameOfReferenceUID"):
        ct, _ = read_ct_series(case_dir / "image")
        rtstruct_to_labelmap(case_dir / "mask" / "RS.dcm", ct, frame_of_reference_uid="1.2.3.4")
