"""DICOM UIDs checked before they name anything on disk: tag values are untrusted."""

from __future__ import annotations

import re

# PS3.5 9.1: digits in dot-separated components, at most 64 characters (leading zeros, which some scanners write,
# are let through: they are harmless in a file name).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def valid_uid(value: object) -> str | None:
    """``value`` as a UID string when it is a well-formed DICOM UID (so also a safe file name), else ``None``."""
    text = str(value).strip() if value is not None else ""
    return text if 0 < len(text) <= 64 and _UID.match(text) else None
