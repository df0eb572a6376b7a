"""``medseg dicomweb``: pull a study from a DICOMweb server (QIDO-RS, WADO-RS), segment its CT series, push the
DICOM SEG and RTSTRUCT back with STOW-RS (dicomweb-client).

The instances go into a :class:`~medseg.pacs.store.SeriesStore` (atomic files named by checked UIDs) and each CT
series is segmented and sent by the same :class:`~medseg.pacs.worker.SeriesWorker` as ``medseg serve`` uses. A
series whose retrieval fails half-way is not segmented; the other series of the study go on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from medseg.pacs.destination import Destination
from medseg.pacs.errors import PacsError, request_problem
from medseg.pacs.store import SeriesStore
from medseg.pacs.uids import valid_uid
from medseg.pacs.worker import SeriesWorker

if TYPE_CHECKING:
    from medseg.inference.segmenter import Segmenter

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass
class StudyResult:
    """What became of each CT series of a study: ``series`` maps its UID to ``sent``, ``segmented`` (results kept,
    the push failed), or ``failed``, and ``errors`` the one-line reason of everything not ``sent``."""

    study_uid: str
    series: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.series) and all(status == "sent" for status in self.series.values())


def _part10_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
    return buffer.getvalue()


def _ct_series(client: DICOMwebClient, url: str, study_uid: str) -> list[str]:
    try:
        found = client.search_for_series(study_instance_uid=study_uid)
    except requests.RequestException as err:
        raise PacsError(
            url, f"QIDO-RS search for the series of study {study_uid} failed: {request_problem(err)}"
        ) from err
    uids = []
    for item in found:
        modality = item.get("00080060", {}).get("Value", [""])[0]
        uid = valid_uid(item.get("0020000E", {}).get("Value", [""])[0])
        if uid is not None and modality == "CT":
            uids.append(uid)
    if not found:
        raise PacsError(url, f"has no study {study_uid}")
    return uids


def segment_dicomweb_study(
    url: str,
    study_uid: str,
    segmenter: Segmenter,
    storage: str | Path,
    destination: Destination | None = None,
    client: DICOMwebClient | None = None,
) -> StudyResult:
    """Pull study ``study_uid`` from the DICOMweb root ``url``, segment each CT series, STOW-RS the results to
    ``destination`` (default: the same server).

    Args:
        storage: folder for the retrieved instances and the results (a :class:`SeriesStore`).

    Raises:
        PacsError: the server cannot be searched, or the study is unknown or holds no CT series. Problems with a
            single series (a retrieval cut short, a scan medseg refuses, a failed push) are in the result.
    """
    study = valid_uid(study_uid)
    if study is None:
        raise PacsError(url, f"{study_uid!r} is not a DICOM UID")
    client = client or DICOMwebClient(url=url)
    destination = destination or Destination(url=url.rstrip("/"))
    series_uids = _ct_series(client, url, study)
    if not series_uids:
        raise PacsError(url, f"study {study} holds no CT series")
    store = SeriesStore.open(storage)
    worker = SeriesWorker(segmenter, store)
    result = StudyResult(study)
    for series_uid in series_uids:
        try:
            instances = client.retrieve_series(study, series_uid)
            for dataset in instances:
                sop = valid_uid(dataset.get("SOPInstanceUID"))
                if str(dataset.get("SOPClassUID", "")) != CT_IMAGE_STORAGE or sop is None:
                    continue
                store.add_instance(study, series_uid, sop, _part10_bytes(dataset))
        except (requests.RequestException, ValueError, OSError) as err:
            result.series[series_uid] = "failed"
            result.errors[series_uid] = f"WADO-RS retrieval failed: {request_problem(err)}"
            logger.error("series %s: %s", series_uid, result.errors[series_uid])
            continue
        logger.info("series %s: %d instance(s) retrieved", series_uid, len(instances))
        if store.state(series_uid) is None:
            result.series[series_uid] = "failed"
            result.errors[series_uid] = (
                f"none of its {len(instances)} instance(s) is a CT image (SOP class {CT_IMAGE_STORAGE}) with a UID"
            )
            logger.error("series %s: %s", series_uid, result.errors[series_uid])
            continue
        if worker.segment(series_uid):
            worker.send(series_uid, destination, calling_ae_title="MEDSEG")
        state = store.state(series_uid)
        result.series[series_uid] = state.status if state is not None else "failed"
        if state is not None and state.error:
            result.errors[series_uid] = state.error
    return result
