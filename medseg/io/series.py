"""Find the DICOM series and image files under a path and pick the CT series to segment.

A path may be a single image file (NIfTI, NRRD, MetaImage), a single DICOM file (its series is read from the
file's folder), a DICOM series folder, or a patient/study folder holding several series at any depth.

DICOM files are indexed by header only (``pydicom`` with ``stop_before_pixels``), whatever their file names
(no ``.dcm`` suffix needed); files that are not DICOM (DICOMDIR, text, images) are ignored. Files are grouped by
SeriesInstanceUID. Each series that cannot be the CT volume to segment gets a ``skip_reason``:

* modality other than CT (MR, PT, RTSTRUCT, SEG, RTDOSE, RTPLAN, SR, ...);
* no pixel data / non-image SOP class (secondary captures such as dose screens, reports, presentation states);
* localiser / scout images (ImageType LOCALIZER, SCOUT or TOPOGRAM; grouped apart from the rest of their series);
* reports and screen captures (ImageType SCREEN SAVE, CSA REPORT, DOSE INFO);
* multi-frame (enhanced) CT, which this reader does not assemble;
* a single slice, which is not a volume.

Among the remaining CT series :func:`select_series` takes the best by these criteria, in this order:

1. ORIGINAL before DERIVED images: derived series are reformats, MIPs or averages of the acquired ones.
2. More slices: the larger coverage (or the thinner reconstruction of the same coverage) holds the most data.
3. Thinner slice step: finer z resolution, the same reason.
4. Softer reconstruction kernel (e.g. B30f, STANDARD) before sharp ones (B70f, LUNG, BONE): segmentation models
   are trained on soft-tissue reconstructions; sharp kernels add noise.

Two series equal on all four (typically two contrast phases of one geometry) are **not** decided by a coin toss:
:func:`select_series` refuses with :class:`~medseg.errors.InputError` listing them, and the caller names the
series to read (``series_uid``). Every series not chosen says why in ``skip_reason``.
"""

from __future__ import annotations

import io
import math
import os
import re
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag

from medseg.errors import InputError, printable
from medseg.io.limits import check_regular_file, special_file_kind

# Single-file image formats SimpleITK reads, by (lower-case) suffix.
IMAGE_SUFFIXES: dict[str, str] = {
    ".nii.gz": "nifti",
    ".nii": "nifti",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mha",
}
# Never opened while looking for DICOM: saves reading big image files and archives header by header.
_NOT_DICOM_SUFFIXES = frozenset(
    {".txt", ".json", ".xml", ".csv", ".tsv", ".md", ".pdf", ".html", ".htm", ".log", ".ini", ".yaml", ".yml"}
    | {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".zip", ".gz", ".tar", ".tgz", ".7z", ".py"}
    | {".raw", ".zraw", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".npy", ".npz", ".pt", ".pth", ".db", ".exe"}
)
# The header (up to group 0028) is parsed from the file's first bytes in memory, ~20 % faster than from the file;
# the rare header longer than this is parsed from the file.
_HEAD_BYTES = 64 * 1024
_CT_IMAGE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"})
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Transfer syntaxes whose pixel data length is known from the header (so truncation is detectable early).
_DEFLATED_SYNTAX = "1.2.840.10008.1.2.1.99"
_UNCOMPRESSED_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_LOCALIZER_TYPES = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM"})
_REPORT_TYPES = frozenset({"SCREEN SAVE", "CSA REPORT", "DOSE INFO", "DOSE_INFO", "CSAPARALLEL"})
_MODALITY_NAMES = {
    "RTSTRUCT": "an RT structure set, not an image",
    "SEG": "a segmentation, not an image",
    "RTDOSE": "an RT dose grid, not a CT",
    "RTPLAN": "an RT plan, not an image",
    "RTIMAGE": "an RT portal image, not a CT",
    "SR": "a structured report, not an image",
    "PR": "a presentation state, not an image",
    "KO": "a key-object selection, not an image",
    "REG": "a registration, not an image",
    "DOC": "a document, not an image",
}
_SHARP_KERNEL_WORDS = ("LUNG", "BONE", "SHARP", "EDGE", "DETAIL", "HIGH", "ULTRA")
_SOFT_KERNEL_WORDS = ("STANDARD", "SOFT", "SMOOTH", "BODY", "ABDOMEN", "BRAIN", "SMTH")
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)


