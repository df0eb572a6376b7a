"""Size limits checked from headers before anything is allocated, and refusal of files that are not regular.

A scan file is untrusted: a 93-byte ``.nii.gz`` can declare 2048x1024x1024 voxels, an ``.nhdr`` can point its data
at ``/dev/zero``, a NIfTI with 500 mm voxels makes resampling to the model's spacing allocate terabytes, and a FIFO
in a series folder blocks the first ``open`` forever. The readers call the functions here with what the header
declares, so each of these is refused with one line naming the file, the size and the limit, before any
allocation.

The limits (:class:`Limits`) default to values far above any real CT (a 512x512 scan of 2048 slices passes) and
are configurable through environment variables (``MEDSEG_MAX_VOXELS``, ``MEDSEG_MAX_RESAMPLED_VOXELS``,
``MEDSEG_MIN_SPACING_MM``, ``MEDSEG_MAX_SPACING_MM``, ``MEDSEG_MAX_HEADER_BYTES``) or by passing a
:class:`Limits` object.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np

from medseg.errors import InputError

# Deflate cannot compress better than about 1032:1 (RFC 1951: a 258-byte match costs at least 2 bits), so a gzip
# file of n bytes never holds more than this many times n bytes of data.
MAX_DEFLATE_RATIO = 1032


@dataclass(frozen=True)
class Limits:
    """What a scan may declare before medseg refuses to allocate for it.

    Attributes:
        max_voxels: voxels of the scan as stored (default 2**29: 512x512x2048, 1 GiB as int16).
        max_resampled_voxels: voxels of the scan resampled to the model's spacing (default 2**26: 406**3 or
            512x512x256; the shipped model's 4.7x4.7x2.5 mm grid of a 50x50x200 cm body is 9.1e6 voxels). With 8
            classes of float32 scores this bounds the inference grid's memory near 2.4 GiB.
        min_spacing_mm: smallest voxel spacing accepted (default 0.01 mm).
        max_spacing_mm: largest voxel spacing accepted (default 50 mm; CT slices are at most ~10 mm).
        max_header_bytes: largest image header (NIfTI extensions, NRRD/MetaImage text header) read (16 MiB).
    """

    max_voxels: int = 2**29
    max_resampled_voxels: int = 2**26
    min_spacing_mm: float = 0.01
    max_spacing_mm: float = 50.0
    max_header_bytes: int = 16 * 2**20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by ``MEDSEG_<FIELD NAME IN CAPITALS>`` variables (e.g. ``MEDSEG_MAX_VOXELS``)."""
        environ = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for spec in fields(cls):
            name = f"MEDSEG_{spec.name.upper()}"
            text = environ.get(name)
            if text is None or not text.strip():
                continue
            try:
                value: float | int = float(text)
                if spec.type in (int, "int"):
                    value = int(value) if math.isfinite(value) else value
            except ValueError:
                raise InputError(None, f"{name}={text!r} is not a number") from None
            if not math.isfinite(value) or value <= 0:
                raise InputError(None, f"{name}={text!r} must be a positive number")
            values[spec.name] = value
        return cls(**values)  # type: ignore[arg-type]


def current_limits(limits: Limits | None = None) -> Limits:
    """``limits`` when given, else the defaults with the environment's overrides."""
    return limits if limits is not None else Limits.from_env()


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def check_regular_file(path: str | os.PathLike[str]) -> None:
    """Refuse what is not a regular file (FIFO, socket, character or block device): opening or reading one can
    block forever or never end. Symbolic links are judged by their target.

    Raises:
        InputError: naming the kind of file.
    """
    kind = special_file_kind(path)
    if kind is not None:
        raise InputError(path, f"is a {kind}, not a regular file: refused (reading it could block or never end)")


def special_file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"FIFO"``, ``"socket"``, ``"character device"`` or ``"block device"`` when ``path`` (or its link target) is
    one; ``None`` for regular files, folders and paths that do not exist (their own errors come later)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return special_mode_kind(mode)


