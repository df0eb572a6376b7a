"""Read one CT scan (DICOM series, NIfTI, NRRD or MetaImage) as a SimpleITK image in HU with checked geometry.

:func:`read_scan` is the one way medseg reads scans. It finds the series (:mod:`medseg.io.series`), reads it with
SimpleITK (GDCM for DICOM, slices ordered along the slice normal by ImagePositionPatient, never by
InstanceNumber), runs the geometry guard (:mod:`medseg.io.geometry`) and refuses, with the file and the problem
named, whatever is not a 3D CT volume.

What is checked where there is no modality tag (NIfTI, NRRD, MetaImage): the values. A CT in HU has air near
-1000 and soft tissue near 0; a volume with no voxel below -500, or with a median above 1500, gets a warning
("does this hold HU?"), not an error, because crops and unusual scanners exist. MR volumes
(``monai/anatomical.nii``: values -610..30393, median 8935) trip it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg.errors import GeometryError, InputError
from medseg.io.geometry import (
    GeometryProblem,
    SliceStack,
    affines_match,
    check_nifti_header,
    orientation_code,
    plan_slices,
    ras_affine,
    resample_stack,
    set_ras_affine,
)
from medseg.io.series import (
    SeriesInfo,
    find_series,
    image_format,
    instances_in_order,
    select_series,
)

SourceFormat = Literal["dicom", "nifti", "nrrd", "mha"]
_ITK_IMAGE_IOS = {"nrrd": "NrrdImageIO", "mha": "MetaImageIO"}
# Values that make a volume look like something other than HU (see the module docstring).
_AIR_BELOW_HU = -500.0
_MEDIAN_ABOVE_HU = 1500.0


@dataclass
class Scan:
    """A CT scan as read, with where it came from and what was noticed on the way.

    Attributes:
        image: 3D SimpleITK image, HU (rescale slope/intercept applied), int16 or float32; LPS physical space.
        path: what the caller passed (file or folder).
        source_format: ``"dicom"``, ``"nifti"``, ``"nrrd"`` or ``"mha"``.
        series: the DICOM series read, ``None`` for single-file formats.
        candidates: every DICOM series found, the chosen one included, each with its ``skip_reason``.
        warnings: problems noticed and repairs made, one sentence each.
        repaired: the geometry was changed by ``fix_geometry``.
    """

    image: sitk.Image
    path: Path
    source_format: SourceFormat
    series: SeriesInfo | None = None
    candidates: list[SeriesInfo] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repaired: bool = False

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine, as MONAI's ITKReader and NibabelReader give it, for the array
        ``sitk.GetArrayFromImage(image).T`` (index order x, y, z)."""
        return ras_affine(self.image)

    @property
    def orientation(self) -> str:
        """Axis code of :attr:`affine` (nibabel convention), e.g. ``"LPS"``."""
        return orientation_code(self.affine)

    @property
    def series_uid(self) -> str:
        return "" if self.series is None else self.series.uid

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: geometry, HU range, chosen series, every candidate and the warnings."""
        stats = sitk.MinimumMaximumImageFilter()
        stats.Execute(self.image)
        return {
            "path": str(self.path),
            "source_format": self.source_format,
            "size": list(self.image.GetSize()),
            "spacing": list(self.image.GetSpacing()),
            "origin": list(self.image.GetOrigin()),
            "direction": list(self.image.GetDirection()),
            "orientation": self.orientation,
            "pixel_type": self.image.GetPixelIDTypeAsString(),
            "hu_range": [float(stats.GetMinimum()), float(stats.GetMaximum())],
            "repaired": self.repaired,
            "warnings": list(self.warnings),
            "series": None if self.series is None else self.series.to_dict(),
            "candidates": [s.to_dict() for s in self.candidates],
        }


def read_scan(path: str | os.PathLike[str], *, fix_geometry: bool = False, series_uid: str | None = None) -> Scan:
    """Read the CT scan at ``path``: an image file, a DICOM file (its whole series is read from its folder), a
    DICOM series folder, or a study folder (the CT series is chosen as :mod:`medseg.io.series` describes).

    Args:
        path: file or folder.
        fix_geometry: repair what the geometry guard finds (resample onto a regular grid, drop duplicates,
            keep the largest contiguous block...) instead of refusing; every repair is listed in ``warnings``.
        series_uid: read this SeriesInstanceUID rather than choosing.

    Raises:
        InputError: missing, empty, unreadable or corrupt input; not 3D; NaN values; no CT series; tied series.
        GeometryError: uneven/missing/duplicate slices, tilt, mixed orientations or pixel sizes, NIfTI
            qform/sform disagreement (unless ``fix_geometry`` and the problem is repairable).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise InputError(path, "cannot be read: permission denied")
    fmt = image_format(path) if path.is_file() else None
    if fmt is not None:
        return _read_image_file(path, fmt, fix_geometry=fix_geometry)
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(path, "is an empty file (0 bytes)")
    if path.is_file():
        # One DICOM file stands for its series: index its folder and read the series the file belongs to.
        found = find_series(path.parent)
        found.root = path
        found.series = [s for s in found.series if any(i.path == path for i in s.instances)]
        if not found.series:
            raise InputError(path, "is neither a DICOM file nor an image file medseg reads (.nii, .nrrd, .mha...)")
    else:
        found = find_series(path)
    chosen = select_series(found, series_uid)
    scan = _read_dicom_series(chosen, fix_geometry=fix_geometry)
    scan.path = path
    scan.candidates = found.series
    return scan