def safe_name(text: str, max_length: int = 100) -> str:
    """A file-system-safe name made from untrusted text (a DICOM tag value, a user's case id).

    Keeps ASCII letters, digits, ``.``, ``_`` and ``-``; everything else (path separators, spaces, control and
    non-ASCII characters) becomes ``_``. Leading dots and dashes are dropped (no hidden files, no ``..``, nothing
    that reads as a command-line option), Windows device names get a ``_`` prefix, and long names are cut to
    ``max_length`` with a short hash of the full text so that distinct inputs stay distinct.

    >>> safe_name("../../etc/passwd")
    'etc_passwd'
    >>> safe_name("1.2.840.113619.2.55")
    '1.2.840.113619.2.55'
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", ascii_text)
    name = re.sub(r"_{2,}", "_", name).lstrip("._-").rstrip("._ ")
    if not name:
        name = "unnamed"
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = f"_{name}"
    if len(name) > max_length:
        import hashlib

        digest = hashlib.sha256(str(text).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        name = f"{name[: max_length - 9].rstrip('._-')}-{digest}"
    return name


def image_format(path: str | os.PathLike[str]) -> str | None:
    """``"nifti"``, ``"nrrd"`` or ``"mha"`` from the file name's suffix; ``None`` for anything else."""
    lower = Path(path).name.lower()
    for suffix, fmt in IMAGE_SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    return None


class PixelFormat(NamedTuple):
    """How one file stores its pixels (the Image Pixel module, group 0028)."""

    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    high_bit: int
    signed: bool  # PixelRepresentation 1: two's complement


@dataclass(frozen=True)
class DicomInstance:
    """What medseg needs from one DICOM file's header (read without its pixel data).

    ``pixel_spacing`` is in DICOM order: (distance between rows, distance between columns) in mm.
    ``orientation`` is ImageOrientationPatient: the row direction cosines then the column direction cosines.
    ``pixel_format`` is ``None`` when a tag it needs is missing (GDCM then decides how to read the pixels).
    ``problem`` is set when the file is unusable although its header parsed (e.g. truncated pixel data).
    """

    path: Path
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    sop_class_uid: str
    image_type: tuple[str, ...]
    series_number: int | None
    series_description: str
    kernel: str
    instance_number: int | None
    rows: int | None
    columns: int | None
    frames: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, float, float, float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    rescale: tuple[float, float]
    transfer_syntax: str
    pixel_format: PixelFormat | None = None
    problem: str | None = None

    @property
    def is_localizer(self) -> bool:
        return bool(_LOCALIZER_TYPES & set(self.image_type))


