"""Fixtures for the writer tests: small synthetic scans (oblique, LPS) with a matching synthetic DICOM series, and
the two real DICOM series with their reference masks put on the CT grid."""

from __future__ import annotations

import copy
import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medseg.io.writers.labels import LabelInfo, label_table


@dataclass
class Case:
    """A CT, its uint8 label map on the same grid, the label table and the CT's DICOM datasets."""

    ct: sitk.Image
    labels: sitk.Image
    table: dict[int, LabelInfo]
    sources: list[Dataset]


def oblique_direction() -> tuple[float, ...]:
    """A right-handed rotation about an oblique axis (no axis aligned with LPS)."""
    rotation = sitk.VersorTransform((0.3, -0.5, 0.8), 0.35)
    return tuple(rotation.GetMatrix())


def synthetic_labels(direction: tuple[float, ...] | None = None) -> sitk.Image:
    """A 20 x 16 x 6 (x, y, z) label map, spacing (0.8, 0.9, 2.5): label 1 a ring with a hole on slices 1-3,
    label 2 a block touching the x = 0 face on slices 2-5, label 3 a single voxel on slice 0."""
    array = np.zeros((6, 16, 20), dtype=np.uint8)
    array[1:4, 3:12, 8:17] = 1
    array[1:4, 6:9, 11:14] = 0  # hole
    array[2:6, 10:14, 0:4] = 2
    array[0, 0, 19] = 3
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((-12.5, 30.25, 101.0))
    if direction is not None:
        image.SetDirection(direction)
    return image


SYNTHETIC_TABLE = label_table({1: "RightParotid", 2: "Mandible", 3: "Lesion"})


def ct_series(image: sitk.Image, pixels: np.ndarray | None = None) -> list[Dataset]:
    """Single-frame CT datasets, one per z plane of ``image`` (same grid), as a scanner would write them."""
    size = image.GetSize()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    pixels = np.zeros(size[::-1], dtype=np.int16) if pixels is None else pixels.astype(np.int16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(size[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Modality = "CT"
        ds.PatientName = "Synthetic^Case"
        ds.PatientID = "SYN001"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101010", "1", ""
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
        ds.Manufacturer = "test"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.r_[direction[:, 0], direction[:, 1]]]
        ds.PixelSpacing = [f"{image.GetSpacing()[1]:g}", f"{image.GetSpacing()[0]:g}"]
        ds.SliceThickness = f"{image.GetSpacing()[2]:g}"
        ds.Rows, ds.Columns = size[1], size[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = pixels[k].tobytes()
        datasets.append(ds)
    return datasets


@pytest.fixture
def oblique_case() -> Case:
    labels = synthetic_labels(oblique_direction())
    ct = sitk.Cast(labels, sitk.sitkInt16) * 100 - 50
    return Case(ct=ct, labels=labels, table=dict(SYNTHETIC_TABLE), sources=ct_series(ct))


def _read_series(folder: Path) -> tuple[sitk.Image, list[Dataset]]:
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(files)
    return reader.Execute(), [pydicom.dcmread(f) for f in files]


def _mask_on_grid(mask_path: Path, ct: sitk.Image, keep: dict[int, int]) -> sitk.Image:
    """The reference mask resampled (nearest, identity: the grids coincide, only axis flips differ) onto the CT
    grid, with label ``old`` renumbered ``keep[old]`` and all other labels dropped."""
    mask = sitk.Resample(sitk.ReadImage(str(mask_path)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    lookup = np.zeros(256, dtype=np.uint8)
    for old, new in keep.items():
        lookup[old] = new
    labels = sitk.GetImageFromArray(lookup[sitk.GetArrayViewFromImage(mask)])
    labels.CopyInformation(ct)
    return labels


@pytest.fixture(scope="session")
def sts019(data_root: Path) -> Case:
    """IBSI STS_019: uncompressed GE CT series (136 x 134 x 47) and its GTV mask."""
    ct, sources = _read_series(data_root / "ibsi_sts/dicom/STS_019/CT/image")
    labels = _mask_on_grid(data_root / "ibsi_sts/nifti/STS_019/CT_mask.nii.gz", ct, {1: 1})
    return Case(ct=ct, labels=labels, table=label_table({1: "GTV_Mass"}), sources=sources)


# TotalSegmentator ids kept for the tests: spleen, liver, stomach, T12, aorta.
TOTALSEG_KEEP = {1: 1, 5: 2, 6: 3, 32: 4, 52: 5}


@pytest.fixture(scope="session")
def totalseg_raw(data_root: Path) -> Case:
    """TotalSegmentator's JPEG 2000 Siemens series (512 x 512 x 20) with five of its reference organs, as
    stored: de-identification left SOPClassUID, SOPInstanceUID, StudyInstanceUID and SeriesInstanceUID empty."""
    folder = data_root / "totalsegmentator/example_ct_dicom"
    assert glob.glob(str(folder / "CT.*")), folder
    ct, sources = _read_series(folder)
    labels = _mask_on_grid(data_root / "totalsegmentator/example_seg_dicom.nii.gz", ct, TOTALSEG_KEEP)
    table = label_table({1: "spleen", 2: "liver", 3: "stomach", 4: "vertebra T12", 5: "aorta"})
    return Case(ct=ct, labels=labels, table=table, sources=sources)


@pytest.fixture(scope="session")
def totalseg(totalseg_raw: Case) -> Case:
    """:func:`totalseg_raw` with the blanked UIDs restored the way a PACS export would have them: SOP class and
    instance from each file's meta header, one study and one series UID for all slices (copies: the session's
    datasets stay untouched)."""
    study, series = generate_uid(), generate_uid()
    sources = []
    for original in totalseg_raw.sources:
        dataset = copy.deepcopy(original)
        dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        sources.append(dataset)
    return Case(ct=totalseg_raw.ct, labels=totalseg_raw.labels, table=totalseg_raw.table, sources=sources)
