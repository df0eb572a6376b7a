from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import RTStructureSetStorage
from skimage.draw import polygon

from medseg.errors import GeometryError, InputError
from medseg.io.writers.geometry import ijk_to_lps
from medseg.io.writers.rtstruct import plane_contours, write_rtstruct
from tests.io.writers.conftest import Case, ct_series, synthetic_labels


def rasterise(rtstruct: pydicom.Dataset, reference: sitk.Image, roi_number: int) -> np.ndarray:
    """Even-odd fill of one ROI's contours at pixel centres on the reference grid: bool (z, y, x)."""
    size = reference.GetSize()
    to_index = np.linalg.inv(ijk_to_lps(reference))
    mask = np.zeros(size[::-1], dtype=bool)
    roi = next(item for item in rtstruct.ROIContourSequence if item.ReferencedROINumber == roi_number)
    for contour in getattr(roi, "ContourSequence", []):
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        assert len(points) == contour.NumberOfContourPoints
        index = (np.c_[points, np.ones(len(points))] @ to_index.T)[:, :3]
        k = round(index[0, 2])
        np.testing.assert_allclose(index[:, 2], k, atol=1e-3)  # planar, on a slice
        rows, columns = polygon(index[:, 1], index[:, 0], shape=(size[1], size[0]))
        plane = np.zeros((size[1], size[0]), dtype=bool)
        plane[rows, columns] = True
        mask[k] ^= plane
    return mask


def dice(first: np.ndarray, second: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(first & second) / (np.count_nonzero(first) + np.count_nonzero(second))


def test_plane_contours_of_a_ring_are_outer_and_hole() -> None:
    ring = np.zeros((7, 8), dtype=bool)
    ring[1:6, 0:5] = True  # touches the left border
    ring[3, 2] = False
    contours = plane_contours(ring)
    assert len(contours) == 2
    spans = sorted((c[:, 0].min(), c[:, 0].max(), c[:, 1].min(), c[:, 1].max()) for c in contours)
    assert spans == [(-0.5, 4.5, 0.5, 5.5), (1.5, 2.5, 2.5, 3.5)]  # half-way between inside and outside centres
    square = plane_contours(np.pad(np.ones((3, 3), dtype=bool), 1))[0]
    assert len(square) == 8  # collinear points dropped: 4 corners cut by marching squares -> 8 vertices


def test_oblique_mask_with_hole_round_trips_exactly(oblique_case: Case, tmp_path: Path) -> None:
    path = write_rtstruct(oblique_case.labels, oblique_case.table, oblique_case.sources[::-1], tmp_path / "rt.dcm")
    rtstruct = pydicom.dcmread(path)
    assert rtstruct.SOPClassUID == RTStructureSetStorage and rtstruct.Modality == "RTSTRUCT"
    source = oblique_case.sources[0]
    assert (rtstruct.StudyInstanceUID, rtstruct.PatientID) == (source.StudyInstanceUID, source.PatientID)
    frame = rtstruct.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == source.FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ContourImageSequence] == [
        ds.SOPInstanceUID for ds in oblique_case.sources
    ]
    assert [roi.ROIName for roi in rtstruct.StructureSetROISequence] == ["RightParotid", "Mandible", "Lesion"]
    assert [roi.ROINumber for roi in rtstruct.StructureSetROISequence] == [1, 2, 3]
    assert [o.RTROIInterpretedType for o in rtstruct.RTROIObservationsSequence] == ["ORGAN", "ORGAN", ""]
    assert list(rtstruct.ROIContourSequence[1].ROIDisplayColor) == list(oblique_case.table[2].color)
    identification = rtstruct.RTROIObservationsSequence[0].RTROIIdentificationCodeSequence[0]
    assert identification.CodeValue == "45289007"
    assert identification.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"

    voxels = sitk.GetArrayViewFromImage(oblique_case.labels)
    plane_uid = {k: ds.SOPInstanceUID for k, ds in enumerate(oblique_case.sources)}
    for value in (1, 2, 3):
        np.testing.assert_array_equal(rasterise(rtstruct, oblique_case.labels, value), voxels == value)
        roi = rtstruct.ROIContourSequence[value - 1]
        for contour in roi.ContourSequence:  # every contour references the slice it lies on
            k = round((np.linalg.inv(ijk_to_lps(oblique_case.labels)) @ np.r_[contour.ContourData[:3], 1.0])[2])
            assert contour.ContourImageSequence[0].ReferencedSOPInstanceUID == plane_uid[k]
    assert len(rtstruct.ROIContourSequence[0].ContourSequence) == 6  # 3 slices x (outline + hole)


