"""Send DICOM files to a DICOM node with C-STORE (pynetdicom), one association for all of them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pynetdicom import AE

from medseg.pacs.errors import PacsError

logger = logging.getLogger(__name__)

# What medseg sends; presentation contexts are proposed for these whatever the files hold.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RESULT_SOP_CLASSES = (SEGMENTATION_STORAGE, RT_STRUCTURE_SET_STORAGE)
_LITTLE_ENDIAN = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
TIMEOUT_SECONDS = 30.0


def send_cstore(
    files: Sequence[Path],
    ae_title: str,
    host: str,
    port: int,
    calling_ae_title: str = "MEDSEG",
    timeout: float = TIMEOUT_SECONDS,
) -> None:
    """C-STORE every file of ``files`` to ``ae_title@host:port``, calling as ``calling_ae_title``.

    Presentation contexts: DICOM SEG and RTSTRUCT storage, plus each file's own SOP class, in the file's transfer
    syntax and both little-endian ones.

    Raises:
        PacsError: the association is rejected or cannot be made, a file's SOP class was not accepted, a C-STORE
            fails or gets no answer, or the connection drops; nothing is retried here.
    """
    peer = f"{ae_title}@{host}:{port}"
    headers = [(Path(path), pydicom.dcmread(path, stop_before_pixels=True)) for path in files]
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    contexts: dict[str, set[str]] = {uid: set(_LITTLE_ENDIAN) for uid in RESULT_SOP_CLASSES}
    for _, header in headers:
        contexts.setdefault(header.SOPClassUID, set(_LITTLE_ENDIAN)).add(header.file_meta.TransferSyntaxUID)
    for sop_class, syntaxes in contexts.items():
        ae.add_requested_context(sop_class, sorted(syntaxes))
    assoc = ae.associate(host, port, ae_title=ae_title)
    if not assoc.is_established:
        reason = "rejected the association" if assoc.is_rejected else "could not be reached or did not answer"
        raise PacsError(peer, f"{reason} (calling AE title {calling_ae_title})")
    try:
        for path, _ in headers:
            try:
                status = assoc.send_c_store(path)
            except ValueError as err:  # no accepted presentation context for the file
                raise PacsError(path, f"{peer} accepted no presentation context for it: {err}") from err
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError(path, f"{peer} did not answer the C-STORE (connection lost or timed out)")
            if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:  # success, or a warning
                raise PacsError(path, f"{peer} refused it: C-STORE status 0x{code:04X}")
            logger.info("sent %s to %s", path.name, peer)
    finally:
        if assoc.is_established:
            assoc.release()
