"""What a PACS or a treatment-planning system imports: the label map as DICOM objects that reference the CT series
it was made from.

**DICOM SEG** (:func:`write_dicom_seg`), for PACS, OHIF and Slicer (QuantitativeReporting / dcmqi), written with
highdicom. Segmentation type: BINARY by default. The LABELMAP type that highdicom 0.28 can also write is a separate
SOP class (Label Map Segmentation Storage, 1.2.840.10008.5.1.4.1.1.66.7, DICOM Supplement 243, final in 2024) that
readers are only now adopting: dcm4chee-arc does not accept it in its default configuration (dcm4chee-arc-light#4572),
dcmqi (Slicer's DICOM SEG plugin) and OHIF/dcmjs added it only in 2025 (dcmqi#518, dcmjs#441, OHIF#5158). The BINARY
Segmentation Storage class (1.2.840.10008.5.1.4.1.1.66.4) is read by every DICOM SEG consumer. Empty frames are
left out (highdicom's default), so the 1-bit frames stay small.

**RTSTRUCT** (:func:`write_rtstruct`), for treatment-planning systems. highdicom has no RTSTRUCT writer, so the
dataset is built with pydicom (no extra dependency such as rt-utils). Contours are the 0.5 iso-lines of each label's
mask on each axial plane (marching squares, ``skimage.measure.find_contours``): they pass half-way between inside and
outside pixel centres, so filling them back at pixel centres with the even-odd rule gives the mask again. A hole is
its own contour (even-odd / XOR semantics, as TPSs and ``rt-utils`` read them). Collinear vertices are dropped, which
changes no pixel.

**Source headers** are used as they are, quirks included. Values longer than their VR allows (the IBSI series' 17-18
character StudyID and AccessionNumber in SH) are copied with pydicom's value validation off, rather than warned about
once per attribute. De-identification often removes type-2 patient and study attributes (PatientBirthDate,
ReferringPhysicianName...) that must be present, possibly empty, in an object derived from the series; highdicom reads
them from the first source image and fails with ``AttributeError`` when they are absent. :func:`with_type2_attributes`
gives a copy with the missing ones empty, leaving the caller's dataset as it is. Person names are single-valued (VM 1,
PS3.3 C.7.1.1); exports with several values in PatientName (``Doe^John\\Roe^Jane``) exist, and highdicom refuses them
(``TypeError: Invalid type for a person name``). The copy keeps the first value, the one a PACS files the patient
under.
"""

from __future__ import annotations

import copy
import datetime
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom.config
import SimpleITK as sitk
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage.measure import find_contours

from medseg import __version__
from medseg.io.files import atomic_path
from medseg.io.writers.geometry import check_source_references, ijk_to_lps, label_array, source_slice_indices
from medseg.io.writers.labels import ANATOMICAL_STRUCTURE, LabelInfo, check_label_table, present_labels

if TYPE_CHECKING:  # highdicom takes 0.6 s to import: only a DICOM output loads it
    import highdicom as hd

# Type-2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that a derived object copies.
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


# Person-name attributes a derived object copies from the source; each has VM 1.
PERSON_NAMES = ("PatientName", "ReferringPhysicianName")


def _multi_valued(source: Dataset, keyword: str) -> bool:
    if keyword not in source:
        return False
    element = source.data_element(keyword)
    return element is not None and element.VM > 1


def with_type2_attributes(source: Dataset) -> Dataset:
    """``source`` itself when it has every attribute of :data:`TYPE2_PATIENT_STUDY` and single-valued person
    names, else a shallow copy (its own element table, the same elements and file meta) with the missing ones added
    empty and multi-valued person names reduced to their first value."""
    missing = [keyword for keyword in TYPE2_PATIENT_STUDY if keyword not in source]
    several = [keyword for keyword in PERSON_NAMES if _multi_valued(source, keyword)]
    if not missing and not several:
        return source
    copy = Dataset()
    for element in source.elements():  # raw elements stay raw: nothing is decoded or re-validated
        copy[element.tag] = element
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    for keyword in missing:
        setattr(copy, keyword, "")
    for keyword in several:
        names = source.data_element(keyword)
        assert names is not None
        # A new element: the copy shares the source's element objects, which must not change.
        copy[names.tag] = DataElement(names.tag, "PN", names.value[0])
    return copy


