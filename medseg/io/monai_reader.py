"""MONAI image reader that reads through :func:`medseg.io.readers.read_scan`.

Use it wherever MONAI loads a scan, so that series choice and the geometry guard apply there too::

    LoadImaged(keys="image", reader=MedsegReader, image_only=False)
    LoadImaged(keys="image", reader=MedsegReader(fix_geometry=True))

The array and metadata are those MONAI's ITKReader gives (array in (x, y, z) index order, ``affine`` and
``original_affine`` in RAS, ``spatial_shape``, ``spacing``, ``original_channel_dim``, ``space``), so Orientationd,
Spacingd, Invertd and SaveImaged work unchanged. Extra keys: ``medseg_series_uid`` ("" for single-file formats),
``medseg_source_format``, ``medseg_repaired`` and ``medseg_warnings`` (one string, lines joined by newlines, so
that batches collate).

Input problems surface as medseg's :class:`~medseg.errors.MedsegError`, not as MONAI's generic "cannot find a
suitable reader": ``LoadImage`` swallows exceptions raised in ``read`` (to try its other readers, which would
bypass the geometry guard) but not those raised in ``get_data``, so ``read`` hands the error on and ``get_data``
raises it. MONAI's ``Compose`` (and ConfigParser, and the engines running a data loader) then wrap it in
``RuntimeError("applying transform ...")``; :func:`unwrap_medseg_error` finds it again, so whoever runs a chain with
this reader can show the one-line error that names the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monai.data import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from medseg.errors import GeometryError, InputError, MedsegError
from medseg.io.geometry import same_grid
from medseg.io.limits import reason
from medseg.io.readers import Scan, read_scan
from medseg.io.series import image_format, is_dicom_file

SERIES_UID_KEY = "medseg_series_uid"
SOURCE_FORMAT_KEY = "medseg_source_format"
WARNINGS_KEY = "medseg_warnings"
REPAIRED_KEY = "medseg_repaired"


@dataclass
class _FailedRead:
    """A read that failed; :meth:`MedsegReader.get_data` raises the error (see the module docstring)."""

    error: MedsegError


class MedsegReader(ImageReader):
    """Read CT scans (DICOM folders, study folders, NIfTI, NRRD, MetaImage) with medseg's checks.

    Args:
        fix_geometry: repair geometry problems instead of refusing them (see :func:`read_scan`).
        series_uid: read this SeriesInstanceUID from a study folder instead of choosing one.
    """

    def __init__(self, fix_geometry: bool = False, series_uid: str | None = None) -> None:
        super().__init__()
        self.fix_geometry = fix_geometry
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> bool:
        """True when every name is a folder, an image file medseg reads, or a DICOM file."""
        return all(_is_supported(Path(name)) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], **kwargs: Any) -> Any:
        """Read each name with :func:`read_scan`: one :class:`Scan`, or a list of them (stacked as channels by
        :meth:`get_data`). ``kwargs`` may override ``fix_geometry`` and ``series_uid``."""
        options = {"fix_geometry": self.fix_geometry, "series_uid": self.series_uid, **kwargs}
        scans: list[Scan] = []
        for name in ensure_tuple(data):
            try:
                scans.append(read_scan(name, fix_geometry=options["fix_geometry"], series_uid=options["series_uid"]))
            except MedsegError as err:
                return _FailedRead(err)
        return scans if len(scans) > 1 else scans[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Array (x, y, z) or, for several scans, (channel, x, y, z), and the metadata of the first scan."""
        if isinstance(img, _FailedRead):
            raise img.error
        scans: tuple[Scan, ...] = ensure_tuple(img)
        arrays = [sitk.GetArrayFromImage(scan.image).T for scan in scans]
        metas = [_meta(scan) for scan in scans]
        first = metas[0]
        for scan in scans[1:]:
            if not same_grid(scan.image, scans[0].image):
                raise GeometryError(scan.path, "cannot be stacked as a channel: its grid differs from the first's")
        if len(arrays) == 1:
            return arrays[0], first
        first[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), first


_TRANSFORM_WRAPPER = re.compile(r"applying transform <(?:\S*\.)?(\w+) object")


def unwrap_medseg_error(exc: BaseException, path: str | os.PathLike[str] | None = None) -> BaseException:
    """The first :class:`MedsegError` in ``exc``'s chain (``exc`` itself, then its ``__cause__`` or
    ``__context__``, and so on), else, when ``path`` is given and ``exc`` is MONAI's ``RuntimeError("applying
    transform <...Spacingd object at 0x...>")`` around another error, an :class:`InputError` naming ``path``, the
    transform and the innermost cause (``Spacingd failed: MemoryError: Unable to allocate 30.0 GiB...``), else
    ``exc`` itself.

    Use it where a transform chain that may hold :class:`MedsegReader` runs::

        try:
            data = preprocessing({"image": path})
        except Exception as err:
            unwrapped = unwrap_medseg_error(err)
            if unwrapped is err:
                raise
            raise unwrapped from err
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, MedsegError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if path is None:
        return exc
    return _transform_failure(exc, path) or exc


def _transform_failure(exc: BaseException, path: str | os.PathLike[str]) -> InputError | None:
    """An :class:`InputError` for MONAI's "applying transform" wrapper chain: the innermost transform's name and
    the innermost cause (the wrappers nest, one per Compose level)."""
    names: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    innermost: BaseException = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        match = _TRANSFORM_WRAPPER.search(str(current))
        if match:
            names.append(match.group(1))
        innermost = current
        current = current.__cause__ or current.__context__
    if not names or innermost is exc:
        return None
    return InputError(path, f"{names[-1]} failed: {type(innermost).__name__}: {reason(innermost)}")


def _meta(scan: Scan) -> dict[str, Any]:
    affine = scan.affine
    return {
        "spacing": np.asarray(scan.image.GetSpacing()),
        MetaKeys.ORIGINAL_AFFINE: affine,
        MetaKeys.AFFINE: affine.copy(),
        MetaKeys.SPACE: SpaceKeys.RAS,
        MetaKeys.SPATIAL_SHAPE: np.asarray(scan.image.GetSize()),
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
        SERIES_UID_KEY: scan.series_uid,
        SOURCE_FORMAT_KEY: scan.source_format,
        REPAIRED_KEY: scan.repaired,
        WARNINGS_KEY: "\n".join(scan.warnings),
    }


def _is_supported(path: Path) -> bool:
    if path.is_dir() or image_format(path):
        return True
    return is_dicom_file(path)
