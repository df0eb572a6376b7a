from __future__ import annotations

import random
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pydicom.config
import pytest
import SimpleITK as sitk
from pydicom.uid import SegmentationStorage

from medseg import __version__
from medseg.errors import GeometryError, InputError
from medseg.io.writers.dicom_seg import write_dicom_seg
from medseg.io.writers.geometry import source_slice_indices
from medseg.io.writers.labels import label_table
from medseg.io.writers.rtstruct import write_rtstruct
from tests.io.dicom_factory import write_series
from tests.io.writers.conftest import Case, ct_series, synthetic_labels

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