@dataclass
class SeriesInfo:
    """One DICOM series found under the input path.

    ``instances`` are in file-name order; ``skip_reason`` is ``None`` for the chosen series and for series not
    yet ranked, and otherwise says why the series is not the one read.
    """

    uid: str
    folder: Path
    instances: tuple[DicomInstance, ...] = field(repr=False)
    skip_reason: str | None = None

    @property
    def first(self) -> DicomInstance:
        return self.instances[0]

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def number(self) -> int | None:
        return self.first.series_number

    @property
    def kernel(self) -> str:
        return self.first.kernel

    @property
    def image_type(self) -> tuple[str, ...]:
        return self.first.image_type

    @property
    def n_files(self) -> int:
        return len(self.instances)

    @property
    def files(self) -> list[Path]:
        return [inst.path for inst in self.instances]

    @property
    def is_original(self) -> bool:
        return bool(self.image_type) and self.image_type[0] == "ORIGINAL"

    def slice_offsets(self) -> np.ndarray:
        """Positions of the slices along the first slice's normal (mm), sorted, duplicates kept: shape (n,)."""
        usable = [i for i in self.instances if i.position is not None and i.orientation is not None]
        if not usable:
            return np.zeros(0)
        orientation = np.asarray(usable[0].orientation, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        return np.sort(np.asarray([i.position for i in usable], dtype=float) @ normal)

    @property
    def n_slices(self) -> int:
        """Distinct slice positions (duplicates counted once)."""
        offsets = self.slice_offsets()
        if offsets.size == 0:
            return 0
        return int(1 + np.count_nonzero(np.diff(offsets) > 1e-3))

    @property
    def slice_step_mm(self) -> float | None:
        """Median distance between distinct neighbouring slices, ``None`` for fewer than 2 positions."""
        steps = np.diff(self.slice_offsets())
        steps = steps[steps > 1e-3]
        return float(np.median(steps)) if steps.size else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-file data)."""
        step = self.slice_step_mm
        return {
            "uid": self.uid,
            "folder": str(self.folder),
            "modality": self.modality,
            "description": self.description,
            "series_number": self.number,
            "image_type": list(self.image_type),
            "kernel": self.kernel,
            "files": self.n_files,
            "slices": self.n_slices,
            "rows": self.first.rows,
            "columns": self.first.columns,
            "slice_step_mm": None if step is None else round(step, 4),
            "skip_reason": self.skip_reason,
        }

    def label(self) -> str:
        """Short human-readable name: ``'CT Body 3.0' (#3, 20 files, uid 1.2.3)``."""
        number = "" if self.number is None else f"#{self.number}, "
        uid = self.uid or "no SeriesInstanceUID"
        return f"'{self.description}' ({self.modality}, {number}{self.n_files} files, uid {uid}) in {self.folder}"


@dataclass
class Discovery:
    """Everything found under ``root``: DICOM series (in folder, series-number order) and other image files."""

    root: Path
    series: list[SeriesInfo]
    image_files: list[Path]
    ignored: list[Path]


# Tags medseg reads from each header. Values are decoded from the raw bytes: pydicom's value conversion costs
# more than parsing the file, and these few types (strings, decimal strings, US integers) need no more.
_SOP_CLASS_UID = 0x00080016
_IMAGE_TYPE = 0x00080008
_MODALITY = 0x00080060
_SERIES_DESCRIPTION = 0x0008103E
_KERNEL = 0x00181210
_SLICE_THICKNESS = 0x00180050
_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
_SERIES_NUMBER = 0x00200011
_INSTANCE_NUMBER = 0x00200013
_POSITION = 0x00200032
_ORIENTATION = 0x00200037
_FRAME_OF_REFERENCE_UID = 0x00200052
_SAMPLES_PER_PIXEL = 0x00280002
_PHOTOMETRIC = 0x00280004
_NUMBER_OF_FRAMES = 0x00280008
_ROWS = 0x00280010
_COLUMNS = 0x00280011
_PIXEL_SPACING = 0x00280030
_BITS_ALLOCATED = 0x00280100
_BITS_STORED = 0x00280101
_HIGH_BIT = 0x00280102
_PIXEL_REPRESENTATION = 0x00280103
_RESCALE_INTERCEPT = 0x00281052
_RESCALE_SLOPE = 0x00281053
_DIRECTORY_RECORDS = 0x00041220
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LAST_GROUP_READ = 0x0028  # everything above (private CSA headers, RT contours, SEG frames) is skipped
# Only these are decoded; pydicom seeks over the values of the others (when their length is defined).
_TAGS_READ = [
    *(_SOP_CLASS_UID, _IMAGE_TYPE, _MODALITY, _SERIES_DESCRIPTION, _KERNEL, _SLICE_THICKNESS, _STUDY_UID),
    *(_SERIES_UID, _SERIES_NUMBER, _INSTANCE_NUMBER, _POSITION, _ORIENTATION, _FRAME_OF_REFERENCE_UID),
    *(_SAMPLES_PER_PIXEL, _PHOTOMETRIC, _NUMBER_OF_FRAMES, _ROWS, _COLUMNS, _PIXEL_SPACING, _BITS_ALLOCATED),
    *(_BITS_STORED, _HIGH_BIT, _PIXEL_REPRESENTATION, _RESCALE_INTERCEPT, _RESCALE_SLOPE, _DIRECTORY_RECORDS),
]


def _text(ds: pydicom.Dataset, tag: int) -> str:
    """A string-valued element as text (multi-values joined by backslash), "" when absent; control characters
    escaped (:func:`~medseg.errors.printable`): tag values reach terminals and reports."""
    return printable(_plain_text(ds, tag))


def _upper_text(ds: pydicom.Dataset, tag: int) -> str:
    """:func:`_text` in capitals (code strings), escapes left as written."""
    return printable(_plain_text(ds, tag).upper())


def _plain_text(ds: pydicom.Dataset, tag: int) -> str:
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):  # raw: Latin-1 never fails, and these values are ASCII or shown only
        return value.decode("latin-1").strip(" \x00")
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _floats(ds: pydicom.Dataset, tag: int, count: int) -> tuple[float, ...] | None:
    """A decimal-string element with exactly ``count`` finite values, else ``None``."""
    try:
        values = tuple(float(v) for v in _text(ds, tag).split("\\"))
    except ValueError:
        return None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        return None
    return values