def special_mode_kind(mode: int) -> str | None:
    """What :func:`special_file_kind` says, for an ``st_mode`` already at hand (from ``os.stat``)."""
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return None


def check_spacing(path: str | os.PathLike[str], spacing: Sequence[float], limits: Limits | None = None) -> None:
    """Refuse voxel spacings that are not finite, not positive, or outside the limits.

    Raises:
        InputError: naming the spacing and the limit.
    """
    lim = current_limits(limits)
    values = [float(s) for s in spacing]
    shown = ", ".join(f"{s:.6g}" for s in values)
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(path, f"has voxel spacing ({shown}) mm: every spacing must be a positive finite number")
    if min(values) < lim.min_spacing_mm:
        raise InputError(
            path,
            f"has voxel spacing ({shown}) mm, below the limit of {lim.min_spacing_mm:g} mm (MEDSEG_MIN_SPACING_MM)",
        )
    if max(values) > lim.max_spacing_mm:
        raise InputError(
            path,
            f"has voxel spacing ({shown}) mm, above the limit of {lim.max_spacing_mm:g} mm (MEDSEG_MAX_SPACING_MM): "
            "not a CT voxel size",
        )


def check_voxels(
    path: str | os.PathLike[str], shape: Sequence[int], bytes_per_voxel: int = 4, limits: Limits | None = None
) -> None:
    """Refuse a declared shape whose voxel count exceeds ``max_voxels`` (before the voxels are allocated).

    Raises:
        InputError: naming the shape, its size in memory and the limit.
    """
    lim = current_limits(limits)
    dims = [int(s) for s in shape]
    if any(s < 0 for s in dims):
        raise InputError(path, f"declares a negative size ({_shape_text(dims)})")
    count = math.prod(dims)
    if count > lim.max_voxels:
        raise InputError(
            path,
            f"declares {_shape_text(dims)} = {count:,} voxels ({_gib(count * bytes_per_voxel)}), above the limit of "
            f"{lim.max_voxels:,} voxels (MEDSEG_MAX_VOXELS): refused before reading",
        )


def check_declared_data(
    path: str | os.PathLike[str],
    declared_bytes: int,
    available_bytes: int,
    *,
    compressed: bool,
) -> None:
    """Refuse a header that declares more data than the file can hold: ``available_bytes`` of stored data, which
    a gzip stream can expand at most :data:`MAX_DEFLATE_RATIO` times.

    Raises:
        InputError: "truncated" for an uncompressed file, "cannot hold" for a compressed one.
    """
    if compressed:
        if declared_bytes > available_bytes * MAX_DEFLATE_RATIO:
            raise InputError(
                path,
                f"declares {declared_bytes:,} bytes of voxel data, which {available_bytes:,} compressed bytes "
                f"cannot hold (gzip expands at most {MAX_DEFLATE_RATIO}x): corrupt or hostile header",
            )
    elif declared_bytes > available_bytes:
        raise InputError(
            path,
            f"is truncated: its header declares {declared_bytes:,} bytes of voxel data, the file holds "
            f"{max(available_bytes, 0):,}",
        )


def check_header_size(path: str | os.PathLike[str], header_bytes: int, limits: Limits | None = None) -> None:
    """Refuse an image header (NIfTI extensions, NRRD or MetaImage text) larger than ``max_header_bytes``.

    Raises:
        InputError: naming the header size and the limit.
    """
    lim = current_limits(limits)
    if header_bytes > lim.max_header_bytes:
        raise InputError(
            path,
            f"has a {header_bytes:,}-byte header, above the limit of {lim.max_header_bytes:,} bytes "
            "(MEDSEG_MAX_HEADER_BYTES): corrupt or hostile header",
        )


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float | None]
) -> tuple[int, ...]:
    """The grid size of ``shape`` voxels of ``spacing`` mm resampled to ``target_spacing`` (an entry ``None`` or
    not positive keeps that axis), rounded as MONAI's ``Spacing`` does (the physical extent over the new spacing)."""
    result = []
    for size, step, target in zip(shape, spacing, target_spacing, strict=True):
        if target is None or not target > 0:
            result.append(int(size))
        else:
            result.append(max(math.ceil(int(size) * float(step) / float(target) - 1e-6), 1))
    return tuple(result)


