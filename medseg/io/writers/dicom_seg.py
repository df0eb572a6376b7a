"""The label map as a DICOM Segmentation (SEG) object referencing the CT series it was made from, for PACS,
OHIF and Slicer (QuantitativeReporting / dcmqi), written with highdicom.

Segmentation type: BINARY by default. The LABELMAP type that highdicom 0.28 can also write is a separate SOP class
(Label Map Segmentation Storage, 1.2.840.10008.5.1.4.1.1.66.7, DICOM Supplement 243, final in 2024) that readers
are only now adopting: dcm4chee-arc does not accept it in its default configuration (dcm4chee-arc-light#4572),
dcmqi (Slicer's DICOM SEG plugin) and OHIF/dcmjs added it only in 2025 (dcmqi#518, dcmjs#441, OHIF#5158). The BINARY
Segmentation Storage class (1.2.840.10008.5.1.4.1.1.66.4) is read by every DICOM SEG consumer. Empty frames are
left out (highdicom's default), so the 1-bit frames stay small.

Source headers are used as they are, quirks included: missing type-2 patient/study attributes are added empty (on
copies, see :mod:`medseg.io.writers.source_headers`) and values longer than their VR allows (the IBSI series' 17-18
character StudyID and AccessionNumber in SH) are copied with pydicom's value validation off, rather than warned
about once per attribute.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom.config
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from medseg import __version__
from medseg.io.files import atomic_path
from medseg.io.writers.geometry import check_source_references, label_array, source_slice_indices
from medseg.io.writers.labels import LabelInfo, check_label_table, present_labels
from medseg.io.writers.source_headers import with_type2_attributes

SEGMENTATION_TYPES = ("BINARY", "LABELMAP")


def segment_description(segment_number: int, info: LabelInfo) -> hd.seg.SegmentDescription:
    """A highdicom segment description for one label: name, codes (laterality as a type modifier), colour, and
    medseg as the automatic algorithm that made it."""
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
