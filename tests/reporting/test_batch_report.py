"""``OUTPUT/report.html``: built from summary.json and the quick-look PNGs, self-contained, escaped; and what a person
sees when headless Chromium opens it (a screenshot with the table and the images, no console errors)."""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medseg.io.writers.labels import label_table
from medseg.reporting import CaseRecord, write_quicklook, write_summary
from medseg.reporting.batch_report import (
    CONTENT_SECURITY_POLICY,
    REPORT_NAME,
    write_batch_report,
    write_report,
)
from tests.tooling import skip_or_fail

LABELS = label_table({1: "Brainstem", 2: "Mandible"})
FAILED_ERROR = "/in/gamma.nii.gz: cannot be read as NIFTI: <b>truncated</b> & 'odd'"
# Colours of the page's own style sheet, and of label 1 in the quick-look legend.
HEADER_GREY = (240, 240, 243)
FLAGGED_YELLOW = (255, 243, 205)
BRAINSTEM_RED = LABELS[1].color
WINDOW = (1280, 2200)


def _phantom(shift: int) -> tuple[sitk.Image, sitk.Image]:
    """A CT-like volume (air, a soft-tissue cylinder) with two labelled blobs, 2 mm voxels."""
    z, y, x = np.mgrid[0:40, 0:64, 0:64]
    ct = np.where((y - 32) ** 2 + (x - 32) ** 2 < 26**2, 40.0, -1000.0).astype(np.float32)
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[((z - 20) ** 2 + (y - 28) ** 2 + (x - 32 - shift) ** 2) < 64] = 1
    labels[10:20, 40:48, 20:44] = 2
    images = [sitk.GetImageFromArray(ct), sitk.GetImageFromArray(labels)]
    for image in images:
        image.SetSpacing((2.0, 2.0, 2.0))
    return images[0], images[1]


def _record(case_id: str, status: str, **fields: object) -> CaseRecord:
    return CaseRecord(case_id, status, input=f"/in/{case_id}.nii.gz", **fields)  # type: ignore[arg-type]


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """A batch's output folder as segment_folder leaves it: two segmented cases with quick-looks, one failed."""
    records = []
    for shift, case_id in enumerate(("alpha", "beta")):
        ct, labels = _phantom(shift * 4)
        write_quicklook(ct, labels, LABELS, tmp_path / case_id / f"{case_id}_quicklook.png", title=case_id)
        records.append(
            _record(
                case_id,
                "ok",
                volumes_ml={"Brainstem": 2.1 + shift, "Mandible": 15.4},
                qa_flags=["volume_high:Mandible"] if shift else [],
                seconds={"read": 0.5, "inference": 1.25},
                peak_memory_mb=812.0,
                warnings=["rtstruct not written: input is nifti, not DICOM"],
                outputs=[f"{case_id}/{case_id}_seg.nii.gz", f"{case_id}/{case_id}_quicklook.png"],
            )
        )
    records.append(_record("gamma", "failed", error=FAILED_ERROR, seconds={"read": 0.1}))
    write_summary(records, tmp_path)
    return tmp_path


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_holds_table_failures_and_the_quicklooks_themselves(batch: Path) -> None:
    path = write_report(batch)
    assert path == batch / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    # The PNGs themselves, byte for byte, in case order; nothing that a browser would fetch.
    assert _embedded_pngs(text) == [(batch / c / f"{c}_quicklook.png").read_bytes() for c in ("alpha", "beta")]
    assert f'content="{CONTENT_SECURITY_POLICY}"' in text
    assert not re.search(r"(src|href)=\"(?!data:|#)", text), "only data: URIs and in-page links"
    assert "<script" not in text
    # Failures first, their errors escaped (a file name or DICOM text never becomes markup).
    assert text.index("Failed cases (1)") < text.index("<h2>Summary</h2>")
    assert "&lt;b&gt;truncated&lt;/b&gt; &amp; &#x27;odd&#x27;" in text and "<b>truncated" not in text
    assert "3 case(s): 2 segmented, 1 failed, 0 skipped" in text
    # The table: status, volumes (a flagged organ's cell marked), flags, total seconds, memory; links to images.
    assert '<td class="number flagged">15.4</td>' in text and '<td class="number">15.4</td>' in text
    assert '<td class="flags">volume_high:Mandible</td>' in text
    assert '<td class="number">1.8</td>' in text and '<td class="number">812</td>' in text
    assert '<a href="#case-alpha">alpha</a>' in text and 'id="case-alpha"' in text
    assert "rtstruct not written: input is nifti, not DICOM" in text


