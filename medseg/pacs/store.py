"""What ``medseg serve`` received, on disk, grouped by series, and how far each series got.

Layout under the node's storage folder::

    series/<SeriesInstanceUID>/instances/<SOPInstanceUID>.dcm   every instance received, each written atomically
    series/<SeriesInstanceUID>/state.json                       status, study, error, result files (atomic)
    results/<SeriesInstanceUID>/                                medseg's outputs for the series (DICOM SEG, RTSTRUCT)

Folder and file names are UIDs checked by :func:`medseg.pacs.uids.valid_uid` (digits and dots), never other tag
values. A series' status:

``received``     instances arrived; it is segmented once none arrived for the quiet time;
``interrupted``  the association that brought instances was aborted (the sender stopped half-way): the series is
                 held until instances of it arrive again on an association that ends normally;
``segmented``    results written, not yet delivered (the destination failed): sent again later;
``sent``         results delivered;
``failed``       segmentation failed (the error is kept); new instances make it ``received`` again.

Everything is on disk before the sender hears "success", so a crash or restart loses nothing: :meth:`SeriesStore.open`
puts ``received`` series back in the queue with a fresh quiet time and ``segmented`` ones back in the send queue.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medseg.io.files import atomic_path, read_json_object, remove_stale_temporaries
from medseg.pacs.uids import valid_uid

logger = logging.getLogger(__name__)

Status = Literal["received", "interrupted", "segmented", "sent", "failed"]
STATE_FILE = "state.json"


@dataclass
class SeriesState:
    """One series' record (``state.json``) plus what only the running node knows (arrival clock, counter)."""

    series_uid: str
    study_uid: str
    status: Status = "received"
    error: str = ""
    results: list[str] = field(default_factory=list)
    last_arrival: float = 0.0  # time.monotonic() of the last instance; not saved
    arrivals: int = 0  # instances received by this process; not saved
    next_send: float = 0.0  # time.monotonic() before which no new send is tried; not saved

    def to_json(self) -> dict[str, Any]:
        return {
            "series_uid": self.series_uid,
            "study_uid": self.study_uid,
            "status": self.status,
            "error": self.error,
            "results": self.results,
        }


