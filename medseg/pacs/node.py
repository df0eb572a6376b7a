"""``medseg serve``: a DICOM node that receives CT series, segments each once it is complete, and sends the DICOM SEG
and RTSTRUCT on.

* **Receive** (C-STORE SCP, pynetdicom): associations are accepted only from the configured calling AE titles and
  only when they call this node's AE title; every instance is written atomically to the
  :class:`~medseg.pacs.store.SeriesStore` before the sender is told "success". Storage instances that are not CT
  images (an RTSTRUCT or SEG a PACS forwards with the study) are acknowledged and ignored.
* **Complete**: a series is segmented when no instance of it arrived for ``quiet_seconds``. A series whose
  association was aborted (the sender stopped half-way) is held until it is sent again (see the store).
* **Segment** with the one :class:`~medseg.inference.Segmenter` the node was given (the model is loaded once), through
  the batch's own case function (:class:`medseg.inference.batch.BatchSegmenter`), writing only DICOM SEG and RTSTRUCT.
* **Send** the results to the destination (C-STORE with SEG and RTSTRUCT presentation contexts, or STOW-RS); when it
  fails the results stay on disk and are sent again every ``retry_seconds``.

One thread segments and sends (:meth:`DicomNode.serve_forever` or :meth:`DicomNode.poll`); pynetdicom's threads
receive meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import StoragePresentationContexts

from medseg.pacs.config import NodeConfig
from medseg.pacs.store import SeriesStore
from medseg.pacs.uids import valid_uid
from medseg.pacs.worker import SeriesWorker

if TYPE_CHECKING:
    from pynetdicom.transport import ThreadedAssociationServer

    from medseg.inference.segmenter import Segmenter

logger = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
SEGMENTED_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE})
# C-STORE statuses (PS3.4 B.2.3).
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000


@dataclass
class _Association:
    series: set[str] = field(default_factory=set)
    released: bool = False


class DicomNode:
    """A running ``medseg serve`` (see the module notes).

    Args:
        config: AE title, address, allowed callers, storage folder, quiet time, destination.
        segmenter: the loaded model.
    """

    def __init__(self, config: NodeConfig, segmenter: Segmenter) -> None:
        config.require_callers()
        self.config = config
        self.segmenter = segmenter
        self.store = SeriesStore.open(config.storage)
        self.worker = SeriesWorker(segmenter, self.store)
        self._calling = config.calling_ae_title or config.ae_title
        self._server: ThreadedAssociationServer | None = None
        self._associations: dict[int, _Association] = {}
        self._lock = threading.Lock()

    # -- receiving ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on the configured address (returns at once; pynetdicom's threads serve the associations)."""
        ae = AE(ae_title=self.config.ae_title)
        ae.require_calling_aet = list(self.config.allowed_callers)
        ae.require_called_aet = True
        ae.maximum_associations = 16
        ae.add_supported_context(VERIFICATION)
        for context in StoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        address = (self.config.host, self.config.port)
        self._server = ae.start_server(address, block=False, evt_handlers=handlers)
        logger.info(
            "%s listening on %s:%d, accepting %s",
            self.config.ae_title,
            *address,
            ", ".join(self.config.allowed_callers),
        )

    @property
    def port(self) -> int:
        """The port listened on (the configured one, or the one the system chose for port 0)."""
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop listening (associations in progress are closed)."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _association(self, event: Any) -> _Association:
        with self._lock:
            return self._associations.setdefault(id(event.assoc), _Association())

    def _on_store(self, event: Any) -> int:
        try:
            dataset = event.dataset
            sop_class = str(event.request.AffectedSOPClassUID)
            if sop_class not in SEGMENTED_SOP_CLASSES:
                logger.info("ignored an instance of SOP class %s (medseg segments CT images)", sop_class)
                return _SUCCESS
            uids = [valid_uid(dataset.get(key)) for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
        except Exception as err:
            logger.warning("refused an instance from %s: cannot decode it: %s", event.assoc.requestor.ae_title, err)
            return _CANNOT_UNDERSTAND
        study, series, sop = uids
        if study is None or series is None or sop is None:
            logger.warning(
                "refused an instance from %s: missing or malformed Study/Series/SOP Instance UID",
                event.assoc.requestor.ae_title,
            )
            return _CANNOT_UNDERSTAND
        try:
            self.store.add_instance(study, series, sop, event.encoded_dataset())
        except OSError as err:
            logger.error("could not store instance %s of series %s: %s", sop, series, err)
            return _OUT_OF_RESOURCES
        self._association(event).series.add(series)
        return _SUCCESS

    def _on_released(self, event: Any) -> None:
        self._association(event).released = True

    def _on_close(self, event: Any) -> None:
        with self._lock:
            association = self._associations.pop(id(event.assoc), None)
        if association is None or not association.series:
            return
        if association.released:
            self.store.mark_delivered(association.series)
        else:
            self.store.mark_interrupted(association.series)

    # -- segmenting and sending --------------------------------------------------------------------------------

    def poll(self) -> int:
        """Segment every series that is complete and send every result that is due; the number of actions."""
        done = 0
        for state in self.store.due_for_segmentation(self.config.quiet_seconds):
            done += 1
            if self.worker.segment(state.series_uid):
                self.worker.send(state.series_uid, self.config.destination, self._calling, self.config.retry_seconds)
        for state in self.store.due_for_sending():
            done += 1
            self.worker.send(state.series_uid, self.config.destination, self._calling, self.config.retry_seconds)
        return done

    def serve_forever(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Listen, and segment and send until ``stop`` is set; then stop listening."""
        if self._server is None:
            self.start()
        try:
            while not stop.is_set():
                if not self.poll():
                    stop.wait(interval)
        finally:
            self.stop()
