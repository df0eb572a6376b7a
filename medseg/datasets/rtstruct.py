"""DICOM RTSTRUCT contours -> label map on the CT grid, and an importer of CT series + RTSTRUCT into MSD layout.

Rasterisation is exact at pixel centres: contour points (patient LPS mm) go to continuous voxel indices through
the CT's origin, spacing and direction (index i is a pixel centre, as in ITK), each contour is matched to the
slice whose centre is nearest its z (within half a slice step by construction), and a pixel is inside when its
centre is inside the polygon. Several contours on one slice combine by XOR (even-odd), so holes and islands work.

The centre test is ``skimage.draw.polygon``: it tests each integer (row, col) centre with a ray-crossing test
that counts centres exactly on an edge or vertex as inside, whatever the vertex order. ``matplotlib.path.Path.
contains_points`` is exact in the interior too, but for centres on the boundary its answer depends on the
polygon's orientation (a clockwise and a counter-clockwise copy of one square differ by a row and a column), so
it is not used. Clinical contours such as the IBSI ones trace pixel edges (half-integer indices), where no
centre lies on the boundary and both agree; a naive fill that also takes the boundary pixels grows the mask by
4-13 %.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from skimage.draw import polygon as polygon_centres

from medseg.datasets.msd import write_msd_dataset_json
from medseg.errors import GeometryError, InputError
from medseg.io.files import atomic_path

logger = logging.getLogger(__name__)

FRAME_OF_REFERENCE_KEY = "0020|0052"
# A contour counts as lying in one slice plane when its points' slice indices spread less than this.
PLANAR_TOL_SLICES = 0.01


@dataclass(frozen=True)
class RoiReport:
    """What was rasterised for one ROI: contours used, skipped (outside the volume or not CLOSED_PLANAR), voxels."""

    name: str
    label_id: int
    contours: int
    skipped: int
    voxels: int


def _roi_table(ds: pydicom.Dataset, path: Path) -> dict[int, tuple[str, str | None]]:
    """ROI number -> (name, referenced FrameOfReferenceUID)."""
    table = {}
    for roi in getattr(ds, "StructureSetROISequence", []):
        uid = getattr(roi, "ReferencedFrameOfReferenceUID", None)
        table[int(roi.ROINumber)] = (str(roi.ROIName), None if uid is None else str(uid))
    if not table:
        raise InputError(path, "RTSTRUCT has no StructureSetROISequence (no ROIs)")
    return table


def _structure_set_frame(ds: pydicom.Dataset) -> str | None:
    frames = getattr(ds, "ReferencedFrameOfReferenceSequence", [])
    return str(frames[0].FrameOfReferenceUID) if frames and "FrameOfReferenceUID" in frames[0] else None


def _physical_to_index(reference: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(matrix M 3x3, origin o) so that continuous index = M @ (point - o) for LPS points in mm."""
    direction = np.array(reference.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.array(reference.GetSpacing(), dtype=np.float64)
    return np.linalg.inv(direction @ np.diag(spacing)), np.array(reference.GetOrigin(), dtype=np.float64)


def rtstruct_to_labelmap(
    rtstruct_path: str | Path,
    reference: sitk.Image,
    roi_names: Mapping[str, int] | None = None,
    frame_of_reference_uid: str | None = None,
    reports: list[RoiReport] | None = None,
) -> sitk.Image:
    """Rasterise RTSTRUCT contours into the grid of ``reference`` (see the module docstring for the rule).

    Args:
        rtstruct_path: the RTSTRUCT file.
        reference: the CT it was drawn on (3D); the output copies its size, spacing, origin and direction.
        roi_names: ROI name -> label id, painted in this order (a later ROI wins where two overlap). Default:
            every ROI, ids 1, 2, ... in StructureSetROISequence order.
        frame_of_reference_uid: the CT's FrameOfReferenceUID; default: ``reference``'s ``0020|0052`` metadata
            when present. A mismatch with the RTSTRUCT raises.
        reports: if given, one :class:`RoiReport` per ROI is appended.

    Returns:
        Label map (UInt8, or UInt16 for ids above 255) on the reference grid; array shape (z, y, x).

    Raises:
        InputError: not an RTSTRUCT, unknown ROI names, or a reference that is not 3D.
        GeometryError: FrameOfReferenceUID mismatch, or a contour that is not in an axial plane of the grid.
    """
    path = Path(rtstruct_path)
    try:
        ds = pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as err:
        raise InputError(path, f"cannot read as DICOM: {err}") from None
    if getattr(ds, "Modality", None) != "RTSTRUCT":
        raise InputError(path, f"Modality is {getattr(ds, 'Modality', None)!r}, not 'RTSTRUCT'")
    if reference.GetDimension() != 3:
        raise InputError(path, f"the reference image is {reference.GetDimension()}D, a 3D CT is needed")

    table = _roi_table(ds, path)
    by_name = {name: number for number, (name, _) in table.items()}
    if roi_names is None:
        roi_names = {name: i + 1 for i, name in enumerate(by_name)}
    unknown = [name for name in roi_names if name not in by_name]
    if unknown:
        raise InputError(path, f"ROI(s) {unknown} not in the RTSTRUCT, which has {sorted(by_name)}")

    expected = frame_of_reference_uid
    if expected is None and reference.HasMetaDataKey(FRAME_OF_REFERENCE_KEY):
        expected = reference.GetMetaData(FRAME_OF_REFERENCE_KEY).strip()
    for name in roi_names:
        frame = table[by_name[name]][1] or _structure_set_frame(ds)
        if expected is None:
            logger.warning("%s: the CT's FrameOfReferenceUID is unknown, cannot check ROI %r", path, name)
        elif frame != expected:
            raise GeometryError(
                path,
                f"ROI {name!r} is in FrameOfReferenceUID {frame!r} but the CT is in {expected!r}: "
                "the contours belong to another scan or coordinate system",
            )

    size_x, size_y, size_z = reference.GetSize()
    to_index, origin = _physical_to_index(reference)
    contours_by_roi = {int(rc.ReferencedROINumber): rc for rc in getattr(ds, "ROIContourSequence", [])}
    max_id = max(roi_names.values(), default=0)
    labels = np.zeros((size_z, size_y, size_x), np.uint16 if max_id > 255 else np.uint8)
    for name, label_id in roi_names.items():
        mask = np.zeros((size_z, size_y, size_x), bool)
        used = skipped = 0
        roi_contours = contours_by_roi.get(by_name[name])
        for contour in getattr(roi_contours, "ContourSequence", []) if roi_contours is not None else []:
            kind = str(getattr(contour, "ContourGeometricType", "CLOSED_PLANAR"))
            points = np.asarray(getattr(contour, "ContourData", []), dtype=np.float64)
            if kind != "CLOSED_PLANAR" or points.size < 9:
                skipped += 1  # points and open lines enclose no area
                continue
            index = (to_index @ (points.reshape(-1, 3) - origin).T).T  # (N, 3): continuous (x, y, z) index
            z = index[:, 2]
            if np.ptp(z) > PLANAR_TOL_SLICES:
                raise GeometryError(
                    path,
                    f"ROI {name!r}: a contour spans slice indices {z.min():.3f}..{z.max():.3f}; "
                    "only contours in the CT's axial planes can be rasterised",
                )
            k = int(np.floor(z.mean() + 0.5))  # nearest slice centre
            if not 0 <= k < size_z:
                skipped += 1
                continue
            rows, cols = polygon_centres(index[:, 1], index[:, 0], shape=(size_y, size_x))
            plane = np.zeros((size_y, size_x), bool)
            plane[rows, cols] = True
            mask[k] ^= plane  # even-odd: a contour inside another cuts a hole
            used += 1
        if skipped:
            logger.warning(
                "%s: ROI %r: %d contour(s) skipped (outside the CT or not CLOSED_PLANAR)", path, name, skipped
            )
        labels[mask] = label_id
        if reports is not None:
            reports.append(RoiReport(name, int(label_id), used, skipped, int(np.count_nonzero(mask))))
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image


@dataclass(frozen=True)
class RtstructCaseReport:
    """One imported case: its ROIs, the frame of reference, and Dice against a reference mask when given."""

    case_id: str
    series_dir: str
    rtstruct: str
    frame_of_reference_uid: str
    size_xyz: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    rois: tuple[RoiReport, ...]
    dice_vs_reference: float | None


def read_ct_series(series_dir: str | Path, series_uid: str | None = None) -> tuple[sitk.Image, str]:
    """Read a DICOM CT series folder with SimpleITK/GDCM.

    Args:
        series_uid: which series when the folder holds several (default: the only one).

    Returns:
        (image with ``0020|0052`` FrameOfReferenceUID metadata set, the FrameOfReferenceUID).
    """
    series_dir = Path(series_dir)
    reader = sitk.ImageSeriesReader()
    series_ids = reader.GetGDCMSeriesIDs(str(series_dir))
    if not series_ids:
        raise InputError(series_dir, "no DICOM series found")
    if series_uid is None:
        if len(series_ids) > 1:
            raise InputError(series_dir, f"{len(series_ids)} series found {list(series_ids)}; pick one")
        series_uid = series_ids[0]
    elif series_uid not in series_ids:
        raise InputError(series_dir, f"series {series_uid!r} not found; the folder has {list(series_ids)}")
    files = reader.GetGDCMSeriesFileNames(str(series_dir), series_uid)
    reader.SetFileNames(files)
    image = reader.Execute()
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    frame = str(getattr(header, "FrameOfReferenceUID", ""))
    if not frame:
        raise InputError(files[0], "no FrameOfReferenceUID in the CT header")
    image.SetMetaData(FRAME_OF_REFERENCE_KEY, frame)
    return image, frame


def referenced_series_uid(rtstruct_path: str | Path) -> str | None:
    """SeriesInstanceUID of the image series the RTSTRUCT says it was drawn on (None if it does not say)."""
    ds = pydicom.dcmread(rtstruct_path, stop_before_pixels=True)
    for frame in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        for study in getattr(frame, "RTReferencedStudySequence", []):
            for series in getattr(study, "RTReferencedSeriesSequence", []):
                return str(series.SeriesInstanceUID)
    return None


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean arrays of one shape (1.0 when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def import_rtstruct_case(
    case_id: str,
    series_dir: Path,
    rtstruct_path: Path,
    out_dir: Path,
    roi_names: Mapping[str, int] | None = None,
    reference_mask: Path | None = None,
) -> RtstructCaseReport:
    """Write ``imagesTr/<case_id>.nii.gz`` (the CT, int16 where lossless) and ``labelsTr/<case_id>.nii.gz``
    (uint8) for one CT series + RTSTRUCT; Dice against ``reference_mask`` (same grid) when given."""
    series_uid = referenced_series_uid(rtstruct_path)
    try:
        ct, frame = read_ct_series(series_dir, series_uid)
    except InputError:
        if series_uid is None:
            raise
        ct, frame = read_ct_series(series_dir)  # the RTSTRUCT names another series UID: trust the folder
    rois: list[RoiReport] = []
    label = rtstruct_to_labelmap(rtstruct_path, ct, roi_names, frame, rois)
    if ct.GetPixelID() != sitk.sitkInt16:
        values = sitk.GetArrayViewFromImage(ct)
        if np.all(np.mod(values, 1) == 0) and values.min() >= -32768 and values.max() <= 32767:
            ct = sitk.Cast(ct, sitk.sitkInt16)
    score = None
    if reference_mask is not None:
        reference = sitk.ReadImage(str(reference_mask))
        if reference.GetSize() != label.GetSize():
            raise GeometryError(reference_mask, f"size {reference.GetSize()} differs from the CT's {label.GetSize()}")
        score = dice(sitk.GetArrayViewFromImage(label) > 0, sitk.GetArrayViewFromImage(reference) > 0)
    for folder, image, pixel in (("imagesTr", ct, None), ("labelsTr", label, sitk.sitkUInt8)):
        image = sitk.Cast(image, pixel) if pixel is not None and image.GetPixelID() != pixel else image
        for key in image.GetMetaDataKeys():
            image.EraseMetaData(key)
        with atomic_path(out_dir / folder / f"{case_id}.nii.gz") as tmp:
            sitk.WriteImage(image, str(tmp), useCompression=True)
    size = ct.GetSize()
    spacing = ct.GetSpacing()
    return RtstructCaseReport(
        case_id=case_id,
        series_dir=str(series_dir),
        rtstruct=str(rtstruct_path),
        frame_of_reference_uid=frame,
        size_xyz=(int(size[0]), int(size[1]), int(size[2])),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        rois=tuple(rois),
        dice_vs_reference=score,
    )


def import_rtstruct_cases(
    cases: Mapping[str, tuple[Path, Path]],
    out_dir: str | Path,
    labels: Mapping[str, int],
    roi_names: Mapping[str, int] | None = None,
    name: str = "rtstruct",
    reference_masks: Mapping[str, Path] | None = None,
) -> list[RtstructCaseReport]:
    """Import CT series + RTSTRUCT pairs into an MSD folder (``imagesTr``, ``labelsTr``, ``dataset.json``,
    ``import_report.json``). Cases already in the folder's report stay listed in ``dataset.json``.

    Args:
        cases: case id -> (series folder, RTSTRUCT file).
        labels: label name -> id for ``dataset.json`` (background 0 may be included).
        roi_names: RTSTRUCT ROI name -> label id (default: all ROIs, 1..n).
        reference_masks: case id -> a mask on the same grid to report Dice against.
    """
    out_dir = Path(out_dir)
    reports = []
    for case_id, (series_dir, rtstruct_path) in cases.items():
        reference = (reference_masks or {}).get(case_id)
        report = import_rtstruct_case(case_id, series_dir, rtstruct_path, out_dir, roi_names, reference)
        if report.dice_vs_reference is not None:
            logger.info("%s: Dice vs reference mask %.4f", case_id, report.dice_vs_reference)
        reports.append(report)
    report_path = out_dir / "import_report.json"
    previous: dict[str, dict[str, object]] = {}
    if report_path.is_file():
        try:
            previous = {row["case_id"]: row for row in json.loads(report_path.read_text(encoding="utf-8"))["cases"]}
        except (OSError, ValueError, KeyError, TypeError):
            previous = {}
    rows = {**previous, **{r.case_id: asdict(r) for r in reports}}
    present = sorted(c for c in rows if all((out_dir / f / f"{c}.nii.gz").is_file() for f in ("imagesTr", "labelsTr")))
    write_msd_dataset_json(
        out_dir,
        name=name,
        description=f"{name} (imported by medseg from DICOM RTSTRUCT)",
        labels={k: v for k, v in labels.items() if v != 0},
        case_ids=present,
    )
    with atomic_path(report_path) as tmp:
        content = {"importer": "rtstruct", "cases": [rows[c] for c in sorted(rows)]}
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    return reports


def find_rtstruct_cases(source: str | Path) -> dict[str, tuple[Path, Path]]:
    """Case folders under ``source`` (or ``source/dicom``) holding a CT series and one RTSTRUCT file:
    case id (the folder name) -> (series folder, RTSTRUCT). The IBSI layout is ``STS_xxx/CT/image/*.dcm`` +
    ``STS_xxx/CT/mask/RS.dcm``; any layout with one RTSTRUCT and one CT series folder per case works."""
    source = Path(source)
    base = source / "dicom" if (source / "dicom").is_dir() else source
    found = {}
    for case_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        rtstructs, series_dirs = [], set()
        for path in sorted(p for p in case_dir.rglob("*") if p.is_file()):
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
            except (pydicom.errors.InvalidDicomError, OSError):
                continue
            modality = getattr(header, "Modality", None)
            if modality == "RTSTRUCT":
                rtstructs.append(path)
            elif modality == "CT":
                series_dirs.add(path.parent)
        if len(rtstructs) == 1 and len(series_dirs) == 1:
            found[case_dir.name] = (series_dirs.pop(), rtstructs[0])
        elif rtstructs or series_dirs:
            logger.warning(
                "%s: %d RTSTRUCT(s) and %d CT folder(s); skipped", case_dir, len(rtstructs), len(series_dirs)
            )
    if not found:
        raise InputError(source, "no case folder with one CT series and one RTSTRUCT found")
    return found
