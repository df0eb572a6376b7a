from __future__ import annotations

import random
import warnings
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pydicom.config
import pytest
import SimpleITK as sitk
from pydicom.uid import RTStructureSetStorage, SegmentationStorage
from skimage.draw import polygon

from medseg import __version__
from medseg.errors import GeometryError, InputError
from medseg.io.writers.dicom import (
    TYPE2_PATIENT_STUDY,
    plane_contours,
    with_type2_attributes,
    write_dicom_seg,
    write_rtstruct,
)
from medseg.io.writers.geometry import ijk_to_lps, source_slice_indices
from medseg.io.writers.labels import label_table
from tests.io.dicom_factory import write_series
from tests.io.writers.conftest import Case, ct_series, synthetic_labels


def test_missing_type2_attributes_are_added_empty_on_a_copy(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, np.zeros((1, 3, 4), dtype=np.int16))
    source = pydicom.dcmread(path)  # written without PatientBirthDate, PatientSex, ReferringPhysicianName
    keywords = source.dir()
    completed = with_type2_attributes(source)
    assert completed is not source
    assert all(completed[keyword].value == "" for keyword in ("PatientBirthDate", "PatientSex"))
    assert all(keyword in completed for keyword in TYPE2_PATIENT_STUDY)
    assert completed.StudyID == "1" and completed.PatientName == "Synthetic^Test"  # present values kept
    assert completed.file_meta is source.file_meta
    np.testing.assert_array_equal(completed.pixel_array, source.pixel_array)
    assert source.dir() == keywords and "PatientBirthDate" not in source  # the caller's dataset is untouched
    # nothing missing: no copy
    assert with_type2_attributes(completed) is completed


def test_multi_valued_person_names_keep_their_first_value_on_a_copy(tmp_path: Path) -> None:
    (path,) = write_series(tmp_path, np.zeros((1, 3, 4), dtype=np.int16))
    source = pydicom.dcmread(path)
    source.PatientName = ["Doe^John", "Roe^Jane"]
    completed = with_type2_attributes(source)
    assert completed is not source
    assert str(completed.PatientName) == "Doe^John" and completed.data_element("PatientName").VM == 1
    assert source.data_element("PatientName").VM == 2


LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"


def _round_trip(case: Case, path: Path, segmentation_type: str = "BINARY") -> hd.seg.Segmentation:
    """Write with the sources shuffled, read back, and check references and voxels slice by slice."""
    shuffled = list(case.sources)
    random.Random(1).shuffle(shuffled)
    written = write_dicom_seg(case.labels, case.table, shuffled, path, segmentation_type=segmentation_type)
    assert written == path
    seg = hd.seg.segread(path)

    source = case.sources[0]
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert [item.SeriesInstanceUID for item in seg.ReferencedSeriesSequence] == [source.SeriesInstanceUID]
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in case.sources}

    voxels = sitk.GetArrayViewFromImage(case.labels)
    present = sorted(set(np.unique(voxels).tolist()) - {0})
    assert seg.get_segment_numbers() == list(range(1, len(present) + 1))
    for number, value in enumerate(present, start=1):
        description = seg.get_segment_description(number)
        info = case.table[value]
        assert description.segment_label == info.name
        assert description.segmented_property_type.value == info.type.value
        assert description.segmented_property_category.value == info.category.value
        assert description.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        assert description.algorithm_identification[0].AlgorithmName == "medseg"
        assert description.algorithm_identification[0].AlgorithmVersion == __version__

    # Each stored frame points at the CT instance it was derived from ...
    plane = dict(zip((ds.SOPInstanceUID for ds in shuffled), source_slice_indices(case.labels, shuffled), strict=True))
    frame_sources = [
        frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        for frame in seg.PerFrameFunctionalGroupsSequence
    ]
    labelled_planes = set(np.flatnonzero(voxels.any(axis=(1, 2))).tolist())
    assert {plane[uid] for uid in frame_sources} == labelled_planes
    # ... and the mask comes back exactly, slice by slice through those references.
    uids = [ds.SOPInstanceUID for ds in shuffled]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    lookup = np.zeros(256, dtype=np.int64)
    lookup[present] = np.arange(1, len(present) + 1)
    for n, uid in enumerate(uids):
        np.testing.assert_array_equal(pixels[n], lookup[voxels[plane[uid]]])
    return seg


def test_oblique_binary_seg_round_trips_with_laterality(oblique_case: Case, tmp_path: Path) -> None:
    seg = _round_trip(oblique_case, tmp_path / "seg.dcm")
    assert seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentationType == "BINARY"
    type_item = seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert type_item.CodeMeaning == "Parotid gland"
    assert type_item.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"  # Right
    assert seg.SegmentSequence[0].RecommendedDisplayCIELabValue is not None


def test_labelmap_type_is_available(oblique_case: Case, tmp_path: Path) -> None:
    seg = _round_trip(oblique_case, tmp_path / "seg.dcm", segmentation_type="LABELMAP")
    assert seg.SOPClassUID == LABEL_MAP_SEGMENTATION_STORAGE


