"""Checks of what came back from the PACS: medseg's DICOM SEG and RTSTRUCT against the CT they segment and against
the file-based ``medseg segment`` of the same series."""

from __future__ import annotations

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medseg.inference.batch import segment_folder
from medseg.inference.segmenter import Segmenter
from tests.pacs.orthanc import Orthanc


def file_based_results(segmenter: Segmenter, series_dir: Path, output: Path) -> tuple[Path, Path]:
    """The DICOM SEG and RTSTRUCT ``medseg segment`` writes for ``series_dir`` with ``segmenter``."""
    result = segment_folder(series_dir, output, segmenter=segmenter, formats=("dicom-seg", "rtstruct"), progress=False)
    (record,) = result.records
    assert record.status == "ok", record.error
    case_dir = output / record.case_id
    return case_dir / f"{record.case_id}_seg.dcm", case_dir / f"{record.case_id}_rtstruct.dcm"


def orthanc_objects(orthanc: Orthanc, study: str, modality: str) -> list[Dataset]:
    """Every instance of ``modality`` in the Orthanc study, read from Orthanc."""
    datasets = []
    for series in orthanc.series_of_modality(study, modality):
        for instance in series["Instances"]:
            datasets.append(pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance))))
    return datasets


def seg_masks(seg: Dataset, sop_uids: list[str]) -> tuple[list[str], np.ndarray]:
    """Segment labels and the masks (slice, row, column, segment) of a DICOM SEG over the CT slices ``sop_uids``."""
    segmentation = hd.seg.Segmentation.from_dataset(seg)
    numbers = segmentation.get_segment_numbers()
    labels = [segmentation.get_segment_description(n).segment_label for n in numbers]
    masks = segmentation.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids, segment_numbers=numbers, assert_missing_frames_are_empty=True
    )
    return labels, masks


def rtstruct_contours(rtstruct: Dataset) -> dict[str, list[list[float]]]:
    """ROI name -> contour point lists of an RTSTRUCT."""
    names = {roi.ROINumber: roi.ROIName for roi in rtstruct.StructureSetROISequence}
    return {
        names[item.ReferencedROINumber]: [list(map(float, c.ContourData)) for c in item.get("ContourSequence", [])]
        for item in rtstruct.ROIContourSequence
    }


def rtstruct_image_uids(rtstruct: Dataset) -> set[str]:
    uids = set()
    for frame in rtstruct.ReferencedFrameOfReferenceSequence:
        for study in frame.RTReferencedStudySequence:
            for series in study.RTReferencedSeriesSequence:
                uids |= {item.ReferencedSOPInstanceUID for item in series.ContourImageSequence}
    return uids


def assert_results_match(seg: Dataset, rtstruct: Dataset, ct_files: list[Path], reference: tuple[Path, Path]) -> None:
    """SEG and RTSTRUCT belong to the CT (patient, study, frame of reference, every slice referenced) and hold the
    same masks and contours as the file-based reference pair."""
    cts = [pydicom.dcmread(path, stop_before_pixels=True) for path in ct_files]
    ct = cts[0]
    sop_uids = [c.SOPInstanceUID for c in sorted(cts, key=lambda c: float(c.ImagePositionPatient[2]))]
    for result in (seg, rtstruct):
        assert result.PatientID == ct.PatientID
        assert result.PatientName == ct.PatientName
        assert result.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert {f.FrameOfReferenceUID for f in rtstruct.ReferencedFrameOfReferenceSequence} == {ct.FrameOfReferenceUID}
    referenced = hd.seg.Segmentation.from_dataset(seg).get_source_image_uids()
    assert {uid[2] for uid in referenced} == set(sop_uids)
    assert {uid[1] for uid in referenced} == {ct.SeriesInstanceUID}
    assert rtstruct_image_uids(rtstruct) <= set(sop_uids)
    ref_seg, ref_rtstruct = (pydicom.dcmread(path) for path in reference)
    labels, masks = seg_masks(seg, sop_uids)
    ref_labels, ref_masks = seg_masks(ref_seg, sop_uids)
    assert labels == ref_labels
    assert masks.any(), "the SEG is empty"
    np.testing.assert_array_equal(masks, ref_masks)
    assert rtstruct_contours(rtstruct) == rtstruct_contours(ref_rtstruct)
