"""Write to a temporary name beside the target, then rename: a crash or Ctrl-C never leaves half a file."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

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