def _float(ds: pydicom.Dataset, tag: int) -> float | None:
    values = _floats(ds, tag, 1)
    return None if values is None else values[0]


def _int_string(ds: pydicom.Dataset, tag: int) -> int | None:
    """An integer-string (IS) element, ``None`` when absent or malformed."""
    try:
        return int(float(_text(ds, tag)))
    except ValueError:
        return None


def _uint16(ds: pydicom.Dataset, tag: int) -> int | None:
    """An unsigned-short (US) element, ``None`` when absent or malformed."""
    elem = ds.get_item(tag)
    if elem is None or elem.value is None:
        return None
    value = elem.value
    if isinstance(elem, RawDataElement) and isinstance(value, bytes):
        if len(value) != 2:
            return None
        return int.from_bytes(value, "little" if elem.is_little_endian else "big")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _looks_like_dicom(head: bytes) -> bool | None:
    """True: Part-10 file (``DICM`` at byte 128); False: a file without the 128-byte preamble and ``DICM``, which
    starts with its file meta group (0x0002) or with a raw data set (group 0x0008, as old ACR-NEMA-style exports
    do), both little-endian; None: not DICOM."""
    if head[128:132] == b"DICM":
        return True
    if head[:2] in (b"\x08\x00", b"\x02\x00") and len(head) >= 8:
        return False
    return None


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """The one DICOM sniffer: whether ``path`` is a regular file that starts like DICOM, with the Part-10
    preamble and ``DICM`` or without them (see :func:`_looks_like_dicom`). Reads 132 bytes; never opens a FIFO,
    socket or device (which could block forever); ``False`` for what cannot be read. :func:`read_instance` decides
    whether the header really parses."""
    if special_file_kind(path) is not None:
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return _looks_like_dicom(head) is not None


def _stop_after_last_group(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group > _LAST_GROUP_READ


def read_instance(path: Path) -> DicomInstance | None:
    """Index one file: the header elements up to group 0028 (no pixel data) as a :class:`DicomInstance`;
    ``None`` if it is not DICOM or is a DICOMDIR.

    Raises:
        InputError: the file carries a DICOM signature but cannot be parsed, or cannot be opened.
    """
    check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except PermissionError as err:
        raise InputError(path, f"cannot be read: permission denied ({err.strerror})") from err
    except OSError as err:
        raise InputError(path, f"cannot be read: {err.strerror or err}") from err
    part10 = _looks_like_dicom(head)
    if part10 is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about every odd-but-readable value
            ds, stop_offset = _parse_header(path, head, size, force=not part10)
            if not part10 and (stop_offset >= size or not (_text(ds, _SOP_CLASS_UID) or _text(ds, _MODALITY))):
                return None  # forced parsing of a file that merely starts with 08 00 found no DICOM content
            file_meta = getattr(ds, "file_meta", None) or pydicom.Dataset()
            sop_class = _text(ds, _SOP_CLASS_UID) or str(file_meta.get("MediaStorageSOPClassUID", ""))
            if sop_class == _DICOMDIR_SOP_CLASS or ds.get_item(_DIRECTORY_RECORDS) is not None:
                return None  # a DICOMDIR indexes files; it is not one
            transfer_syntax = str(file_meta.get("TransferSyntaxUID", "")) or "1.2.840.10008.1.2"
            # A deflated data set is parsed from its inflated copy: offsets into the file say nothing there.
            if stop_offset >= size and transfer_syntax != _DEFLATED_SYNTAX:
                # Every DICOM object but a DICOMDIR has elements above group 0028 (pixels, contours, report
                # content); pydicom stops silently at the end of a file, so reaching it means a cut header.
                raise InputError(path, "is truncated: the file ends inside its DICOM header")
            return _instance_from_header(path, ds, sop_class, transfer_syntax, size - stop_offset)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, zlib.error) as err:
        if not part10:
            return None  # a non-DICOM file that happened to start with 08 00
        raise InputError(path, f"has a DICOM signature but its header cannot be parsed ({err})") from err