def _read_image_file(path: Path, fmt: str, *, fix_geometry: bool) -> Scan:
    if path.stat().st_size == 0:
        raise InputError(path, "is an empty file (0 bytes)")
    if fmt == "nifti":
        return _read_nifti(path, fix_geometry=fix_geometry)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_ITK_IMAGE_IOS[fmt])
    try:
        reader.ReadImageInformation()
        _check_dimensions(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
        image = reader.Execute()
    except RuntimeError as err:
        raise InputError(path, f"cannot be read as {fmt.upper()}: {_itk_message(err)}") from err
    scan = Scan(image=image, path=path, source_format=fmt)  # type: ignore[arg-type]
    _finish(scan)
    return scan


def _read_nifti(path: Path, *, fix_geometry: bool) -> Scan:
    """Read a NIfTI with nibabel: its affine is the one nibabel and MONAI use, and its voxels are the stored ones
    (SimpleITK's NIfTI reader silently turns NaN and infinite voxels into 0, which would hide a broken file)."""
    try:
        nifti = nib.load(path)
    except Exception as err:  # nibabel raises many types for broken files
        raise InputError(path, f"cannot be read as NIFTI: {err}") from err
    if not isinstance(nifti, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InputError(path, f"is not a NIfTI-1/2 image (nibabel reads it as {type(nifti).__name__})")
    shape = tuple(int(s) for s in nifti.shape)
    while len(shape) > 3 and shape[-1] == 1:  # trailing length-1 axes (time, components) carry nothing
        shape = shape[:-1]
    components = 3 if nifti.get_data_dtype().names else 1  # RGB NIfTI has a structured voxel type
    _check_dimensions(path, len(shape), shape, components)
    problems = check_nifti_header(nifti.header)
    if problems:
        _refuse_unless_repairable(path, problems, fix_geometry)
    try:
        data = np.asanyarray(nifti.dataobj).reshape(shape)  # (x, y, z), rescale slope/intercept applied
    except Exception as err:  # truncated or corrupt data: gzip, zlib, EOF or size errors
        raise InputError(path, f"cannot be read as NIFTI: {err}") from err
    data = _integral_if_stored_as_integers(nifti, data)
    if not data.dtype.isnative:  # big-endian files (monai/anatomical.nii); SimpleITK takes native order only
        data = data.astype(data.dtype.newbyteorder("="))
    image = sitk.GetImageFromArray(data.T)  # sitk wants (z, y, x)
    set_ras_affine(image, nifti.affine)
    scan = Scan(image=image, path=path, source_format="nifti")
    if problems:
        scan.repaired = True
        scan.warnings += [p.message for p in problems]
        scan.warnings.append("used nibabel's affine (the sform when set), as nibabel and MONAI's NibabelReader do")
    _finish(scan)
    return scan


def _integral_if_stored_as_integers(nifti: nib.Nifti1Image, data: np.ndarray) -> np.ndarray:
    """nibabel returns float64 when it applies scl_slope/scl_inter; integers stored with an integral slope and
    intercept are integers still (int16 CT with intercept -1024 must stay int16, not become float)."""
    slope, inter = getattr(nifti.dataobj, "slope", 1.0), getattr(nifti.dataobj, "inter", 0.0)
    stored = nifti.get_data_dtype()
    if data.dtype.kind == "f" and stored.kind in "iu" and float(slope).is_integer() and float(inter).is_integer():
        return data.astype(np.int64 if stored.itemsize >= 4 else np.int32)
    return data


def _refuse_unless_repairable(path: Path, problems: list[GeometryProblem], fix_geometry: bool) -> None:
    messages = "; ".join(p.message for p in problems)
    fatal = [p for p in problems if not p.repairable]
    if fatal:
        raise GeometryError(path, f"unsafe geometry that cannot be repaired: {messages}")
    if not fix_geometry:
        raise GeometryError(
            path, f"unsafe geometry: {messages}. Pass fix_geometry=True (--fix-geometry) to repair and resample"
        )


def _read_dicom_series(series: SeriesInfo, *, fix_geometry: bool) -> Scan:
    broken = [i for i in series.instances if i.problem]
    if broken:
        raise InputError(broken[0].path, f"{broken[0].problem} ({len(broken)} broken file(s) in the series)")
    instances = instances_in_order(series.instances)
    stack = plan_slices(
        [i.position for i in instances],  # type: ignore[misc]
        [i.orientation for i in instances],  # type: ignore[misc]
        [i.pixel_spacing for i in instances],  # type: ignore[misc]
        [(i.rows or 0, i.columns or 0) for i in instances],
    )
    if stack.problems:
        _refuse_unless_repairable(series.folder, stack.problems, fix_geometry)
    files = [str(instances[i].path) for i in stack.order]
    rescales = {instances[i].rescale for i in stack.order}
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetImageIO("GDCMImageIO")
    if len(rescales) > 1:  # GDCM picks the pixel type from the first slice; other slopes could overflow it
        reader.SetOutputPixelType(sitk.sitkFloat32)
    # Under repair ITK would warn about the very irregularity being repaired (and print it to stderr).
    warn_before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(warn_before and not stack.problems)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        culprit = _first_unreadable(files)
        where = Path(culprit) if culprit else series.folder
        raise InputError(where, f"SimpleITK/GDCM cannot read it (truncated or corrupt?): {_itk_message(err)}") from err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn_before)
    scan = Scan(image=image, path=series.folder, source_format="dicom", series=series)
    if stack.problems:
        scan.image = resample_stack(image, stack)
        scan.repaired = True
        scan.warnings += [p.message for p in stack.problems] + [f"repair: {a}" for a in stack.actions]
    else:
        _check_reader_geometry(series, image, stack)
    _finish(scan)
    return scan


def _first_unreadable(files: list[str]) -> str | None:
    """The first file GDCM cannot read on its own (only called after the series read failed)."""
    for file in files:
        try:
            sitk.ReadImage(file, imageIO="GDCMImageIO")
        except RuntimeError:
            return file
    return None


def _check_reader_geometry(series: SeriesInfo, image: sitk.Image, stack: SliceStack) -> None:
    """GDCM builds the geometry from the first file and the first-to-last distance: make sure it is the one the
    guard checked (it would not be for a series the guard got wrong)."""
    expected = np.eye(4)
    expected[:3, :3] = stack.direction @ np.diag(stack.spacing)
    expected[:3, 3] = stack.origin
    actual = np.eye(4)
    actual[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    actual[:3, 3] = image.GetOrigin()
    if not affines_match(expected, actual):
        raise GeometryError(
            series.folder,
            f"SimpleITK's geometry (origin {np.round(actual[:3, 3], 4).tolist()}, spacing "
            f"{np.round(image.GetSpacing(), 4).tolist()}) differs from the headers' (origin "
            f"{np.round(stack.origin, 4).tolist()}, spacing {np.round(stack.spacing, 4).tolist()})",
        )


def _check_dimensions(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    shape = "x".join(str(s) for s in size)
    if components != 1:
        raise InputError(path, f"has {components} values per voxel (size {shape}): expected one grey value (HU)")
    if dimension == 2:
        raise InputError(path, f"is a 2D image (size {shape}): expected a 3D CT volume")
    if dimension == 4 and size[3] > 1:
        raise InputError(path, f"is a 4D image (size {shape}): expected one 3D CT volume")
    if dimension not in (3, 4):
        raise InputError(path, f"is a {dimension}D image (size {shape}): expected a 3D CT volume")
    if min(size[:3]) < 2:
        raise InputError(path, f"has a single slice (size {shape}): expected a 3D CT volume")


def _finish(scan: Scan) -> None:
    """Checks and normalisation shared by every format: 3D, finite, int16 or float32, plausible HU."""
    image = scan.image
    if image.GetDimension() == 4:  # a trailing time axis of length 1 (checked in _check_dimensions)
        image = image[:, :, :, 0]
    _check_dimensions(scan.path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    values = sitk.GetArrayViewFromImage(image)  # (z, y, x) view, no copy
    low, high = float(values.min()), float(values.max())  # NaN propagates through min/max
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(scan.path, f"contains {bad} NaN/infinite voxel(s) of {values.size}: not a usable CT")
    pixel_id = image.GetPixelID()
    if pixel_id not in (sitk.sitkInt16, sitk.sitkFloat32):
        integral = pixel_id in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt32, sitk.sitkUInt32)
        integral = integral or pixel_id in (sitk.sitkInt64, sitk.sitkUInt64)
        fits = integral and low >= -32768 and high <= 32767
        image = sitk.Cast(image, sitk.sitkInt16 if fits else sitk.sitkFloat32)
    scan.image = image
    median = float(np.median(sitk.GetArrayViewFromImage(image)[::4, ::4, ::4]))
    if low > _AIR_BELOW_HU or median > _MEDIAN_ABOVE_HU:
        scan.warnings.append(
            f"values {low:.6g}..{high:.6g} (median {median:.6g}) do not look like CT in HU: "
            f"no air below {_AIR_BELOW_HU:g} or a median above {_MEDIAN_ABOVE_HU:g}; is this MR, or CT stored "
            "without its rescale (HU + 1024)?"
        )


def _itk_message(err: RuntimeError) -> str:
    """The informative line of an ITK exception (they start with the C++ source location)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in reversed(lines):
        if "ERROR" in line or "error" in line or "Could not" in line or "Cannot" in line:
            return line.split("): ", 1)[-1]
    return lines[-1] if lines else type(err).__name__
