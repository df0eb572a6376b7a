"""The error of a DICOM network exchange: a peer that refuses, cannot be reached, or answers with a failure."""

from __future__ import annotations

import re

from medseg.errors import MedsegError


class PacsError(MedsegError):
    """A DICOM or DICOMweb peer refused, could not be reached, or reported a failure; ``path`` names the peer
    (``AET@host:port`` or the URL) or the file that was being sent."""


def request_problem(err: Exception) -> str:
    """A failed HTTP request (requests / dicomweb-client) as a short phrase: the HTTP status, "could not be
    reached (Connection refused)", "no answer in time", never a repr with memory addresses."""
    import requests

    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason or ''}".strip()
    if isinstance(err, requests.Timeout):
        return "no answer in time"
    if isinstance(err, requests.ConnectionError):
        cause = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
        return "could not be reached" + (f" ({cause.group(1).strip()})" if cause else "")
    text = re.sub(r"<[^<>]* object at 0x[0-9a-fA-F]+>", "", str(err)).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
