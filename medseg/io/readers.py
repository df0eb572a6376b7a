"""Read one CT scan (DICOM series, NIfTI, NRRD or MetaImage) as a SimpleITK image in HU with checked geometry.

:func:`read_scan` is the one way medseg reads scans. It finds the series (:mod:`medseg.io.series`), runs the
geometry guard (:mod:`medseg.io.geometry`), reads the slices ordered along the slice normal by
ImagePositionPatient (never by InstanceNumber) and refuses, with the file and the problem named, whatever is not a
3D CT volume.

DICOM pixels are read by SimpleITK/GDCM, except for plain uncompressed little-endian 16-bit greyscale slices: their
pixel bytes are read straight into numpy (the header pass already knows where they are), which yields the voxels,
pixel type and geometry SimpleITK's ``ImageSeriesReader`` gives (the tests compare both, bit for bit) at a fraction
of its cost, since GDCM parses every header again. Anything unusual (compressed or big-endian pixels, MONOCHROME1,
stored values outside BitsStored, elements after the pixel data) goes to GDCM.

What is checked where there is no modality tag (NIfTI, NRRD, MetaImage): the values. A CT in HU has air near
-1000 and soft tissue near 0; a volume with no voxel below -500, or with a median above 1500, gets a warning
("does this hold HU?"), not an error, because crops and unusual scanners exist. MR volumes
(``monai/anatomical.nii``: values -610..30393, median 8935) trip it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
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
from medseg.io.limits import (
    check_image_information,
    check_metaimage_header,
    check_nifti_sizes,
    check_nrrd_header,
    check_regular_file,
    check_spacing,
    check_voxels,
    reason,
)
from medseg.io.series import (
    DicomInstance,
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
# Native (uncompressed) little-endian transfer syntaxes, with the size of the Pixel Data element's own header:
# tag and length (implicit VR), or tag, "OW"/"OB", two reserved bytes and length (explicit VR).
_NATIVE_PIXEL_HEADER_BYTES = {"1.2.840.10008.1.2": 8, "1.2.840.10008.1.2.1": 12}
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little-endian
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    if not path.is_dir():
        check_regular_file(path)
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
    if fmt == "nrrd":
        check_nrrd_header(path)
    else:
        check_metaimage_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_ITK_IMAGE_IOS[fmt])
    try:
        reader.ReadImageInformation()
        _check_dimensions(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
        check_image_information(path, reader.GetSize(), reader.GetSpacing(), _bytes_per_voxel(reader))
        _check_direction(path, reader.GetDirection(), reader.GetDimension())
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
        # Read slab by slab (below) from one open file: no memory map, whose pages would count as resident too.
        nifti = nib.load(path, mmap=False, keep_file_open=True)
    except Exception as err:  # nibabel raises many types for broken files
        raise InputError(path, f"cannot be read as NIFTI: {reason(err)}") from err
    if not isinstance(nifti, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InputError(path, f"is not a NIfTI-1/2 image (nibabel reads it as {type(nifti).__name__})")
    shape = tuple(int(s) for s in nifti.shape)
    while len(shape) > 3 and shape[-1] == 1:  # trailing length-1 axes (time, components) carry nothing
        shape = shape[:-1]
    components = 3 if nifti.get_data_dtype().names else 1  # RGB NIfTI has a structured voxel type
    _check_dimensions(path, len(shape), shape, components)
    check_nifti_sizes(path, nifti)
    linear = np.asarray(nifti.affine, dtype=float)[:3, :3]
    if not np.all(np.isfinite(linear)) or abs(np.linalg.det(linear)) <= 1e-12 * max(np.abs(linear).max(), 1e-300) ** 3:
        raise InputError(
            path,
            f"has a degenerate orientation: its affine's voxel axes {_fmt_rows(linear)} are not independent "
            "(zero or parallel axes), so voxels have no place in space",
        )
    check_spacing(path, np.linalg.norm(linear, axis=0))
    problems = check_nifti_header(nifti.header)
    if problems:
        _refuse_unless_repairable(path, problems, fix_geometry)
    image = _nifti_voxels(path, nifti, shape)
    set_ras_affine(image, nifti.affine)
    scan = Scan(image=image, path=path, source_format="nifti")
    if problems:
        scan.repaired = True
        scan.warnings += [p.message for p in problems]
        scan.warnings.append("used nibabel's affine (the sform when set), as nibabel and MONAI's NibabelReader do")
    _finish(scan)
    return scan


_NIFTI_SLAB = 32  # slices read at a time: the whole scan is held once, in the SimpleITK image, not twice


def _nifti_voxels(path: Path, nifti: nib.Nifti1Image, shape: tuple[int, ...]) -> sitk.Image:
    """The voxels of a 3D ``nifti`` of ``shape`` (x, y, z) as a SimpleITK image (geometry not set), read slab by
    slab along z and pasted into the image in place, so the scan is never held both as numpy and in SimpleITK
    (1 GiB instead of 500 MiB for a 512 x 512 x 1000 int16 CT). Each slab as nibabel reads it (rescale slope and
    intercept applied), integers kept integral, native byte order.

    Raises:
        InputError: truncated or corrupt data.
    """
    image: sitk.Image | None = None
    for z0 in range(0, shape[2], _NIFTI_SLAB):
        z1 = min(z0 + _NIFTI_SLAB, shape[2])
        try:
            data = np.asanyarray(nifti.dataobj[:, :, z0:z1]).reshape((*shape[:2], z1 - z0))  # (x, y, z)
        except Exception as err:  # truncated or corrupt data: gzip, zlib, EOF or size errors
            raise InputError(path, f"cannot be read as NIFTI: {reason(err)}") from err
        data = _integral_if_stored_as_integers(nifti, data)
        if not data.dtype.isnative:  # big-endian files (monai/anatomical.nii); SimpleITK takes native order only
            data = data.astype(data.dtype.newbyteorder("="))
        slab = sitk.GetImageFromArray(data.T)  # sitk wants (z, y, x)
        if image is None:
            image = sitk.Image([int(n) for n in shape], slab.GetPixelID())
        image[:, :, z0:z1] = slab  # PasteImageFilter, in place
    if image is None:
        raise InputError(path, f"has no slices (size {'x'.join(map(str, shape))})")
    return image


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
    for instance in instances:
        if instance.pixel_spacing is not None:
            check_spacing(instance.path, instance.pixel_spacing)
    first = instances[0]
    check_voxels(series.folder, ((first.columns or 0), (first.rows or 0), len(instances)))
    stack = plan_slices(
        [i.position for i in instances],  # type: ignore[misc]
        [i.orientation for i in instances],  # type: ignore[misc]
        [i.pixel_spacing for i in instances],  # type: ignore[misc]
        [(i.rows or 0, i.columns or 0) for i in instances],
    )
    if stack.problems:
        _refuse_unless_repairable(series.folder, stack.problems, fix_geometry)
    ordered = [instances[i] for i in stack.order]
    rescales = [i.rescale for i in ordered]
    image = _read_native_slices(ordered, rescales)
    if image is None:
        # Under repair ITK would warn about the very irregularity being repaired (and print it to stderr).
        image = _read_with_gdcm(series, [str(i.path) for i in ordered], rescales, quiet=bool(stack.problems))
    scan = Scan(image=image, path=series.folder, source_format="dicom", series=series)
    if stack.problems:
        scan.image = resample_stack(image, stack)
        scan.repaired = True
        scan.warnings += [p.message for p in stack.problems] + [f"repair: {a}" for a in stack.actions]
    else:
        _check_reader_geometry(series, image, stack)
    _finish(scan)
    return scan


def _read_with_gdcm(
    series: SeriesInfo, files: list[str], rescales: list[tuple[float, float]], *, quiet: bool
) -> sitk.Image:
    """The slices ``files`` (in this order) read by SimpleITK's ImageSeriesReader (GDCM), HU in the pixel type
    GDCM picks for the rescale, float32 when the slices have different rescales."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.SetImageIO("GDCMImageIO")
    if len(set(rescales)) > 1:  # GDCM picks the pixel type from the first slice; other slopes could overflow it
        reader.SetOutputPixelType(sitk.sitkFloat32)
    warn_before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(warn_before and not quiet)
    try:
        return reader.Execute()
    except RuntimeError as err:
        culprit = _first_unreadable(files)
        where = Path(culprit) if culprit else series.folder
        raise InputError(where, f"SimpleITK/GDCM cannot read it (truncated or corrupt?): {_itk_message(err)}") from err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn_before)


