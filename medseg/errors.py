"""The one exception users see: it names the file and says what is wrong with it."""

from __future__ import annotations

import os
import re
from os import PathLike

# C0 and C1 control characters (ESC starts terminal escape sequences), DEL, and Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``): tag values and file names are
    untrusted, and an escape sequence must never reach the user's terminal, nor a newline split a one-line error."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


class MedsegError(Exception):
    """A problem with an input that the user can fix; the CLI prints it without a traceback.

    Args:
        path: the file or folder at fault (``None`` when no single file is).
        problem: what is wrong, quoting the bad value where there is one.
    """

    def __init__(self, path: str | PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        message = f"{self.path}: {problem}" if self.path else problem
        super().__init__(printable(message))

    def __reduce__(self) -> tuple[type[MedsegError], tuple[str | None, str]]:
        # Keeps the error intact when it crosses a process boundary (DataLoader workers, torchrun ranks).
        return (type(self), (self.path, self.problem))


class InputError(MedsegError):
    """The input cannot be read as a CT scan (missing, empty, corrupt, wrong dimensionality, not CT...)."""


class GeometryError(MedsegError):
    """The scan's geometry is unsafe to process as it is (uneven or missing slices, tilt, mixed orientation...)."""


class ManifestError(MedsegError):
    """data_manifest.json or a dataset it names is inconsistent."""


def one_line(err: BaseException) -> str:
    """An exception as one line for a batch summary: a :class:`MedsegError` as it is, an ``OSError`` as ``path:
    reason`` (a writer's temporary named by the file it stands for), anything else as ``Type: message``."""
    if isinstance(err, MedsegError):
        text = str(err)
    elif isinstance(err, OSError) and err.filename:
        from medseg.io.files import TMP_PREFIX

        folder, base = os.path.split(str(err.filename))
        if base.startswith(TMP_PREFIX):  # TMP_PREFIX, 8 hex digits, "-", the final name
            base = base[len(TMP_PREFIX) + 9 :]
        name = os.path.join(folder, base)
        text = f"{name}: {err.strerror or err}"
    else:
        text = f"{type(err).__name__}: {err}"
    return " ".join(text.split()) or type(err).__name__
