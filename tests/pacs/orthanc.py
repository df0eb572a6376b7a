"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests, on loopback only.

:func:`private_network` moves the calling thread (pytest's main thread) into a new network namespace that has only a
loopback interface (``unshare(CLONE_NEWNET)``, as ``unshare -n`` does); processes and threads started from it
(Orthanc, the node under test) live there too, so nothing outside the machine, nor on it, can reach them. Where
namespaces are not allowed, the tests run on the host's loopback (Orthanc with ``RemoteAccessAllowed`` false and
stores accepted from the configured modalities only) and say so. :class:`Orthanc` starts the server with a
configuration written for the test and stops it by its PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTALL_HINT = "apt-get install -y orthanc orthanc-dicomweb (.ci/run does it)"
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or ``None`` when it can."""
    if shutil.which(ORTHANC_BINARY) is None:
        return f"Orthanc is not installed ({INSTALL_HINT})"
    if not DICOMWEB_PLUGIN.is_file():
        return f"the Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} is not installed ({INSTALL_HINT})"
    return None


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


@contextlib.contextmanager
def private_network() -> Iterator[str | None]:
    """Run the block in a new network namespace with only ``lo`` (see the module notes); yields ``None`` when it
    could, else why not (the block then runs on the host's network)."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(_CLONE_NEWNET) != 0:
            yield f"no private network namespace: unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}"
            return
        try:
            _loopback_up()
            yield None
        finally:
            if libc.setns(original, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
    finally:
        os.close(original)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Orthanc:
    """One Orthanc process with its own storage under ``folder``; AE title ``ORTHANC``.

    Args:
        modalities: name -> (AE title, port) of the DICOM nodes on 127.0.0.1 Orthanc knows; only they may store.
    """

    ae_title = "ORTHANC"

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, int]]) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.modalities = modalities
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict[str, Any]:
        return {
            "Name": "medseg-test",
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": {name: [aet, "127.0.0.1", port] for name, (aet, port) in self.modalities.items()},
            "DicomScuTimeout": 10,
            "DicomAssociationCloseDelay": 0,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}"},
            "StorageCompression": False,
            "SaveJobs": False,
        }

    def start(self, timeout: float = 30.0) -> None:
        """Start Orthanc and wait until its REST API answers.

        Raises:
            RuntimeError: it exited or did not answer in time (with the end of its log).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        config_file = self.folder / "orthanc.json"
        config_file.write_text(json.dumps(self.config(), indent=1))
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [ORTHANC_BINARY, str(config_file)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"Orthanc did not start (log {self.log}):\n{tail}")

    def stop(self) -> None:
        """Stop Orthanc by its PID (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    # -- REST ------------------------------------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.url}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(f"{self.url}{path}", data=data, timeout=120)
        response.raise_for_status()
        return response.json()

    def upload(self, files: list[Path]) -> str:
        """Store files through REST; the Orthanc id of their study."""
        study = ""
        for path in files:
            study = self.post("/instances", path.read_bytes())["ParentStudy"]
        return study

    def clear(self) -> None:
        for patient in self.get("/patients"):
            requests.delete(f"{self.url}/patients/{patient}", timeout=30).raise_for_status()

    def series_of_modality(self, study: str, modality: str) -> list[dict[str, Any]]:
        return [s for s in self.get(f"/studies/{study}/series") if s["MainDicomTags"].get("Modality") == modality]

    def wait_for_modalities(self, study: str, modalities: set[str], timeout: float) -> float:
        """Seconds until the study holds a series of each modality.

        Raises:
            AssertionError: not within ``timeout``.
        """
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            present = {s["MainDicomTags"].get("Modality") for s in self.get(f"/studies/{study}/series")}
            if modalities <= present:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"no {sorted(modalities)} in the study after {timeout} s (has {sorted(present)})")

    def instance_file(self, instance: str) -> bytes:
        response = requests.get(f"{self.url}/instances/{instance}/file", timeout=30)
        response.raise_for_status()
        return response.content