def _read_native_slices(instances: Sequence[DicomInstance], rescales: list[tuple[float, float]]) -> sitk.Image | None:
    """The slices (in this order) of an uncompressed little-endian 16-bit MONOCHROME2 series, read with numpy: the
    image SimpleITK's ImageSeriesReader would give, voxel for voxel and with its geometry; ``None`` (read it with
    GDCM) for anything else or anything unexpected on the way (see the module docstring)."""
    first = instances[0]
    pixel_format, rows, columns = first.pixel_format, first.rows, first.columns
    if sys.byteorder != "little" or pixel_format is None or not rows or not columns or len(instances) < 2:
        return None
    if (
        pixel_format.samples_per_pixel != 1
        or pixel_format.photometric != "MONOCHROME2"
        or pixel_format.bits_allocated != 16
        or not 1 <= pixel_format.bits_stored <= 16
        or pixel_format.high_bit != pixel_format.bits_stored - 1
    ):
        return None
    same_format = all(i.pixel_format == pixel_format and (i.rows, i.columns) == (rows, columns) for i in instances)
    if not same_format or any(i.transfer_syntax not in _NATIVE_PIXEL_HEADER_BYTES for i in instances):
        return None
    stored = np.empty((len(instances), rows, columns), np.int16 if pixel_format.signed else np.uint16)
    for instance, slice_values in zip(instances, stored, strict=True):
        if not _read_last_pixel_data(instance.path, _NATIVE_PIXEL_HEADER_BYTES[instance.transfer_syntax], slice_values):
            return None
    if pixel_format.bits_stored < 16:
        # Bits above BitsStored (overlays, garbage) are masked or sign-extended by GDCM; read here only data where
        # that changes nothing.
        bits = pixel_format.bits_stored
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if pixel_format.signed else (0, (1 << bits) - 1)
        if int(stored.min()) < low or int(stored.max()) > high:
            return None
    hu = _rescaled_as_gdcm(stored, rescales)
    if hu is None:
        return None
    image = sitk.GetImageFromArray(hu)  # (n, rows, columns) -> size (columns, rows, n)
    try:
        origin, spacing, direction = _series_reader_geometry(instances[0].path, instances[-1].path, len(instances))
    except RuntimeError:
        return None  # GDCM cannot parse a header pydicom could: the GDCM read reports it
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _read_last_pixel_data(path: Path, element_header_bytes: int, out: np.ndarray) -> bool:
    """Fill ``out`` (one slice, shape (rows, columns)) with the value of the file's Pixel Data element, which must
    be the file's last element and exactly as long as ``out``; ``False`` if it is not (or the file cannot be read)."""
    expected = out.nbytes
    try:
        with open(path, "rb") as handle:
            start = os.fstat(handle.fileno()).st_size - expected
            if start < element_header_bytes:
                return False
            handle.seek(start - element_header_bytes)
            header = handle.read(element_header_bytes)
            read = handle.readinto(out.data.cast("B"))
    except OSError:
        return False
    value_representation_ok = element_header_bytes == 8 or (header[4:6] in (b"OW", b"OB") and header[6:8] == b"\0\0")
    return (
        header[:4] == _PIXEL_DATA_TAG
        and value_representation_ok
        and int.from_bytes(header[-4:], "little") == expected
        and read == expected
    )


