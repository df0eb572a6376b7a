"""``medseg serve`` against a real Orthanc: a CT study forwarded by Orthanc comes back as DICOM SEG + RTSTRUCT in the
same study, with the file-based masks; unknown callers are refused; Orthanc stopped while the node sends, a sender
that stops half-way and a node restart lose nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from medseg.inference.segmenter import Segmenter
from medseg.pacs.destination import Destination
from tests.pacs.conftest import NODE_AET, RunningNode
from tests.pacs.helpers import assert_results_match, file_based_results, orthanc_objects
from tests.pacs.orthanc import Orthanc

pytestmark = pytest.mark.data
# Seconds to wait for a result: a case of the small model takes about a second, but a loaded 2-core CPU can stretch
# it to minutes.
TIMEOUT = 600.0


def _to_orthanc(orthanc: Orthanc) -> Destination:
    return Destination(Orthanc.ae_title, "127.0.0.1", orthanc.dicom_port)


def _forward(orthanc: Orthanc, study: str) -> None:
    """Orthanc sends the study to the node (as a PACS routes a study to an AI node)."""
    orthanc.post("/modalities/medseg/store", {"Resources": [study], "Synchronous": True})


def _wait_status(running: RunningNode, status: str, timeout: float = TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = running.node.store.states()
        if states and all(s.status == status for s in states):
            return states[0].series_uid
        time.sleep(0.1)
    raise AssertionError(f"series states {[(s.status, s.error) for s in running.node.store.states()]}, not {status}")


def _send(files: list[Path], port: int, calling: str = "CT01", abort_after: int | None = None) -> list[int]:
    """C-STORE ``files`` to the node as ``calling``; with ``abort_after``, abort the association after that many."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AET)
    if not assoc.is_established:
        return []
    statuses = []
    for index, path in enumerate(files):
        if abort_after is not None and index == abort_after:
            assoc.abort()
            return statuses
        statuses.append(int(assoc.send_c_store(pydicom.dcmread(path)).Status))
    assoc.release()
    return statuses


def test_a_study_sent_by_orthanc_comes_back_as_seg_and_rtstruct(
    orthanc: Orthanc,
    start_node: Callable[..., RunningNode],
    pacs_segmenter: Segmenter,
    sts_series: list[Path],
    tmp_path: Path,
) -> None:
    study = orthanc.upload(sts_series)
    start_node(_to_orthanc(orthanc))
    _forward(orthanc, study)
    sent = time.monotonic()
    orthanc.wait_for_modalities(study, {"CT", "SEG", "RTSTRUCT"}, timeout=TIMEOUT)
    latency = time.monotonic() - sent
    (seg,) = orthanc_objects(orthanc, study, "SEG")
    (rtstruct,) = orthanc_objects(orthanc, study, "RTSTRUCT")
    reference = file_based_results(pacs_segmenter, sts_series[0].parent, tmp_path / "file-based")
    assert_results_match(seg, rtstruct, sts_series, reference)
    print(f"forward to results in Orthanc: {latency:.1f} s")


def test_unknown_calling_ae_title_is_refused(
    orthanc: Orthanc, start_node: Callable[..., RunningNode], network: dict[str, int], sts_series: list[Path]
) -> None:
    running = start_node(_to_orthanc(orthanc))
    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", network["node_port"], ae_title=NODE_AET)
    assert assoc.is_rejected
    wrong_called = AE(ae_title="CT01")
    wrong_called.add_requested_context(CTImageStorage)
    assert wrong_called.associate("127.0.0.1", network["node_port"], ae_title="NOT_MEDSEG").is_rejected
    assert _send(sts_series[:1], network["node_port"], calling="CT01") == [0]  # an allowed caller gets in
    assert [s.series_uid for s in running.node.store.states()] == [pydicom.dcmread(sts_series[0]).SeriesInstanceUID]


def test_orthanc_stopped_while_the_node_sends_gets_the_results_later(
    orthanc: Orthanc, start_node: Callable[..., RunningNode], network: dict[str, int], sts_series: list[Path]
) -> None:
    study = orthanc.upload(sts_series)
    orthanc.stop()
    running = start_node(_to_orthanc(orthanc))
    assert all(status == 0 for status in _send(sts_series, network["node_port"]))
    _wait_status(running, "segmented")  # segmented; the send failed and is retried
    deadline = time.monotonic() + 120  # the first send attempt follows the segmentation
    while time.monotonic() < deadline and not running.node.store.states()[0].error:
        time.sleep(0.5)
    (state,) = running.node.store.states()
    assert "could not be reached" in state.error
    orthanc.start()
    _wait_status(running, "sent")
    orthanc.wait_for_modalities(study, {"SEG", "RTSTRUCT"}, timeout=10)


def test_a_sender_that_stops_half_way_is_held_until_the_rest_arrives(
    orthanc: Orthanc,
    start_node: Callable[..., RunningNode],
    network: dict[str, int],
    pacs_segmenter: Segmenter,
    sts_series: list[Path],
    tmp_path: Path,
) -> None:
    study = orthanc.upload(sts_series)
    running = start_node(_to_orthanc(orthanc))
    half = len(sts_series) // 2
    assert len(_send(sts_series, network["node_port"], abort_after=half)) == half
    _wait_status(running, "interrupted", timeout=10)
    time.sleep(2 * running.node.config.quiet_seconds)
    assert {s.status for s in running.node.store.states()} == {"interrupted"}  # not segmented half a scan
    assert orthanc.series_of_modality(study, "SEG") == []
    assert all(status == 0 for status in _send(sts_series[half:], network["node_port"]))
    orthanc.wait_for_modalities(study, {"SEG", "RTSTRUCT"}, timeout=TIMEOUT)
    reference = file_based_results(pacs_segmenter, sts_series[0].parent, tmp_path / "file-based")
    (seg,) = orthanc_objects(orthanc, study, "SEG")
    (rtstruct,) = orthanc_objects(orthanc, study, "RTSTRUCT")
    assert_results_match(seg, rtstruct, sts_series, reference)


def test_a_restarted_node_resumes_what_it_had_received(
    orthanc: Orthanc, start_node: Callable[..., RunningNode], network: dict[str, int], sts_series: list[Path]
) -> None:
    study = orthanc.upload(sts_series)
    first = start_node(_to_orthanc(orthanc), quiet_seconds=3600)  # would wait an hour
    assert all(status == 0 for status in _send(sts_series, network["node_port"]))
    first.stop()  # the service is restarted
    assert orthanc.series_of_modality(study, "SEG") == []
    second = start_node(_to_orthanc(orthanc))
    assert second.node.store.instance_count(first.node.store.states()[0].series_uid) == len(sts_series)
    orthanc.wait_for_modalities(study, {"SEG", "RTSTRUCT"}, timeout=TIMEOUT)
