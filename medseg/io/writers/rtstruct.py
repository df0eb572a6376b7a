"""The label map as an RT Structure Set (RTSTRUCT) referencing the CT series, for treatment-planning systems.

highdicom has no RTSTRUCT writer, so the dataset is built with pydicom (no extra dependency such as rt-utils).
Contours are the 0.5 iso-lines of each label's mask on each axial plane (marching squares,
``skimage.measure.find_contours``): they pass half-way between inside and outside pixel centres, so filling them
back at pixel centres with the even-odd rule gives the mask again. A hole is its own contour (even-odd / XOR
semantics, as TPSs and ``rt-utils`` read them). Collinear vertices are dropped, which changes no pixel.
"""

from __future__ import annotations

import copy
import datetime
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pydicom.config
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.measure import find_contours

from medseg import __version__
from medseg.io.files import atomic_path
from medseg.io.writers.geometry import check_source_references, ijk_to_lps, label_array, source_slice_indices
from medseg.io.writers.labels import ANATOMICAL_STRUCTURE, LabelInfo, check_label_table, present_labels
from medseg.io.writers.source_headers import TYPE2_PATIENT_STUDY, with_type2_attributes

# Retired "Detached Study Management" class: what RT Referenced Study Sequence items conventionally reference.
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
# Patient and study attributes copied from the CT so the RTSTRUCT files into the same patient and study.
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientIdentityRemoved",
    "DeidentificationMethod",  # type 1C when PatientIdentityRemoved is YES (PS3.3 C.7.1.1), as the SEG carries it
    "DeidentificationMethodCodeSequence",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
)
# Type 2 of the Frame of Reference module (PS3.3 C.7.4.1), which the top-level FrameOfReferenceUID brings in:
# present, empty when the source has none (dciodvfy: "Missing attribute Type 2 ... PositionReferenceIndicator").
_TYPE2_FRAME_OF_REFERENCE = ("PositionReferenceIndicator",)
# A vertex whose neighbouring edges have a cross product below this (pixels²) is collinear and dropped.
COLLINEAR_TOLERANCE_PX = 1e-3


def drop_collinear(points: np.ndarray) -> np.ndarray:
    """The vertices of a closed polygon without its exactly collinear ones (same shape, same fill).

    Args:
        points: (n, 2) vertices, not repeating the first at the end.
    """
    # Marching squares gives one vertex per pixel edge: mostly straight runs on a half-pixel lattice, where the
    # cross product of neighbouring edges is exactly zero (the coordinates are multiples of 0.5).
    before = points - np.roll(points, 1, axis=0)
    after = np.roll(points, -1, axis=0) - points
    turns = np.abs(before[:, 0] * after[:, 1] - before[:, 1] * after[:, 0]) > COLLINEAR_TOLERANCE_PX
    return points[turns]