SEGMENTATION_TYPES = ("BINARY", "LABELMAP")


def segment_description(segment_number: int, info: LabelInfo) -> hd.seg.SegmentDescription:
    """A highdicom segment description for one label: name, codes (laterality as a type modifier), colour, and
    medseg as the automatic algorithm that made it."""
    import highdicom as hd

    description = hd.seg.SegmentDescription(
        segment_number=segment_number,
        segment_label=info.name[:64],  # LO
        segmented_property_category=info.category,
        segmented_property_type=info.type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="medseg", family=codes.DCM.ArtificialIntelligence, version=__version__
        ),
        display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in info.color)),
    )
    if info.type_modifier is not None:
        # PS3.3 C.8.20.2: the modifier sits inside the Segmented Property Type Code Sequence item.
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(info.type_modifier)
        ]
    return description


def write_dicom_seg(
    labels: sitk.Image,
    label_table: Mapping[int, LabelInfo],
    source_images: Sequence[Dataset],
    path: str | os.PathLike[str],
    segmentation_type: str = "BINARY",
    series_number: int = 9001,
    series_description: str = "medseg segmentation",
) -> Path | None:
    """Write a uint8 label map (x, y, z) as a DICOM SEG derived from ``source_images``, atomically.

    Args:
        labels: label map in the exact geometry of the source series (one plane per source image).
        label_table: meaning of each label value; values in the mask but not in the table are an error.
        source_images: the CT series' single-frame datasets (metadata suffices; any order).
        path: output file (``.dcm``).
        segmentation_type: ``"BINARY"`` (default, see the module notes) or ``"LABELMAP"``.

    Only labels present in the mask become segments; they are numbered 1..n in label-value order (BINARY needs
    consecutive numbers from 1), and the segment label is the label's name. Each frame references its source CT
    instance (Derivation Image Sequence) and the object references the source series.

    Returns:
        ``path``, or ``None`` (nothing written) when the mask has no labelled voxel: a SEG needs a segment.

    Raises:
        GeometryError: if the label map's planes do not match the source images one to one.
        InputError: if a source image lacks a UID the reference needs (see ``check_source_references``).

    ``source_images`` are not modified.
    """
    import highdicom as hd

    if segmentation_type not in SEGMENTATION_TYPES:
        raise ValueError(f"segmentation_type must be one of {SEGMENTATION_TYPES}, got {segmentation_type!r}")
    path = Path(path)
    check_label_table(label_table)
    voxels = label_array(labels)  # (z, y, x)
    present = present_labels(voxels, label_table)
    if not present:
        return None
    check_source_references(source_images)
    plane_of_source = source_slice_indices(labels, source_images)
    # Frame n of the pixel array must be the plane of source_images[n]: sort the sources by plane.
    sources_by_plane = [with_type2_attributes(source_images[n]) for n in np.argsort(plane_of_source)]
    segment_number = np.zeros(256, dtype=np.uint8)
    segment_number[present] = np.arange(1, len(present) + 1)
    with warnings.catch_warnings(), pydicom.config.disable_value_validation():
        # highdicom warns about single-component patient names (common after de-identification, "STS_019");
        # the name is copied from the CT as it is, so there is nothing to fix here.
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name")
        segmentation = hd.seg.Segmentation(
            source_images=sources_by_plane,
            pixel_array=segment_number[voxels],
            segmentation_type=segmentation_type,
            segment_descriptions=[segment_description(n, label_table[v]) for n, v in enumerate(present, start=1)],
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medseg",
            manufacturer_model_name="medseg",
            software_versions=__version__,
            device_serial_number="1",
            content_label="MEDSEG",
            content_description=series_description[:64],
        )
    segmentation.SeriesDescription = series_description[:64]
    with atomic_path(path) as tmp, pydicom.config.disable_value_validation():
        segmentation.save_as(tmp)
    return path


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
