"""The error of a DICOM network exchange: a peer that refuses, cannot be reached, or answers with a failure."""

from __future__ import annotations

from medseg.errors import MedsegError


class PacsError(MedsegError):
    """A DICOM or DICOMweb peer refused, could not be reached, or reported a failure; ``path`` names the peer
    (``AET@host:port`` or the URL) or the file that was being sent."""