def _parse_header(path: Path, head: bytes, size: int, *, force: bool) -> tuple[pydicom.Dataset, int]:
    """The data set up to group 0028 and the offset where parsing stopped. Parsed from ``head`` (the first bytes
    of the file) when it holds the whole header, else from the file."""
    if len(head) < size:
        stream = io.BytesIO(head)
        try:
            ds = read_partial(stream, stop_when=_stop_after_last_group, force=force, specific_tags=_TAGS_READ)
            if stream.tell() < len(head):  # stopped at an element above group 0028, inside the head
                return ds, stream.tell()
        except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, zlib.error):
            pass  # an element (or a deflated stream) cut by the end of the head: parse the file
        with open(path, "rb") as handle:
            ds = read_partial(handle, stop_when=_stop_after_last_group, force=force, specific_tags=_TAGS_READ)
            return ds, handle.tell()
    stream = io.BytesIO(head)
    ds = read_partial(stream, stop_when=_stop_after_last_group, force=force, specific_tags=_TAGS_READ)
    return ds, stream.tell()


def _instance_from_header(
    path: Path, ds: pydicom.Dataset, sop_class: str, transfer_syntax: str, bytes_after_header: int
) -> DicomInstance:
    rows, columns = _uint16(ds, _ROWS), _uint16(ds, _COLUMNS)
    frames = _int_string(ds, _NUMBER_OF_FRAMES) or 1
    image_type = tuple(v.strip() for v in _upper_text(ds, _IMAGE_TYPE).split("\\") if v.strip())
    pixel_format = _pixel_format(ds)
    problem = None
    if rows and columns and transfer_syntax in _UNCOMPRESSED_SYNTAXES:
        bits = _uint16(ds, _BITS_ALLOCATED) or 16
        samples = _uint16(ds, _SAMPLES_PER_PIXEL) or 1
        expected = rows * columns * samples * frames * bits // 8
        # What follows the header read (up to group 0028) must hold the Pixel Data element: its own header (8
        # bytes implicit VR, 12 explicit) plus the pixels. A shorter cut, into elements that sit between group
        # 0028 and the pixels, is caught when GDCM reads the series.
        available = bytes_after_header - (8 if transfer_syntax == "1.2.840.10008.1.2" else 12)
        if available < expected:
            problem = (
                f"truncated: pixel data holds at most {max(available, 0)} of the {expected} bytes that "
                f"Rows {rows} x Columns {columns} x {bits} bits need"
            )
    slope = _float(ds, _RESCALE_SLOPE)
    intercept = _float(ds, _RESCALE_INTERCEPT)
    problem = problem or _rescale_problem(ds, slope, intercept, pixel_format)
    return DicomInstance(
        path=path,
        series_uid=_text(ds, _SERIES_UID),
        study_uid=_text(ds, _STUDY_UID),
        frame_of_reference_uid=_text(ds, _FRAME_OF_REFERENCE_UID),
        modality=_upper_text(ds, _MODALITY),
        sop_class_uid=sop_class,
        image_type=image_type,
        series_number=_int_string(ds, _SERIES_NUMBER),
        series_description=_text(ds, _SERIES_DESCRIPTION),
        kernel=_text(ds, _KERNEL),
        instance_number=_int_string(ds, _INSTANCE_NUMBER),
        rows=rows,
        columns=columns,
        frames=frames,
        position=_floats(ds, _POSITION, 3),  # type: ignore[arg-type]
        orientation=_floats(ds, _ORIENTATION, 6),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds, _PIXEL_SPACING, 2),  # type: ignore[arg-type]
        slice_thickness=_float(ds, _SLICE_THICKNESS),
        rescale=(1.0 if slope is None else slope, 0.0 if intercept is None else intercept),
        transfer_syntax=transfer_syntax,
        pixel_format=pixel_format,
        problem=problem,
    )


