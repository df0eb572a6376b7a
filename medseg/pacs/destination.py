"""Where ``medseg serve`` and ``medseg dicomweb`` send results: a DICOM node (C-STORE) or a DICOMweb root
(STOW-RS); the checks of AE titles and ports live here too."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import InputError

# PS3.5 6.2: an AE title is 1-16 characters of the default repertoire, no backslash or control characters.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
_DIMSE = re.compile(r"^(?P<aet>[^@]+)@(?P<host>[^:@]+):(?P<port>[0-9]+)$")


def check_ae_title(value: Any, where: str) -> str:
    """``value`` as an AE title; InputError naming ``where`` when it is not one."""
    text = str(value).strip()
    if not isinstance(value, str) or not _AE_TITLE.match(text) or not text:
        raise InputError(None, f"{where}: {value!r} is not a DICOM AE title (1-16 printable characters, no '\\')")
    return text


def check_port(value: Any, where: str) -> int:
    """``value`` as a TCP port (1-65535); InputError naming ``where`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise InputError(None, f"{where}: {value!r} is not a TCP port number")
    port = int(value)
    if not 0 < port < 65536:
        raise InputError(None, f"{where}: {port} is not a TCP port number (1-65535)")
    return port


@dataclass(frozen=True)
class Destination:
    """Where results are sent: a DICOM node (``ae_title``, ``host``, ``port``) or a DICOMweb root (``url``)."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @classmethod
    def parse(cls, text: str, where: str = "destination") -> Destination:
        """From ``AET@host:port`` or an ``http(s)://`` URL.

        Raises:
            InputError: neither form, or a bad AE title or port.
        """
        text = str(text).strip()
        if text.startswith(("http://", "https://")):
            return cls(url=text.rstrip("/"))
        match = _DIMSE.match(text)
        if match is None:
            raise InputError(None, f"{where}: {text!r} is neither AET@host:port nor an http(s):// DICOMweb URL")
        return cls(check_ae_title(match["aet"], where), match["host"], check_port(match["port"], where))

    def __str__(self) -> str:
        return self.url or f"{self.ae_title}@{self.host}:{self.port}"

    def send(self, files: Sequence[Path], calling_ae_title: str = "MEDSEG") -> None:
        """Send ``files`` (DICOM Part-10 files) here: C-STORE as ``calling_ae_title``, or STOW-RS.

        Raises:
            PacsError: the destination cannot be reached, refuses, or reports a failure for any file.
        """
        if self.url:
            from medseg.pacs.stow import stow_files

            stow_files(self.url, files)
        else:
            from medseg.pacs.scu import send_cstore

            send_cstore(files, self.ae_title, self.host, self.port, calling_ae_title)