def plane_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours around the foreground of one binary plane.

    Args:
        mask: bool array of shape (rows, columns) = (y, x).

    Returns:
        One (n, 2) float array of (x, y) pixel coordinates per contour (outer boundaries and holes), not repeating
        the first point at the end. Pixel (x, y) has its centre at integer coordinates.
    """
    # A background frame closes contours that reach the image border.
    padded = np.pad(mask, 1).astype(np.float32)
    contours = []
    for rows_columns in find_contours(padded, 0.5):
        vertices = drop_collinear(rows_columns[:-1])  # find_contours repeats the first point at the end
        if len(vertices) >= 3:
            contours.append(vertices[:, ::-1] - 1.0)
    return contours


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _image_reference(source: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    return item


def _roi_items(
    number: int, info: LabelInfo, mask: np.ndarray, matrix: np.ndarray, source_of_plane: Mapping[int, Dataset]
) -> tuple[Dataset, Dataset, Dataset]:
    """The Structure Set ROI, ROI Contour and RT ROI Observations items of one label.

    Args:
        number: ROI number (the label value).
        mask: bool (z, y, x) of the label.
        matrix: voxel (x, y, z) -> LPS mm, 4x4.
        source_of_plane: z index -> the CT dataset of that plane.
    """
    roi = Dataset()
    roi.ROINumber = number
    roi.ROIName = info.name[:64]
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = f"medseg {__version__}"[:64]

    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = [int(c) for c in info.color]
    roi_contour.ReferencedROINumber = number
    contours = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        for xy in plane_contours(mask[k]):
            ijk = np.c_[xy, np.full(len(xy), float(k)), np.ones(len(xy))]
            points = (ijk @ matrix.T)[:, :3]
            contour = Dataset()
            contour.ContourImageSequence = DicomSequence([_image_reference(source_of_plane[int(k)])])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.3f}" for v in points.ravel()]  # DS holds 16 characters: keep 1 µm
            contours.append(contour)
    if contours:  # Contour Sequence is type 3: an organ the model missed is an ROI without contours
        roi_contour.ContourSequence = DicomSequence(contours)

    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    # Type 2: "ORGAN" for anatomy; empty where the label's meaning is not known (generic "Tissue").
    observation.RTROIInterpretedType = "ORGAN" if info.category == ANATOMICAL_STRUCTURE else ""
    observation.ROIInterpreter = ""
    # PS3.3 C.8.8.8: category and type codes as in a SEG; laterality modifies the identification code.
    observation.SegmentedPropertyCategoryCodeSequence = DicomSequence([_code_item(info.category)])
    identification = _code_item(info.type)
    if info.type_modifier is not None:
        identification.SegmentedPropertyTypeModifierCodeSequence = DicomSequence([_code_item(info.type_modifier)])
    observation.RTROIIdentificationCodeSequence = DicomSequence([identification])
    return roi, roi_contour, observation


def write_rtstruct(
    labels: sitk.Image,
    label_table: Mapping[int, LabelInfo],
    source_images: Sequence[Dataset],
    path: str | os.PathLike[str],
    series_number: int = 9002,
    structure_set_label: str = "MEDSEG",
) -> Path:
    """Write a uint8 label map (x, y, z) as an RTSTRUCT referencing the CT series of ``source_images``, atomically.

    Every label of ``label_table`` becomes an ROI (ROI number = label value, ROI name = label name, display colour
    and SNOMED-CT identification code from the table, generation algorithm AUTOMATIC); a label absent from the mask
    is an ROI without contours. Each contour references the CT slice it lies on; points are LPS millimetres
    rounded to 1 µm.

    Raises:
        GeometryError: if the label map's planes do not match the source images one to one.
        InputError: if a source image lacks a UID the reference needs (see ``check_source_references``).
    """
    path = Path(path)
    check_label_table(label_table)
    voxels = label_array(labels)  # (z, y, x)
    present_labels(voxels, label_table)
    check_source_references(source_images)
    plane_of_source = source_slice_indices(labels, source_images)
    source_of_plane = {k: source_images[n] for n, k in enumerate(plane_of_source)}
    first = with_type2_attributes(source_images[0])  # single-valued person names
    matrix = ijk_to_lps(labels)
    now = datetime.datetime.now()

    dataset = Dataset()
    # Copied as they are (the IBSI series' StudyID is 17 characters where SH allows 16), not warned about; type-2
    # attributes that de-identification removed are added empty.
    with pydicom.config.disable_value_validation():
        for keyword in _COPIED:
            if keyword in first:
                # deep copy: a sequence (DeidentificationMethodCodeSequence) must not be shared with the source
                setattr(dataset, keyword, copy.deepcopy(first.data_element(keyword).value))  # type: ignore[union-attr]
            elif keyword in TYPE2_PATIENT_STUDY or keyword in _TYPE2_FRAME_OF_REFERENCE:
                setattr(dataset, keyword, "")
    dataset.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: any ROI name; copied text is re-encoded on writing
    dataset.SOPClassUID = RTStructureSetStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "RTSTRUCT"
    dataset.SeriesInstanceUID = generate_uid()
    dataset.SeriesNumber = series_number
    dataset.SeriesDescription = "medseg structures"
    dataset.InstanceNumber = 1
    dataset.OperatorsName = ""
    dataset.Manufacturer = "medseg"
    dataset.ManufacturerModelName = "medseg"
    dataset.SoftwareVersions = __version__
    dataset.InstanceCreationDate = dataset.StructureSetDate = now.strftime("%Y%m%d")
    dataset.InstanceCreationTime = dataset.StructureSetTime = now.strftime("%H%M%S")
    dataset.StructureSetLabel = structure_set_label[:16]
    dataset.StructureSetName = structure_set_label[:64]
    dataset.ApprovalStatus = "UNAPPROVED"

    series_reference = Dataset()
    series_reference.SeriesInstanceUID = first.SeriesInstanceUID
    series_reference.ContourImageSequence = DicomSequence(
        [_image_reference(source_of_plane[k]) for k in range(len(source_of_plane))]
    )
    study_reference = Dataset()
    study_reference.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study_reference.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_reference.RTReferencedSeriesSequence = DicomSequence([series_reference])
    frame_reference = Dataset()
    frame_reference.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_reference.RTReferencedStudySequence = DicomSequence([study_reference])
    dataset.ReferencedFrameOfReferenceSequence = DicomSequence([frame_reference])

    structure_rois, roi_contours, observations = [], [], []
    for value, info in sorted(label_table.items()):
        roi, roi_contour, observation = _roi_items(int(value), info, voxels == value, matrix, source_of_plane)
        roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        structure_rois.append(roi)
        roi_contours.append(roi_contour)
        observations.append(observation)
    dataset.StructureSetROISequence = DicomSequence(structure_rois)
    dataset.ROIContourSequence = DicomSequence(roi_contours)
    dataset.RTROIObservationsSequence = DicomSequence(observations)

    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    with atomic_path(path) as tmp, pydicom.config.disable_value_validation():
        dataset.save_as(tmp, enforce_file_format=True)
    return path