def _rescale_problem(
    ds: pydicom.Dataset, slope: float | None, intercept: float | None, pixel_format: PixelFormat | None
) -> str | None:
    """Why RescaleSlope/RescaleIntercept make the file unusable: present but not a finite number (never silently
    taken as 1 and 0), a zero slope (every voxel the same), or HU beyond float32's range."""
    rescale = ((_RESCALE_SLOPE, "RescaleSlope", slope), (_RESCALE_INTERCEPT, "RescaleIntercept", intercept))
    for tag, name, value in rescale:
        text = _text(ds, tag)
        if text and value is None:
            return f"{name} {text[:40]!r} is not a finite number"
    if slope == 0.0:
        return "RescaleSlope is 0: every voxel would have the same value"
    bits = pixel_format.bits_stored if pixel_format is not None and 0 < pixel_format.bits_stored <= 32 else 16
    largest = abs(slope or 1.0) * float(2**bits) + abs(intercept or 0.0)
    if largest > _FLOAT32_MAX:
        return (
            f"RescaleSlope {slope:.3g} and RescaleIntercept {intercept or 0.0:.3g} give values up to {largest:.3g}, "
            f"beyond float32's range ({_FLOAT32_MAX:.3g})"
        )
    return None


def _pixel_format(ds: pydicom.Dataset) -> PixelFormat | None:
    """The Image Pixel module's description of the stored pixels, ``None`` when one of its tags is missing."""
    photometric = _text(ds, _PHOTOMETRIC).upper()
    samples, allocated, stored, high_bit, representation = (
        _uint16(ds, tag)
        for tag in (_SAMPLES_PER_PIXEL, _BITS_ALLOCATED, _BITS_STORED, _HIGH_BIT, _PIXEL_REPRESENTATION)
    )
    if samples is None or allocated is None or stored is None or high_bit is None or representation is None:
        return None
    return PixelFormat(samples, photometric, allocated, stored, high_bit, representation == 1) if photometric else None


def _series_key(inst: DicomInstance) -> tuple[str, ...]:
    # Localisers often share the SeriesInstanceUID of the axial series (some vendors): keep them apart.
    if inst.series_uid:
        return (inst.series_uid, "", "", "", str(inst.is_localizer))
    # De-identified exports sometimes blank the UID (totalsegmentator/example_ct_dicom): fall back to the folder
    # and the descriptive tags that a series shares.
    return (
        "",
        str(inst.path.parent),
        inst.frame_of_reference_uid,
        f"{inst.series_number}|{inst.series_description}|{inst.rows}x{inst.columns}",
        str(inst.is_localizer),
    )