def _rescaled_as_gdcm(stored: np.ndarray, rescales: list[tuple[float, float]]) -> np.ndarray | None:
    """HU from stored values (shape (n, rows, columns)) with the values GDCM computes, in the pixel type
    :func:`_finish` would turn GDCM's into (``None`` where that type is not certain).

    No rescale: the stored values. Integral slope and intercept: exact integers (GDCM's integer type), int16 when
    they fit. Otherwise GDCM computes in double: float64. Slices with different rescales: each slice in double with
    its own rescale, then float32, as ImageSeriesReader with float32 output does.
    """
    if len(set(rescales)) > 1:
        hu = np.empty(stored.shape, np.float32)
        for k, (slope, intercept) in enumerate(rescales):
            hu[k] = stored[k].astype(np.float64) * slope + intercept
        return hu
    slope, intercept = rescales[0]
    if slope == 1.0 and intercept == 0.0:
        return stored
    if not (slope.is_integer() and intercept.is_integer()):
        return stored.astype(np.float64) * slope + intercept
    if abs(slope) * 65535 + abs(intercept) > np.iinfo(np.int32).max:
        return None  # GDCM would pick a type wider than int32
    ends = (int(stored.min()) * int(slope) + int(intercept), int(stored.max()) * int(slope) + int(intercept))
    if min(ends) < -32768 or max(ends) > 32767:
        integers = stored.astype(np.int32)
        integers *= int(slope)
        integers += int(intercept)
        return integers
    # Every result fits int16, so int16 arithmetic, which wraps modulo 2**16, gives the exact results without an
    # int32 copy of the volume; in place, and on uint16 values too (reinterpreted: the same bits modulo 2**16).
    hu = stored.view(np.int16)
    if slope != 1.0:
        hu *= np.int16(_wrap_int16(int(slope)))
    hu += np.int16(_wrap_int16(int(intercept)))
    return hu


