"""Fixtures of the PACS tests: a private loopback network, a real Orthanc in it, the test model, a node factory.

Orthanc is started once for the package and emptied before each test that uses it. Without Orthanc the tests that
need it skip with the reason, except under CI or ``.ci/run`` (which installs it), where that is a failure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from medseg.inference.segmenter import Segmenter
from medseg.pacs.config import NodeConfig
from medseg.pacs.destination import Destination
from medseg.pacs.node import DicomNode
from tests.inference.helpers import make_test_bundle
from tests.pacs.orthanc import Orthanc, free_port, orthanc_missing, private_network
from tests.tooling import skip_or_fail

logger = logging.getLogger(__name__)

NODE_AET = "MEDSEG"


@pytest.fixture(scope="package")
def network() -> Iterator[dict[str, int]]:
    """The tests' network (private when the system allows) and the port the node under test listens on."""
    with private_network() as why_not:
        if why_not:
            logger.warning("%s; the PACS tests use the host's loopback", why_not)
        yield {"node_port": free_port()}


@pytest.fixture(scope="package")
def orthanc_server(network: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    missing = orthanc_missing()
    if missing:
        skip_or_fail(missing)
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), {"medseg": (NODE_AET, network["node_port"])})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc(orthanc_server: Orthanc) -> Orthanc:
    """The running Orthanc, empty (restarted if a test stopped it)."""
    if orthanc_server.process is None or orthanc_server.process.poll() is not None:
        orthanc_server.start()
    orthanc_server.clear()
    return orthanc_server


@pytest.fixture(scope="package")
def pacs_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test bundle: the real transform chain and writers with a small seeded model (about a second a case)."""
    return make_test_bundle(tmp_path_factory.mktemp("bundle") / "ct_unet")


@pytest.fixture(scope="package")
def pacs_segmenter(pacs_bundle: Path) -> Segmenter:
    """The test bundle's model, loaded once for the package."""
    return Segmenter(pacs_bundle, device="cpu")


@pytest.fixture
def sts_series(data_root: Path) -> list[Path]:
    """A real CT series: IBSI STS_019 (47 slices, de-identified, uncompressed)."""
    return sorted((data_root / "ibsi_sts" / "dicom" / "STS_019" / "CT" / "image").glob("*.dcm"))


class RunningNode:
    """A :class:`DicomNode` serving in a background thread of the test."""

    def __init__(self, node: DicomNode) -> None:
        self.node = node
        self.stop_event = threading.Event()
        node.start()
        self.thread = threading.Thread(target=node.serve_forever, args=(self.stop_event, 0.1), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the node did not stop"


@pytest.fixture
def start_node(
    network: dict[str, int], pacs_segmenter: Segmenter, tmp_path: Path
) -> Iterator[Callable[..., RunningNode]]:
    """``start_node(destination=..., **settings)``: a node on the package's node port, storage in ``tmp_path``,
    accepting ``ORTHANC`` and ``CT01``; every node started is stopped after the test."""
    started: list[RunningNode] = []

    def start(destination: Destination | None = None, **settings: Any) -> RunningNode:
        values: dict[str, Any] = {
            "ae_title": NODE_AET,
            "port": network["node_port"],
            "allowed_callers": ["ORTHANC", "CT01"],
            "storage": tmp_path / "node",
            "quiet_seconds": 1.0,
            "retry_seconds": 0.5,
            "destination": destination,
        }
        values.update(settings)
        running = RunningNode(DicomNode(NodeConfig.from_mapping(values), pacs_segmenter))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()