def test_empty_mask_writes_nothing_and_bad_geometry_is_refused(oblique_case: Case, tmp_path: Path) -> None:
    empty = sitk.Image(oblique_case.labels.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(oblique_case.labels)
    assert write_dicom_seg(empty, oblique_case.table, oblique_case.sources, tmp_path / "empty.dcm") is None
    other_series = ct_series(synthetic_labels())  # same size, axis-aligned: does not fit the oblique mask
    with pytest.raises(GeometryError):
        write_dicom_seg(oblique_case.labels, oblique_case.table, other_series, tmp_path / "bad.dcm")
    with pytest.raises(ValueError, match="segmentation_type"):
        write_dicom_seg(oblique_case.labels, oblique_case.table, oblique_case.sources, tmp_path / "x.dcm", "FRACTIONAL")
    assert not list(tmp_path.iterdir())


def test_series_without_type2_patient_attributes(tmp_path: Path) -> None:
    """De-identified series often lack PatientBirthDate, PatientSex, ReferringPhysicianName (type 2): both DICOM
    writers add them empty, on copies of the source headers."""
    volume = np.full((4, 6, 5), -1000, dtype=np.int16)
    volume[1:3, 2:5, 1:4] = 40
    files = write_series(tmp_path / "ct", volume)
    sources = [pydicom.dcmread(path, stop_before_pixels=True) for path in files]
    assert not any(keyword in sources[0] for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName"))
    keywords = [source.dir() for source in sources]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    ct = reader.Execute()
    labels = sitk.Cast(ct > 0, sitk.sitkUInt8)
    table = label_table({1: "GTV"})

    seg = hd.seg.segread(write_dicom_seg(labels, table, sources, tmp_path / "seg.dcm"))
    assert seg.PatientID == "synthetic" and seg.StudyID == "1"
    assert seg.PatientBirthDate in ("", None) and seg.PatientSex in ("", None)
    rtstruct = pydicom.dcmread(write_rtstruct(labels, table, sources, tmp_path / "rt.dcm"))
    assert rtstruct.PatientBirthDate == "" and rtstruct.ReferringPhysicianName == ""
    assert [source.dir() for source in sources] == keywords  # the caller's datasets are untouched


def test_over_long_source_values_are_copied_without_warnings(oblique_case: Case, tmp_path: Path) -> None:
    # As in the IBSI series: SH values (16 characters at most) of 17 characters. New elements: an element keeps
    # the validation mode of its creation.
    with pydicom.config.disable_value_validation():
        for source in oblique_case.sources:
            del source.StudyID, source.AccessionNumber
            source.StudyID = "IBSI_1_STS_019_CT"
            source.AccessionNumber = "ACC-2144184978610"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg_path = write_dicom_seg(oblique_case.labels, oblique_case.table, oblique_case.sources, tmp_path / "s.dcm")
        rt_path = write_rtstruct(oblique_case.labels, oblique_case.table, oblique_case.sources, tmp_path / "r.dcm")
    assert [str(w.message) for w in caught if "exceeds the maximum length" in str(w.message)] == []
    with pydicom.config.disable_value_validation():
        for path in (seg_path, rt_path):
            written = pydicom.dcmread(path)
            assert (written.StudyID, written.AccessionNumber) == ("IBSI_1_STS_019_CT", "ACC-2144184978610")


@pytest.mark.data
def test_real_uncompressed_series(sts019: Case, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = _round_trip(sts019, tmp_path / "STS_019_seg.dcm")
    assert [str(w.message) for w in caught if "exceeds the maximum length" in str(w.message)] == []
    assert seg.NumberOfFrames == 15  # the GTV spans 15 of the 47 slices
    assert seg.PatientID == "STS_019"


@pytest.mark.data
def test_real_jpeg2000_series_with_five_organs(totalseg: Case, tmp_path: Path) -> None:
    seg = _round_trip(totalseg, tmp_path / "totalseg_seg.dcm")
    assert seg.number_of_segments == 5
    assert seg.NumberOfFrames == int(
        sum(np.any(sitk.GetArrayViewFromImage(totalseg.labels) == v, axis=(1, 2)).sum() for v in range(1, 6))
    )


@pytest.mark.data
def test_series_with_blanked_uids_is_refused(totalseg_raw: Case, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty or missing SOPClassUID, SOPInstanceUID, StudyInstanceUID"):
        write_dicom_seg(totalseg_raw.labels, totalseg_raw.table, totalseg_raw.sources, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir())


def test_multi_valued_patient_name_does_not_fail_the_seg(oblique_case: Case, tmp_path: Path) -> None:
    """highdicom refuses a PatientName with several values ("Invalid type for a person name"): the SEG gets the
    first, and the caller's datasets keep both."""
    sources = ct_series(oblique_case.ct)
    for source in sources:
        source.PatientName = ["Doe^John", "Roe^Jane"]
    path = write_dicom_seg(oblique_case.labels, oblique_case.table, sources, tmp_path / "seg.dcm")
    assert path is not None and str(pydicom.dcmread(path).PatientName) == "Doe^John"
    assert sources[0].data_element("PatientName").VM == 2


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
