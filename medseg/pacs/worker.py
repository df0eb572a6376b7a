"""Segment one stored series and send its results: what ``medseg serve`` and ``medseg dicomweb`` both do once a
series is on disk in a :class:`~medseg.pacs.store.SeriesStore`.

Segmentation is the batch's own case function (:meth:`medseg.inference.batch.BatchSegmenter.run_case`) with the
one loaded :class:`~medseg.inference.Segmenter`, writing DICOM SEG and RTSTRUCT into ``results/<SeriesInstanceUID>/``
(with its ``case.json``); nothing about segmentation is done here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from medseg.pacs.destination import Destination
from medseg.pacs.errors import PacsError
from medseg.pacs.store import SeriesStore, Status

if TYPE_CHECKING:
    from medseg.inference.batch import BatchSegmenter
    from medseg.inference.segmenter import Segmenter

logger = logging.getLogger(__name__)

RESULT_FORMATS = ("dicom-seg", "rtstruct")


class SeriesWorker:
    """Segments series of ``store`` with ``segmenter`` and sends the results (see the module notes)."""

    def __init__(self, segmenter: Segmenter, store: SeriesStore) -> None:
        self.segmenter = segmenter
        self.store = store
        self._batch: BatchSegmenter | None = None

    def _batch_segmenter(self) -> BatchSegmenter:
        if self._batch is None:
            from medseg.inference.batch import BatchSegmenter

            self._batch = BatchSegmenter(
                self.segmenter,
                self.store.results_root,
                formats=RESULT_FORMATS,
                overwrite=True,
                progress=False,
                echo=logger.info,
            )
        return self._batch

    def segment(self, series_uid: str) -> bool:
        """Segment one ``received`` series now; True when its results were written (status ``segmented``); a
        failure is recorded in the series' state with its one-line error."""
        from medseg.inference.cases import Case

        state = self.store.state(series_uid)
        if state is None:
            raise KeyError(series_uid)
        arrivals = state.arrivals
        logger.info("segmenting series %s (%d instances)", series_uid, self.store.instance_count(series_uid))
        start = time.perf_counter()
        record = self._batch_segmenter().run_case(Case(series_uid, self.store.instances_dir(series_uid)))
        results = [name for name in record.outputs if name.endswith(".dcm")]
        status: Status
        if record.status != "ok":
            status, error = "failed", record.error or "segmentation failed"
        elif not results:
            status, error = "failed", "; ".join(record.warnings) or "no DICOM SEG or RTSTRUCT could be written"
        else:
            status, error = "segmented", ""
        if not self.store.finish(series_uid, arrivals, status, error, results):
            logger.info("series %s: instances arrived while it was segmented; it is segmented again", series_uid)
            return False
        seconds = time.perf_counter() - start
        if status == "failed":
            logger.error("series %s failed after %.1f s: %s", series_uid, seconds, error)
            return False
        logger.info("series %s segmented in %.1f s: %s", series_uid, seconds, ", ".join(results))
        return True

    def send(
        self, series_uid: str, destination: Destination | None, calling_ae_title: str, retry_seconds: float = 0.0
    ) -> bool:
        """Send a ``segmented`` series' results to ``destination``; True when delivered. A failure is logged and
        recorded (the series stays ``segmented``, to be sent again after ``retry_seconds``)."""
        state = self.store.state(series_uid)
        if state is None or state.status != "segmented":
            return False
        if destination is None:
            logger.info(
                "series %s: results kept in %s (no destination)", series_uid, self.store.results_dir(series_uid)
            )
            self.store.sent(series_uid, True)
            return True
        files = [self.store.results_root / name for name in state.results]
        try:
            destination.send(files, calling_ae_title)
        except (PacsError, OSError) as err:
            logger.warning(
                "series %s: sending to %s failed, next try in %.0f s: %s", series_uid, destination, retry_seconds, err
            )
            self.store.sent(series_uid, False, str(err), retry_seconds)
            return False
        self.store.sent(series_uid, True)
        logger.info("series %s: results sent to %s", series_uid, destination)
        return True
