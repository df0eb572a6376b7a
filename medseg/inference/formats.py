"""The output formats of ``medseg segment --formats``, apart from the writers so that the command line reads them
without importing torch (:mod:`medseg.inference.outputs` writes them)."""

from __future__ import annotations

from collections.abc import Sequence

from medseg.errors import InputError

FORMATS: tuple[str, ...] = ("nifti", "seg.nrrd", "ctbl", "dicom-seg", "rtstruct", "png")
DICOM_FORMATS = frozenset({"dicom-seg", "rtstruct"})


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Formats from a comma list (``"nifti,seg.nrrd"``) or a sequence; ``None``/``"all"``: every format (DICOM
    ones apply to DICOM input only). Order follows :data:`FORMATS`.

    Raises:
        InputError: an unknown format name, or an empty list.
    """
    if text is None:
        return FORMATS
    items = [item.strip().lower() for item in (text.split(",") if isinstance(text, str) else text)]
    items = [item for item in items if item]
    if items == ["all"]:
        return FORMATS
    unknown = sorted(set(items) - set(FORMATS))
    if unknown:
        raise InputError(None, f"unknown output format(s) {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    if not items:
        raise InputError(None, "--formats lists no format")
    return tuple(fmt for fmt in FORMATS if fmt in items)


def means_all(text: str | Sequence[str] | None) -> bool:
    """True when ``text`` asks for every format where it applies (``None`` or ``"all"``): the DICOM formats are
    then expected of DICOM input only. A list naming formats asks for each of them, whatever the input."""
    if text is None:
        return True
    items = [item.strip().lower() for item in (text.split(",") if isinstance(text, str) else text)]
    return [item for item in items if item] == ["all"]
