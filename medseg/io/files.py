"""Files medseg writes and the JSON files it reads, safely.

- Writing: to a temporary name beside the target, then rename (:func:`atomic_path`): a crash or Ctrl-C never leaves
  half a file; :func:`probe_writable` meets an unwritable folder before any work is done.
- Reading a JSON file that must hold an object (:func:`read_json_object`), with one-line errors that name the file
  and the problem.
- Where a case's outputs go: ``<output_root>/<case_id>/`` (:func:`case_output_dir`), with the case id checked before
  it touches a path (:func:`check_case_id`). Case ids come from folder names and DICOM attributes (PatientID,
  SeriesDescription...), which can hold anything. An id is refused, not silently rewritten, when it could escape the
  output folder or be unusable on a common file system (Linux, macOS, Windows/SMB shares): two different ids must
  never land in the same folder. Turn free text into an id first with a sanitiser such as
  :func:`medseg.io.series.safe_name`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medseg.errors import InputError, MedsegError

TMP_PREFIX = ".medseg-tmp-"

# Room for the longest suffix we add ("_seg.nii.gz", "_quicklook.png") and atomic_path's temporary prefix
# (".medseg-tmp-xxxxxxxx-") within the 255-byte file-name limit of ext4, APFS and NTFS.
MAX_CASE_ID_BYTES = 128
# Characters Windows refuses in names, plus both separators.
_FORBIDDEN = set('<>:"/\\|?*')
# Windows device names, refused even with an extension ("CON.txt" is the console too).
_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?$", re.IGNORECASE)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``final``'s folder with the same file name ending; rename it onto ``final``
    when the block succeeds, remove it when the block raises.

    The temporary name keeps the full suffix (``.nii.gz``, ``.seg.nrrd``) so writers that pick a format from the
    name still do the right thing. Works for folders too (the block creates the folder at the yielded path).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}"
    try:
        yield tmp
        if tmp.is_dir() and final.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries a killed run left in ``folder`` (recursively); return what was removed."""
    removed = []
    for path in sorted(Path(folder).rglob(f"{TMP_PREFIX}*")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        removed.append(path)
    return removed


def probe_writable(folder: str | os.PathLike[str]) -> None:
    """Create and remove an empty temporary in ``folder``: raises the ``OSError`` a writer would meet there
    (read-only or immutable folder, no permission, full or read-only file system), before any work is done."""
    probe = Path(folder) / f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-probe"
    probe.write_bytes(b"")
    probe.unlink()


# JSON's own names for what a file holds instead of an object.
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false"}


def read_json_object(
    path: str | os.PathLike[str],
    what: str,
    error: type[MedsegError] = InputError,
    *,
    not_found: str | None = None,
) -> dict[str, Any]:
    """The JSON object in ``path``.

    Args:
        what: what the file is, for the messages (``"the manifest"``, ``"the bundle metadata"``).
        error: the :class:`MedsegError` subclass to raise.
        not_found: the problem to report when the file does not exist (default: the "cannot read" message).

    Raises:
        error: ``path: cannot read <what> as JSON: <reason>`` when the file is missing, unreadable, not UTF-8 or not
            JSON; ``path: <what> must be a JSON object, got an array`` (or a string...) when it holds no object.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(path, not_found or f"cannot read {what} as JSON: {err.strerror or err}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(path, f"cannot read {what} as JSON: {err}") from err
    if not isinstance(value, dict):
        raise error(path, f"{what} must be a JSON object, got {_JSON_KINDS.get(type(value), 'null')}")
    return value


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