class SeriesStore:
    """The node's storage folder (see the module notes); thread-safe (C-STORE handlers run in their own threads)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.series_root = self.root / "series"
        self.results_root = self.root / "results"
        self._lock = threading.Lock()
        self._states: dict[str, SeriesState] = {}

    @classmethod
    def open(cls, root: str | Path) -> SeriesStore:
        """Open (create) the storage folder: remove temporaries a crash left, reload every series' state; series
        that were ``received`` get a fresh quiet time from now."""
        store = cls(Path(root))
        store.series_root.mkdir(parents=True, exist_ok=True)
        store.results_root.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(store.root):
            logger.info("removed a temporary left by an interrupted run: %s", stale)
        now = time.monotonic()
        for folder in sorted(store.series_root.iterdir()):
            uid = valid_uid(folder.name)
            if uid is None or not folder.is_dir():
                continue
            try:
                saved = read_json_object(folder / STATE_FILE, "the series state")
                state = SeriesState(
                    uid, str(saved.get("study_uid", "")), saved.get("status", "received"), str(saved.get("error", ""))
                )
                state.results = [str(name) for name in saved.get("results", [])]
            except Exception as err:  # a missing or damaged state: the instances are there, redo the series
                logger.warning("%s: %s; the series is segmented again", folder, err)
                state = SeriesState(uid, "")
            if state.status not in ("received", "interrupted", "segmented", "sent", "failed"):
                state.status = "received"
            state.last_arrival = now
            store._states[uid] = state
            if state.status in ("received", "segmented", "interrupted"):
                logger.info("resuming series %s (%s, %d instances)", uid, state.status, store.instance_count(uid))
        return store

    def instances_dir(self, series_uid: str) -> Path:
        return self.series_root / series_uid / "instances"

    def results_dir(self, series_uid: str) -> Path:
        return self.results_root / series_uid

    def instance_count(self, series_uid: str) -> int:
        folder = self.instances_dir(series_uid)
        return sum(1 for _ in folder.glob("*.dcm")) if folder.is_dir() else 0

    def add_instance(self, study_uid: str, series_uid: str, sop_uid: str, encoded: bytes) -> None:
        """Write one received instance (its Part-10 bytes) atomically and mark its series ``received`` (also when
        it was done: a series that grows is segmented again). The UIDs must be valid (:func:`valid_uid`)."""
        for uid in (study_uid, series_uid, sop_uid):
            if valid_uid(uid) != uid:
                raise ValueError(f"not a valid UID: {uid!r}")
        target = self.instances_dir(series_uid) / f"{sop_uid}.dcm"
        with atomic_path(target) as tmp:
            tmp.write_bytes(encoded)
        with self._lock:
            state = self._states.get(series_uid)
            if state is None:
                state = self._states[series_uid] = SeriesState(series_uid, study_uid)
                self._save(state)
            elif state.status not in ("received", "interrupted"):
                state.status, state.error = "received", ""
                self._save(state)
            state.last_arrival = time.monotonic()
            state.arrivals += 1

    def mark_interrupted(self, series_uids: set[str]) -> None:
        """The association that brought these series' instances was aborted: hold them."""
        with self._lock:
            for uid in series_uids:
                state = self._states.get(uid)
                if state is not None and state.status == "received":
                    state.status = "interrupted"
                    self._save(state)
                    logger.warning("series %s: the sender stopped half-way; held until it is sent again", uid)

    def mark_delivered(self, series_uids: set[str]) -> None:
        """An association that brought these series' instances ended normally: release held ones."""
        with self._lock:
            for uid in series_uids:
                state = self._states.get(uid)
                if state is not None and state.status == "interrupted":
                    state.status = "received"
                    state.last_arrival = time.monotonic()
                    self._save(state)

    def due_for_segmentation(self, quiet_seconds: float) -> list[SeriesState]:
        """``received`` series with no instance for ``quiet_seconds``, oldest first (copies)."""
        now = time.monotonic()
        with self._lock:
            due = [s for s in self._states.values() if s.status == "received" and now - s.last_arrival >= quiet_seconds]
            return [SeriesState(**vars(s)) for s in sorted(due, key=lambda s: s.last_arrival)]

    def due_for_sending(self) -> list[SeriesState]:
        """``segmented`` series whose next send time has come (copies)."""
        now = time.monotonic()
        with self._lock:
            return [
                SeriesState(**vars(s)) for s in self._states.values() if s.status == "segmented" and now >= s.next_send
            ]

    def state(self, series_uid: str) -> SeriesState | None:
        """A copy of the series' state."""
        with self._lock:
            state = self._states.get(series_uid)
            return None if state is None else SeriesState(**vars(state))

    def states(self) -> list[SeriesState]:
        """Copies of every series' state."""
        with self._lock:
            return [SeriesState(**vars(s)) for s in self._states.values()]

    def finish(
        self, series_uid: str, arrivals_before: int, status: Status, error: str = "", results: list[str] | None = None
    ) -> bool:
        """Record the outcome of segmenting a series; ignored (False) when instances arrived meanwhile (the series
        stays ``received`` and is segmented again)."""
        with self._lock:
            state = self._states[series_uid]
            if state.arrivals != arrivals_before or state.status != "received":
                return False
            state.status, state.error = status, error
            state.results = list(results or [])
            self._save(state)
            return True

    def sent(self, series_uid: str, ok: bool, error: str = "", retry_seconds: float = 0.0) -> None:
        """Record a send: ``sent``, or stay ``segmented`` and try again after ``retry_seconds``."""
        with self._lock:
            state = self._states[series_uid]
            if state.status != "segmented":
                return
            if ok:
                state.status, state.error = "sent", ""
            else:
                state.error = error
                state.next_send = time.monotonic() + retry_seconds
            self._save(state)

    def _save(self, state: SeriesState) -> None:
        path = self.series_root / state.series_uid / STATE_FILE
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(state.to_json(), indent=1))
