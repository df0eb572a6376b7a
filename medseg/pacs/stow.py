"""Send DICOM files to a DICOMweb server with STOW-RS (dicomweb-client)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from medseg.pacs.errors import PacsError, request_problem

logger = logging.getLogger(__name__)


def stow_files(url: str, files: Sequence[Path], client: DICOMwebClient | None = None) -> None:
    """STOW-RS ``files`` to the DICOMweb root ``url`` in one request.

    Raises:
        PacsError: the server cannot be reached, answers with an HTTP error, or lists a file as failed.
    """
    if not files:
        return
    client = client or DICOMwebClient(url=url)
    datasets = [pydicom.dcmread(path) for path in files]
    try:
        response = client.store_instances(datasets=datasets)
    except requests.RequestException as err:
        raise PacsError(url, f"STOW-RS failed: {request_problem(err)}") from err
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        raise PacsError(url, f"STOW-RS refused {len(failed)} of {len(files)} instance(s)")
    logger.info("stored %d instance(s) at %s", len(files), url)