def check_resampled_grid(
    path: str | os.PathLike[str],
    shape: Sequence[int],
    spacing: Sequence[float],
    target_spacing: Sequence[float | None],
    limits: Limits | None = None,
) -> tuple[int, ...]:
    """Refuse a scan whose grid, resampled from ``spacing`` to ``target_spacing`` (mm, same axis order as
    ``shape``), would exceed ``max_resampled_voxels``; call it before the resampling transform runs.

    Returns:
        The resampled grid size.

    Raises:
        InputError: naming the file, the scan's size and spacing, the resampled size and the limit.
    """
    lim = current_limits(limits)
    check_spacing(path, spacing, lim)
    new_shape = resampled_shape(shape, spacing, target_spacing)
    count = math.prod(new_shape)
    if count > lim.max_resampled_voxels:
        spacing_text = "x".join(f"{float(s):.4g}" for s in spacing)
        target_text = "x".join("-" if t is None else f"{float(t):.4g}" for t in target_spacing)
        raise InputError(
            path,
            f"resampling {_shape_text(shape)} voxels of {spacing_text} mm to the model's {target_text} mm gives "
            f"{_shape_text(new_shape)} = {count:,} voxels ({_gib(4.0 * count)} as float32), above the limit of "
            f"{lim.max_resampled_voxels:,} voxels (MEDSEG_MAX_RESAMPLED_VOXELS)",
        )
    return new_shape


def data_file_inside(header_path: Path, data_path: Path) -> None:
    """Refuse a detached header (``.nhdr``, ``.mhd``) whose data file is not a regular file inside the header's
    own folder: a scan must not make medseg read ``/dev/zero`` or any file elsewhere on the machine.

    Raises:
        InputError: naming the data file and where it lies.
    """
    folder = header_path.resolve().parent
    target = (header_path.parent / data_path).resolve() if not data_path.is_absolute() else data_path.resolve()
    if target != folder and folder not in target.parents:
        raise InputError(
            header_path,
            f"points its voxel data at {str(data_path)!r}, outside the scan's own folder ({folder}): refused",
        )
    if target.exists():
        check_regular_file(target)


def check_nifti_sizes(path: Path, nifti: nib.Nifti1Image, limits: Limits | None = None) -> None:
    """Check what a NIfTI header declares, before its voxels are read: header and extension size, voxel count,
    data that the file can actually hold, and spacing.

    Raises:
        InputError: naming the declared size and the limit or the file size.
    """
    lim = current_limits(limits)
    header = nifti.header
    offset = int(header.get_data_offset())
    check_header_size(path, offset, lim)
    shape = tuple(int(s) for s in nifti.shape)
    dtype = nifti.get_data_dtype()
    declared = math.prod(shape) * dtype.itemsize
    compressed = path.name.lower().endswith(".gz")
    file_size = path.stat().st_size
    # A header claiming more than the file holds is corrupt or hostile, whatever the limits.
    check_declared_data(path, declared, file_size if compressed else file_size - offset, compressed=compressed)
    check_voxels(path, shape, max(dtype.itemsize, 4), lim)


def _read_text_header(path: Path, limits: Limits, *, attached: bool) -> tuple[str, int]:
    """The text header of an NRRD/MetaImage file and the offset where the data start: for an attached header up
    to the first empty line (NRRD), the whole file for a detached one; refused when longer than the limit."""
    with open(path, "rb") as handle:
        head = handle.read(limits.max_header_bytes + 1)
    if attached:
        ends = [(i, len(sep)) for sep in (b"\n\n", b"\r\n\r\n") if (i := head.find(sep)) >= 0]
        if not ends:
            check_header_size(path, len(head), limits)
            return head.decode("latin-1"), len(head)  # a header without data: the reader reports it
        end, separator = min(ends)
        return head[:end].decode("latin-1"), end + separator
    check_header_size(path, len(head), limits)
    return head.decode("latin-1"), len(head)


