"""Write small synthetic DICOM series with pydicom, for tests that need geometry or headers real data lacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def rotation(z_degrees: float = 0.0, x_degrees: float = 0.0) -> np.ndarray:
    """3x3 rotation about z then x; its columns are row, column and normal directions of an oblique slice."""
    cz, sz = np.cos(np.radians(z_degrees)), np.sin(np.radians(z_degrees))
    cx, sx = np.cos(np.radians(x_degrees)), np.sin(np.radians(x_degrees))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ rx


def write_series(
    folder: Path,
    volume_hu: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    step: float = 2.0,
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    direction: np.ndarray | None = None,
    positions: Sequence[Sequence[float]] | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    modality: str = "CT",
    sop_class: str | None = None,
    series_uid: str | None = None,
    image_type: str = "ORIGINAL\\PRIMARY\\AXIAL",
    kernel: str = "B30f",
    series_number: int = 2,
    description: str = "synthetic",
    rescale: tuple[float, float] = (1.0, -1024.0),
    instance_numbers: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    frame_of_reference_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    bits_stored: int = 16,
    signed: bool = True,
    photometric: str = "MONOCHROME2",
) -> list[Path]:
    """Write ``volume_hu`` (shape (slices, rows, columns), HU) as one file per slice and return the paths.

    By default slice k sits at ``origin + k * step * normal`` with the orientation given by the columns of
    ``direction`` (row, column, normal; identity = axial LPS). ``positions``/``orientations`` override per slice.
    ``pixel_spacing`` is in DICOM order (between rows, between columns). Files are named ``names[k]`` (default
    ``IM{k:04d}`` without suffix), written in reverse slice order of InstanceNumber unless given. Pixels are
    stored as 16-bit words holding ``bits_stored`` bits, two's complement when ``signed``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    n = volume_hu.shape[0]
    if positions is None:
        positions = [np.asarray(origin, dtype=float) + k * step * direction[:, 2] for k in range(n)]
    if orientations is None:
        orientations = [list(direction[:, 0]) + list(direction[:, 1])] * n
    instance_numbers = list(range(n, 0, -1)) if instance_numbers is None else list(instance_numbers)
    names = [f"IM{k:04d}" for k in range(n)] if names is None else list(names)
    series_uid = generate_uid() if series_uid is None else series_uid
    study_uid = generate_uid()
    frame_uid = generate_uid() if frame_of_reference_uid is None else frame_of_reference_uid
    sop_class = (CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE) if sop_class is None else sop_class
    slope, intercept = rescale
    stored = np.round((np.asarray(volume_hu, dtype=float) - intercept) / slope).astype(
        np.int16 if signed else np.uint16
    )
    paths = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.ImageType = image_type.split("\\")
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.ConvolutionKernel = kernel
        ds.PatientName = "Synthetic^Test"
        ds.PatientID = "synthetic"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = series_number
        ds.InstanceNumber = instance_numbers[k]
        ds.SliceThickness = f"{step:.6g}"
        ds.ImagePositionPatient = [f"{v:.10g}" for v in positions[k]]
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in orientations[k]]
        ds.PixelSpacing = [f"{v:.10g}" for v in pixel_spacing]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.Rows, ds.Columns = int(volume_hu.shape[1]), int(volume_hu.shape[2])
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = int(signed)
        ds.RescaleSlope = f"{slope:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.PixelData = stored[k].tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def ramp_volume(shape: tuple[int, int, int] = (6, 5, 4), seed: int = 0) -> np.ndarray:
    """A (slices, rows, columns) int16 HU volume whose every voxel differs (so misordering shows), -1000..1000."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1000, size=shape).astype(np.int16)