def test_absent_label_is_an_roi_without_contours_and_bad_inputs_are_refused(oblique_case: Case, tmp_path: Path) -> None:
    voxels = sitk.GetArrayFromImage(oblique_case.labels)
    voxels[voxels == 3] = 0
    labels = sitk.GetImageFromArray(voxels)
    labels.CopyInformation(oblique_case.labels)
    rtstruct = pydicom.dcmread(write_rtstruct(labels, oblique_case.table, oblique_case.sources, tmp_path / "a.dcm"))
    assert rtstruct.StructureSetROISequence[2].ROIName == "Lesion"
    assert "ContourSequence" not in rtstruct.ROIContourSequence[2]
    with pytest.raises(GeometryError):
        write_rtstruct(labels, oblique_case.table, ct_series(synthetic_labels()), tmp_path / "b.dcm")
    blank = [pydicom.Dataset(ds) for ds in oblique_case.sources]
    del blank[0].SeriesInstanceUID
    with pytest.raises(InputError, match="SeriesInstanceUID"):
        write_rtstruct(labels, oblique_case.table, blank, tmp_path / "c.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm"]


def test_names_outside_latin1_survive(oblique_case: Case, tmp_path: Path) -> None:
    table = {
        value: replace(info, name=name)
        for (value, info), name in zip(
            sorted(oblique_case.table.items()), ["Glándula parótida", "下颌骨", "Läsion ✓"], strict=True
        )
    }
    path = write_rtstruct(oblique_case.labels, table, oblique_case.sources, tmp_path / "rt.dcm")
    names = [roi.ROIName for roi in pydicom.dcmread(path).StructureSetROISequence]
    assert names == ["Glándula parótida", "下颌骨", "Läsion ✓"]


@pytest.mark.data
def test_real_gtv_rasterises_back(sts019: Case, tmp_path: Path) -> None:
    import warnings

    from medseg.datasets.rtstruct import rtstruct_to_labelmap

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_rtstruct(sts019.labels, sts019.table, sts019.sources, tmp_path / "STS_019_rtstruct.dcm")
    # the source's StudyID is 17 characters (SH allows 16): copied as it is, without a warning
    assert [str(w.message) for w in caught if "exceeds the maximum length" in str(w.message)] == []
    frame = sts019.sources[0].FrameOfReferenceUID
    back = rtstruct_to_labelmap(path, sts019.ct, {"GTV_Mass": 1}, frame_of_reference_uid=frame)
    mask = sitk.GetArrayViewFromImage(sts019.labels) == 1
    assert dice(sitk.GetArrayViewFromImage(back) == 1, mask) >= 0.95
    # The test rasteriser agrees, and fills the clinical RTSTRUCT (pixel-edge contours) into the NIfTI mask exactly.
    assert dice(rasterise(pydicom.dcmread(path), sts019.ct, 1), mask) >= 0.95
    clinical = pydicom.dcmread(Path(sts019.sources[0].filename).parents[1] / "mask" / "RS.dcm")
    assert dice(rasterise(clinical, sts019.ct, int(clinical.StructureSetROISequence[0].ROINumber)), mask) >= 0.99


@pytest.mark.data
def test_real_five_organs_rasterise_back(totalseg: Case, tmp_path: Path) -> None:
    from medseg.datasets.rtstruct import rtstruct_to_labelmap

    path = write_rtstruct(totalseg.labels, totalseg.table, totalseg.sources, tmp_path / "rt.dcm")
    names = {info.name: value for value, info in totalseg.table.items()}
    frame = totalseg.sources[0].FrameOfReferenceUID
    back = sitk.GetArrayFromImage(rtstruct_to_labelmap(path, totalseg.ct, names, frame_of_reference_uid=frame))
    voxels = sitk.GetArrayViewFromImage(totalseg.labels)
    for value in names.values():
        assert dice(back == value, voxels == value) >= 0.95, totalseg.table[value].name


@pytest.mark.data
def test_deidentified_source_carries_its_method(sts019: Case, tmp_path: Path) -> None:
    """PatientIdentityRemoved YES needs DeidentificationMethod (type 1C, dciodvfy); the IBSI series has both and
    the code sequence: the RTSTRUCT carries them, as the SEG does, without sharing the source's items."""
    source = sts019.sources[0]
    assert source.PatientIdentityRemoved == "YES" and "DeidentificationMethodCodeSequence" in source
    path = write_rtstruct(sts019.labels, sts019.table, sts019.sources, tmp_path / "rt.dcm")
    written = pydicom.dcmread(path)
    assert written.PatientIdentityRemoved == "YES"
    assert written.DeidentificationMethod == source.DeidentificationMethod
    codes = [item.CodeValue for item in written.DeidentificationMethodCodeSequence]
    assert codes == [item.CodeValue for item in source.DeidentificationMethodCodeSequence]
    assert written.DeidentificationMethodCodeSequence[0] is not source.DeidentificationMethodCodeSequence[0]


def test_multi_valued_patient_name_is_written_as_its_first_value(oblique_case: Case, tmp_path: Path) -> None:
    sources = ct_series(oblique_case.ct)
    for source in sources:
        source.PatientName = ["Doe^John", "Roe^Jane"]
    path = write_rtstruct(oblique_case.labels, oblique_case.table, sources, tmp_path / "rt.dcm")
    assert str(pydicom.dcmread(path).PatientName) == "Doe^John"
    assert sources[0].data_element("PatientName").VM == 2  # the caller's datasets are untouched