def test_only_pngs_of_the_batch_are_embedded(batch: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "secret_quicklook.png"
    shutil.copy(batch / "alpha" / "alpha_quicklook.png", outside)
    (batch / "beta" / "beta_quicklook.png").write_bytes(b"not a png")
    records = [
        _record("alpha", "ok", outputs=[os.path.relpath(outside, batch)]),
        _record("beta", "ok", outputs=["beta/beta_quicklook.png"]),
    ]
    write_summary(records, batch)
    text = write_report(batch).read_text(encoding="utf-8")
    assert _embedded_pngs(text) == []
    assert text.count("no quick-look image") == 2


def test_a_report_that_cannot_be_made_never_fails_the_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="medseg.reporting.batch_report"):
        assert write_batch_report(tmp_path) is None
    assert "report.html not written" in caplog.text and "summary.json" in caplog.text
    assert not (tmp_path / REPORT_NAME).exists()


# --- What a person sees: headless Chromium ------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("headless Chromium not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    raise AssertionError("unreachable")


def _screenshot(page: Path, tmp_path: Path) -> tuple[np.ndarray, list[str]]:
    """Chromium's screenshot of ``page`` (RGB array) and the console messages it logged."""
    shot = tmp_path / "screenshot.png"
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={shot}",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]
    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        return np.asarray(image.convert("RGB")), console


def _pixels_near(shot: np.ndarray, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    return int(np.all(np.abs(shot.astype(int) - colour) <= tolerance, axis=-1).sum())


def _rows_with_black(shot: np.ndarray, min_pixels: int = 200) -> int:
    """Rows holding at least ``min_pixels`` near-black pixels: rows crossing a quick-look (black background) on
    this white page."""
    return int((np.all(shot < 20, axis=-1).sum(axis=1) >= min_pixels).sum())


def test_chromium_shows_the_table_and_the_images_without_console_errors(batch: Path, tmp_path: Path) -> None:
    shot, console = _screenshot(write_report(batch), tmp_path)
    assert shot.shape == (WINDOW[1], WINDOW[0], 3)
    assert console == [], console
    assert _pixels_near(shot, HEADER_GREY, 1) > 2000  # the header rows of both tables
    assert _pixels_near(shot, FLAGGED_YELLOW, 1) > 300  # beta's flagged Mandible cell
    # Both quick-looks drawn (about 490 px tall each at this width, stacked), with their legend colours.
    assert _rows_with_black(shot) > 900
    assert _pixels_near(shot, BRAINSTEM_RED, 12) > 100


def test_chromium_console_check_can_fail(tmp_path: Path) -> None:
    # The control for the check above: a page that breaks the policy is caught.
    page = tmp_path / "broken.html"
    page.write_text(
        f'<html><head><meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}"></head>'
        '<body><img src="https://example.invalid/x.png"><script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    _, console = _screenshot(page, tmp_path)
    assert any("example.invalid" in line for line in console), console  # a fetch from the network is caught


@pytest.mark.data
def test_a_batch_ends_with_its_report(data_root: Path, tmp_path: Path) -> None:
    from medseg.datasets import prepare_dataset
    from medseg.inference.batch import segment_folder
    from tests.inference.helpers import make_test_bundle

    scan = sorted((Path(prepare_dataset("openkbp", tmp_path / "openkbp", max_cases=1)) / "imagesTr").iterdir())[0]
    patients = tmp_path / "patients"
    patients.mkdir()
    shutil.copy(scan, patients / scan.name)
    (patients / "broken.nii.gz").write_bytes(scan.read_bytes()[:1000])
    bundle = make_test_bundle(tmp_path / "bundle")
    result = segment_folder(patients, tmp_path / "out", bundle=bundle, device="cpu", progress=False)
    assert [record.status for record in result.records] == ["failed", "ok"]
    text = (tmp_path / "out" / REPORT_NAME).read_text(encoding="utf-8")
    case_id = result.records[1].case_id
    assert _embedded_pngs(text) == [(tmp_path / "out" / case_id / f"{case_id}_quicklook.png").read_bytes()]
    assert "Failed cases (1)" in text and "broken.nii.gz: declares" in text
