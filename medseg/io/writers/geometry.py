"""Geometry shared by the writers: the voxel-to-LPS matrix of a label map, which source DICOM slice each of its
axial planes is (DICOM SEG and RTSTRUCT reference the CT slice by slice), and whether the source slices carry
the UIDs such a reference needs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from medseg.errors import GeometryError, InputError

# Positions in DICOM are decimal strings of at most 16 characters, so they round to ~1e-5 mm (often 1e-3 mm).
# A source plane "is" slice k when it lies within this fraction of a voxel of it.
SLICE_TOLERANCE_VOXELS = 1e-2
DIRECTION_TOLERANCE = 1e-4


def check_label_image(labels: sitk.Image) -> None:
    """Raise ``ValueError`` unless ``labels`` is a 3D, single-component, 8-bit unsigned image."""
    if labels.GetDimension() != 3 or labels.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"expected a 3D scalar label map, got {labels.GetDimension()}D {labels.GetPixelIDTypeAsString()}"
        )
    if labels.GetPixelID() != sitk.sitkUInt8:
        raise ValueError(f"expected a uint8 label map, got {labels.GetPixelIDTypeAsString()}")


def label_array(labels: sitk.Image) -> np.ndarray:
    """The voxels of a uint8 3D label map as a numpy array of shape (z, y, x): a read-only view of the image's
    buffer, not a copy (a 512 x 512 x 1000 map is 250 MiB), valid while ``labels`` lives; see
    :func:`check_label_image` for what is refused."""
    check_label_image(labels)
    return sitk.GetArrayViewFromImage(labels)


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4x4 matrix taking voxel index (i, j, k) = (x, y, z) to LPS millimetres, as ITK defines it."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=float)
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def source_slice_indices(labels: sitk.Image, source_images: Sequence[Dataset]) -> list[int]:
    """The z index of ``labels`` that each single-frame source image is, checked against the image geometry.

    Every source image must have the label map's in-plane size, pixel spacing and row/column directions, lie on one
    of its planes, and each plane must have exactly one source image.

    Returns:
        ``k[n]`` for ``source_images[n]``: a permutation of ``range(labels.GetSize()[2])``.

    Raises:
        GeometryError: naming the first source image that does not fit, and the mismatch.
    """
    size = labels.GetSize()
    matrix = ijk_to_lps(labels)
    to_index = np.linalg.inv(matrix)
    direction = matrix[:3, :3] / np.asarray(labels.GetSpacing())
    indices: list[int] = []
    for dataset in source_images:
        where = getattr(dataset, "filename", None) or f"SOPInstanceUID {dataset.get('SOPInstanceUID', '?')}"
        if int(dataset.get("NumberOfFrames", 1) or 1) != 1:
            raise GeometryError(where, "multi-frame source images are not supported; pass single-frame CT slices")
        missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if k not in dataset]
        if missing:
            raise GeometryError(where, f"source image lacks {', '.join(missing)}")
        if (int(dataset.Columns), int(dataset.Rows)) != size[:2]:
            raise GeometryError(
                where, f"source image is {dataset.Columns}x{dataset.Rows} pixels, the label map {size[0]}x{size[1]}"
            )
        orientation = np.asarray(dataset.ImageOrientationPatient, dtype=float)
        if not np.allclose(orientation, np.r_[direction[:, 0], direction[:, 1]], atol=DIRECTION_TOLERANCE):
            raise GeometryError(
                where,
                f"ImageOrientationPatient {orientation.tolist()} differs from the label map's row/column directions "
                f"{np.r_[direction[:, 0], direction[:, 1]].round(6).tolist()}",
            )
        # PixelSpacing is (between rows, between columns) = (y, x).
        row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
        spacing = labels.GetSpacing()
        if not np.allclose([column_spacing, row_spacing], spacing[:2], rtol=1e-4, atol=1e-4):
            raise GeometryError(where, f"PixelSpacing {list(dataset.PixelSpacing)} differs from {spacing[1::-1]}")
        continuous = to_index @ np.r_[np.asarray(dataset.ImagePositionPatient, dtype=float), 1.0]
        k = round(continuous[2])
        off_grid = np.abs(continuous[:3] - [0.0, 0.0, k])
        if np.any(off_grid > SLICE_TOLERANCE_VOXELS) or not 0 <= k < size[2]:
            raise GeometryError(
                where,
                f"ImagePositionPatient {list(dataset.ImagePositionPatient)} is not on a plane of the label map "
                f"(voxel index {continuous[:3].round(4).tolist()})",
            )
        indices.append(k)
    if sorted(indices) != list(range(size[2])):
        doubled = sorted({k for k in indices if indices.count(k) > 1})
        absent = sorted(set(range(size[2])) - set(indices))
        raise GeometryError(
            None,
            f"the {len(indices)} source images do not cover the label map's {size[2]} planes one each "
            f"(planes with two images: {doubled[:10]}, planes with none: {absent[:10]})",
        )
    return indices


# What a DICOM SEG or RTSTRUCT must point at to be filed with, and displayed on, its CT.
REFERENCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
SHARED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def check_source_references(source_images: Sequence[Dataset]) -> None:
    """Raise unless every source image has the UIDs a derived object references, and all share one study, series
    and frame of reference.

    De-identification sometimes blanks them (TotalSegmentator's example series has empty SOP Instance, Study and
    Series UIDs); a SEG or RTSTRUCT made from such slices would reference nothing a PACS knows, so it is refused
    rather than given invented UIDs.

    Raises:
        InputError: naming the first file without a UID, or the UID the slices disagree on.
    """
    if not source_images:
        raise InputError(None, "no source images: a DICOM SEG or RTSTRUCT must reference the CT series")
    for dataset in source_images:
        missing = [keyword for keyword in REFERENCE_UIDS if not str(dataset.get(keyword, "") or "").strip()]
        if missing:
            where = getattr(dataset, "filename", None) or "a source image"
            raise InputError(where, f"empty or missing {', '.join(missing)}: cannot reference this CT slice")
    for keyword in SHARED_UIDS:
        values = sorted({str(dataset.get(keyword)) for dataset in source_images})
        if len(values) > 1:
            raise InputError(None, f"the source images come from {len(values)} different {keyword}s {values[:3]}")
