"""Where a case's outputs go: ``<output_root>/<case_id>/``, with the case id checked before it touches a path.

Case ids come from folder names and DICOM attributes (PatientID, SeriesDescription...), which can hold anything.
An id is refused, not silently rewritten, when it could escape the output folder or be unusable on a common file
system (Linux, macOS, Windows/SMB shares): two different ids must never land in the same folder. Turn free text
into an id first with a sanitiser such as ``medseg.io.series.safe_name``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from medseg.errors import InputError

# Room for the longest suffix we add ("_seg.nii.gz", "_quicklook.png") and atomic_path's temporary prefix
# (".medseg-tmp-xxxxxxxx-") within the 255-byte file-name limit of ext4, APFS and NTFS.
MAX_CASE_ID_BYTES = 128
# Characters Windows refuses in names, plus both separators.
_FORBIDDEN = set('<>:"/\\|?*')
# Windows device names, refused even with an extension ("CON.txt" is the console too).
_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.IGNORECASE)


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` unchanged if it is safe as one folder/file-name component; raise otherwise.

    Refused: empty or all-blank; ``.`` and ``..``; path separators (so no ``../x``) and the characters
    Windows forbids (``<>:"/\\|?*``); control and other non-printable characters (NUL, newline, DEL, bidi
    overrides); leading or trailing blanks or a trailing dot (Windows strips them); a leading ``-`` (reads as an
    option on command lines); Windows device names (``CON``, ``nul.txt``...); more than 128 UTF-8 bytes.

    Raises:
        InputError: quoting the id and the reason.
    """
    if not isinstance(case_id, str):
        raise InputError(None, f"case id {case_id!r} is not a string")
    reason = _problem(case_id)
    if reason:
        raise InputError(None, f"unsafe case id {case_id!r}: {reason}")
    return case_id


def _problem(case_id: str) -> str | None:
    if not case_id.strip():
        return "it is empty"
    if case_id in {".", ".."}:
        return "it is '.' or '..'"
    bad = sorted({c for c in case_id if c in _FORBIDDEN})
    if bad:
        return f"it contains {''.join(bad)!r} (path separators and characters Windows forbids)"
    # Cc = control (NUL, newline, DEL), Cf = format (bidi overrides, zero-width), Cs/Co/Cn = surrogate/private/none.
    odd = [c for c in case_id if unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co", "Cn"}]
    if odd:
        return f"it contains non-printable characters {''.join(odd)!r}"
    if case_id != case_id.strip() or case_id.endswith("."):
        return "it starts or ends with a blank, or ends with '.'"
    if case_id.startswith("-"):
        return "it starts with '-'"
    if _RESERVED.match(case_id):
        return "it is a Windows device name"
    if len(case_id.encode("utf-8")) > MAX_CASE_ID_BYTES:
        return f"it is longer than {MAX_CASE_ID_BYTES} bytes"
    return None


def case_output_dir(output_root: str | os.PathLike[str], case_id: str) -> Path:
    """The folder for one case's outputs, ``output_root / case_id`` (not created here; writers create it).

    Raises:
        InputError: if ``case_id`` is unsafe (see :func:`check_case_id`), or the folder would resolve outside
            ``output_root`` (for example through a symbolic link already there).
    """
    root = Path(output_root)
    folder = root / check_case_id(case_id)
    resolved_root = root.resolve()
    if not folder.resolve().is_relative_to(resolved_root) or folder.resolve() == resolved_root:
        raise InputError(folder, f"case folder for {case_id!r} resolves outside the output folder {resolved_root}")
    return folder