def _wrap_int16(value: int) -> int:
    """``value`` modulo 2**16, as a signed 16-bit integer."""
    return (value + 32768) % 65536 - 32768


def _series_reader_geometry(
    first: Path, last: Path, n_slices: int
) -> tuple[tuple[float, ...], tuple[float, float, float], tuple[float, ...]]:
    """Origin, spacing and direction exactly as ImageSeriesReader sets them: those of GDCM's reading of the first
    file's header, with a slice spacing of the distance between the first and the last file's origins over n - 1."""
    first_header, last_header = _gdcm_header(first), _gdcm_header(last)
    (x0, y0, z0), (x1, y1, z1) = first_header.GetOrigin(), last_header.GetOrigin()
    distance = math.sqrt((x1 - x0) * (x1 - x0) + (y1 - y0) * (y1 - y0) + (z1 - z0) * (z1 - z0))  # ITK's order
    spacing = first_header.GetSpacing()
    return first_header.GetOrigin(), (spacing[0], spacing[1], distance / (n_slices - 1)), first_header.GetDirection()


def _gdcm_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


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


def _bytes_per_voxel(reader: sitk.ImageFileReader) -> int:
    """Bytes of one voxel of the pixel type an image header declares."""
    name = sitk.GetPixelIDValueAsString(reader.GetPixelID()).lower()
    bits = next((int(b) for b in ("64", "32", "16", "8") if b in name), 32)
    return bits // 8 * max(reader.GetNumberOfComponents(), 1)


def _fmt_rows(matrix: np.ndarray) -> str:
    return "[" + "; ".join(", ".join(f"{v:.4g}" for v in row) for row in matrix.T) + "]"


def _check_direction(path: Path, direction: Sequence[float], dimension: int) -> None:
    """Refuse a header whose direction matrix is degenerate (zero or parallel axes): ITK would fail or place the
    voxels nowhere."""
    matrix = np.asarray(direction, dtype=float).reshape(dimension, dimension)[:3, :3]
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-6:
        raise InputError(
            path,
            f"has a degenerate orientation: its direction axes {_fmt_rows(matrix)} are not independent "
            "(zero or parallel axes)",
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
    pixel_id = image.GetPixelID()
    stored_high = None
    if pixel_id not in (sitk.sitkInt16, sitk.sitkFloat32):
        values = sitk.GetArrayViewFromImage(image)  # (z, y, x) view, no copy
        low, high = float(values.min()), float(values.max())  # NaN propagates through min/max
        stored_high = max(abs(low), abs(high))
        integral = pixel_id in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt32, sitk.sitkUInt32)
        integral = integral or pixel_id in (sitk.sitkInt64, sitk.sitkUInt64)
        fits = integral and low >= -32768 and high <= 32767
        image = sitk.Cast(image, sitk.sitkInt16 if fits else sitk.sitkFloat32)
    # Checked in the working type: float64 values beyond float32's range (~3.4e38) become infinite in the cast.
    values = sitk.GetArrayViewFromImage(image)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        beyond = (
            f" (stored values up to {stored_high:.3g}, beyond float32's range of {_FLOAT32_MAX:.3g})"
            if stored_high is not None and math.isfinite(stored_high)
            else ""
        )
        raise InputError(scan.path, f"contains {bad} NaN/infinite voxel(s) of {values.size}{beyond}: not a usable CT")
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
