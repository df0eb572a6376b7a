"""Files medseg writes and the JSON files it reads, safely.

- Writing: to a temporary name beside the target, then rename (:func:`atomic_path`): a crash or Ctrl-C never leaves
  half a file; :func:`probe_writable` meets an unwritable folder before any work is done.
- Reading a JSON file that must hold an object (:func:`read_json_object`), with one-line errors that name the file
  and the problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medseg.errors import InputError, MedsegError

TMP_PREFIX = ".medseg-tmp-"


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