def walk_files(root: Path) -> Iterable[Path]:
    """The files under ``root`` in sorted order, hidden ones left out. Symlinked folders are followed (patient
    folders are often assembled from links); a folder reached again, through a link loop or a second link to it,
    is listed once, at its first path."""
    seen: set[str] = set()
    for folder, dirs, names in os.walk(root, onerror=_raise_walk_error, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(folder) / name


def _raise_walk_error(err: OSError) -> None:
    raise InputError(err.filename, f"cannot be listed: {err.strerror or err}")


def find_series(path: str | os.PathLike[str]) -> Discovery:
    """Index every file under ``path`` (a folder, searched at any depth and through symlinked folders, or one DICOM
    file, whose folder is searched) by header only, and group the DICOM files into series with their skip reasons set.

    Raises:
        InputError: ``path`` is missing or unreadable, or a file with a DICOM signature cannot be parsed.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(root, "does not exist")
    files = [root] if root.is_file() else list(walk_files(root))
    groups: dict[tuple[str, ...], list[DicomInstance]] = {}
    image_files: list[Path] = []
    ignored: list[Path] = []
    for file in files:
        lower = file.name.lower()
        if file is not root and special_file_kind(file) is not None:
            ignored.append(file)  # a FIFO, socket or device: opening it could block forever
            continue
        if image_format(file):
            image_files.append(file)
            continue
        if any(lower.endswith(suffix) for suffix in _NOT_DICOM_SUFFIXES):
            ignored.append(file)
            continue
        instance = read_instance(file)
        if instance is None:
            ignored.append(file)
        else:
            groups.setdefault(_series_key(instance), []).append(instance)
    series = []
    for instances in groups.values():
        folder = Path(os.path.commonpath([str(i.path.parent) for i in instances]))
        info = SeriesInfo(uid=instances[0].series_uid, folder=folder, instances=tuple(instances))
        info.skip_reason = _skip_reason(info)
        series.append(info)
    series.sort(key=lambda s: (str(s.folder), s.number if s.number is not None else 1 << 30, s.uid))
    return Discovery(root=root, series=series, image_files=image_files, ignored=ignored)


def _skip_reason(series: SeriesInfo) -> str | None:
    """Why this series cannot be the CT volume to read, or ``None`` if it can."""
    first = series.first
    if not first.modality and not first.sop_class_uid and not first.series_uid:
        return "not a DICOM image: no Modality, SOPClassUID or SeriesInstanceUID (a damaged or non-DICOM file)"
    modality = first.modality or "(none)"
    if modality != "CT":
        return f"modality {modality} is {_MODALITY_NAMES.get(modality, 'not CT')}"
    sop_classes = {i.sop_class_uid for i in series.instances}
    if any(s.startswith(_SECONDARY_CAPTURE_PREFIX) for s in sop_classes):
        return "secondary capture (a screenshot such as a dose report), not a reconstructed CT"
    if first.is_localizer:
        image_type = "\\".join(first.image_type)
        return f"localizer/scout images (ImageType {image_type})"
    report = _REPORT_TYPES & set(first.image_type)
    if report:
        return f"report or screen capture (ImageType contains {sorted(report)[0]})"
    if sop_classes & _ENHANCED_CT_SOP_CLASSES or any(i.frames > 1 for i in series.instances):
        return "multi-frame (enhanced) CT is not supported: export the series as classic single-frame slices"
    if not first.rows or not first.columns:
        return "no pixel data (no Rows/Columns)"
    if any(i.position is None or i.orientation is None or i.pixel_spacing is None for i in series.instances):
        return "no image geometry (ImagePositionPatient, ImageOrientationPatient or PixelSpacing missing)"
    degenerate = next((i for i in series.instances if _degenerate_orientation(i.orientation)), None)
    if degenerate is not None:
        cosines = ", ".join(f"{v:.4g}" for v in degenerate.orientation or ())
        return (
            f"degenerate ImageOrientationPatient ({cosines}) in {degenerate.path.name}: the row and column "
            "directions must be perpendicular unit vectors"
        )
    if sop_classes - {_CT_IMAGE_SOP_CLASS, ""}:
        return f"SOP class {sorted(sop_classes - {_CT_IMAGE_SOP_CLASS, ''})[0]} is not CT Image Storage"
    if series.n_slices < 2:
        return "single slice: a CT volume needs at least 2 slices"
    return None


def _degenerate_orientation(orientation: Sequence[float] | None) -> bool:
    """Row and column cosines that are not perpendicular unit vectors (to 1e-2: writers round to 5-6 decimals)."""
    if orientation is None:
        return False
    row, column = np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:], dtype=float)
    return bool(
        abs(np.linalg.norm(row) - 1) > 1e-2 or abs(np.linalg.norm(column) - 1) > 1e-2 or abs(row @ column) > 1e-2
    )


def kernel_sharpness(kernel: str) -> int:
    """0 for a soft-tissue reconstruction kernel, 2 for a sharp (lung, bone) one, 1 when unknown.

    Siemens/Toshiba-style names (``B30f``, ``Br38f``, ``I70f``, ``FC08``) are judged by their number (< 50 soft),
    GE/Philips-style names (``STANDARD``, ``LUNG``, ``BONEPLUS``) by their words.
    """
    text = kernel.upper().split("\\")[0]
    if any(word in text for word in _SHARP_KERNEL_WORDS):
        return 2
    if any(word in text for word in _SOFT_KERNEL_WORDS):
        return 0
    match = re.match(r"^[A-Z]{1,2}(\d{2})", text)
    if match:
        if text.startswith("FC"):  # Canon/Toshiba: FC01-FC18 body/soft, FC5x lung/bone
            return 0 if int(match.group(1)) < 30 else 2
        return 0 if int(match.group(1)) < 50 else 2
    return 1


# (what the better series has, key: larger is better)
_RANK_CRITERIA: tuple[tuple[str, Callable[[SeriesInfo], float]], ...] = (
    ("ORIGINAL rather than DERIVED images", lambda s: float(s.is_original)),
    ("more slices", lambda s: float(s.n_slices)),
    ("thinner slice step", lambda s: -round(s.slice_step_mm or math.inf, 3)),
    ("a softer reconstruction kernel", lambda s: -float(kernel_sharpness(s.kernel))),
)


def _rank(series: SeriesInfo) -> tuple[float, ...]:
    return tuple(key(series) for _, key in _RANK_CRITERIA)


def _why_outranked(loser: SeriesInfo, winner: SeriesInfo) -> str:
    for what, key in _RANK_CRITERIA:
        if key(winner) != key(loser):
            detail = {
                "more slices": f" ({winner.n_slices} > {loser.n_slices})",
                "thinner slice step": f" ({winner.slice_step_mm:.3g} < {loser.slice_step_mm:.3g} mm)",
                "a softer reconstruction kernel": f" ({winner.kernel!r} vs {loser.kernel!r})",
            }.get(what, "")
            return f"not chosen: series {winner.uid or winner.folder} has {what}{detail}"
    return "not chosen"


def select_series(found: Discovery, series_uid: str | None = None) -> SeriesInfo:
    """Pick the CT series to read from ``found`` (see the module docstring for the rule) and set the
    ``skip_reason`` of every other series.

    Args:
        found: the result of :func:`find_series`.
        series_uid: read exactly this SeriesInstanceUID instead of ranking.

    Raises:
        InputError: no series is a readable CT volume (the message lists every series and why it was skipped),
            ``series_uid`` is not there or not readable, or the best series are tied.
    """
    if series_uid is not None:
        matches = [s for s in found.series if s.uid == series_uid]
        if not matches:
            known = ", ".join(s.uid or "(none)" for s in found.series) or "none"
            raise InputError(found.root, f"has no series with SeriesInstanceUID {series_uid!r} (found: {known})")
        chosen = matches[0]
        if chosen.skip_reason:
            raise InputError(chosen.folder, f"series {series_uid} cannot be read as CT: {chosen.skip_reason}")
        for other in found.series:
            if other is not chosen and other.skip_reason is None:
                other.skip_reason = f"not chosen: series {series_uid} was asked for"
        return chosen
    eligible = [s for s in found.series if s.skip_reason is None]
    if not eligible:
        if not found.series:
            raise InputError(found.root, _nothing_found_message(found))
        listing = "; ".join(f"{s.label()}: {s.skip_reason}" for s in found.series)
        raise InputError(found.root, f"has no CT image series to read. Skipped: {listing}")
    eligible.sort(key=_rank, reverse=True)
    best = eligible[0]
    tied = [s for s in eligible if _rank(s) == _rank(best)]
    if len(tied) > 1:
        listing = "; ".join(s.label() for s in tied)
        raise InputError(
            found.root,
            f"holds {len(tied)} CT series that no rule tells apart (same image type, slice count, slice step and "
            f"kernel class): {listing}. Name the one to read (series_uid / --series UID) or pass its folder",
        )
    for other in eligible[1:]:
        other.skip_reason = _why_outranked(other, best)
    return best


def _nothing_found_message(found: Discovery) -> str:
    if found.image_files:
        names = ", ".join(p.name for p in found.image_files[:5])
        return f"holds no DICOM series but {len(found.image_files)} image file(s) ({names}): pass one of them"
    if found.ignored:
        names = ", ".join(p.name for p in found.ignored[:5])
        return f"holds no DICOM series or image file ({len(found.ignored)} other file(s), e.g. {names})"
    return "holds no DICOM series or image file (it is empty)"


def instances_in_order(instances: Sequence[DicomInstance]) -> list[DicomInstance]:
    """The instances sorted by InstanceNumber then file name: the order that decides which of two duplicate
    slices is kept."""
    return sorted(instances, key=lambda i: (i.instance_number is None, i.instance_number or 0, str(i.path)))