def check_nrrd_header(path: Path, limits: Limits | None = None) -> None:
    """Check an NRRD header (pynrrd) before its data are read: header size, voxel count, spacing, a detached data
    file inside the scan's folder, and data that the file can hold.

    Raises:
        InputError: naming the problem.
    """
    lim = current_limits(limits)
    text, data_offset = _read_text_header(path, lim, attached=not path.name.lower().endswith(".nhdr"))
    try:
        header = nrrd.read_header(iter(text.splitlines(keepends=True)))
        dtype = np.dtype(nrrd.reader._determine_datatype(header))
    except Exception as err:  # pynrrd raises NRRDError, ValueError, KeyError... for malformed fields
        raise InputError(path, f"cannot be read as NRRD: bad header ({reason(err)})") from err
    sizes = [int(s) for s in np.atleast_1d(header.get("sizes", []))]
    check_voxels(path, sizes, max(dtype.itemsize, 4), lim)
    spacing = _nrrd_spacing(header)
    if spacing:
        check_spacing(path, spacing, lim)
    data_field = header.get("data file", header.get("datafile"))
    declared = math.prod(sizes) * dtype.itemsize
    encoding = str(header.get("encoding", "raw")).lower()
    if data_field is None:
        available = path.stat().st_size - data_offset
    else:
        tokens = str(data_field).split()
        if not tokens or tokens[0].upper() == "LIST":
            raise InputError(path, "lists its data files (data file: LIST), which medseg does not read: refused")
        data_path = Path(tokens[0])
        data_file_inside(path, data_path)
        target = path.parent / data_path
        if len(tokens) > 1 or not target.is_file():
            return  # a file pattern or a missing file: ITK reports it
        available = target.stat().st_size
    if encoding == "raw":
        check_declared_data(path, declared, available, compressed=False)
    elif encoding in ("gzip", "gz"):
        check_declared_data(path, declared, available, compressed=True)


def _nrrd_spacing(header: Mapping[str, object]) -> list[float]:
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(row, dtype=float) for row in directions if row is not None]  # type: ignore[attr-defined]
        return [float(np.linalg.norm(row)) for row in rows if np.all(np.isfinite(row))] or [
            float("nan") for row in rows
        ]
    spacings = header.get("spacings")
    if spacings is not None:
        return [float(s) for s in np.atleast_1d(spacings)]  # type: ignore[call-overload]
    return []


def check_metaimage_header(path: Path, limits: Limits | None = None) -> None:
    """Check a MetaImage header: its size, and that a detached data file (``ElementDataFile`` of an ``.mhd``)
    lies inside the scan's own folder. Sizes and spacing are checked by the reader from ITK's header read.

    Raises:
        InputError: naming the problem.
    """
    lim = current_limits(limits)
    if not path.name.lower().endswith(".mhd"):
        return  # .mha: data attached, sizes checked after ITK's header read
    text, _ = _read_text_header(path, lim, attached=False)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip().lower() == "elementdatafile":
            tokens = value.split()
            if tokens and tokens[0].upper() not in ("LOCAL", "LIST"):
                data_file_inside(path, Path(tokens[0]))


def check_image_information(
    path: Path, size: Sequence[int], spacing: Sequence[float], bytes_per_voxel: int, limits: Limits | None = None
) -> None:
    """Check the size and spacing an image header declares (from SimpleITK's ``ReadImageInformation``)."""
    lim = current_limits(limits)
    check_voxels(path, size, max(bytes_per_voxel, 4), lim)
    check_spacing(path, spacing[:3], lim)


def reason(err: BaseException) -> str:
    """A non-empty one-line reason for an exception (some libraries raise with an empty message)."""
    text = " ".join(str(err).split())
    return text if text else type(err).__name__
