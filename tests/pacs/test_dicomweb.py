"""``medseg dicomweb`` against a real Orthanc with its DICOMweb plugin: a CT study found with QIDO-RS and retrieved
with WADO-RS comes back in the same study (STOW-RS) as a DICOM SEG and an RTSTRUCT holding the masks of the
file-based ``medseg segment`` (also when ``medseg serve`` sends its results with STOW-RS); an unknown study, a
server that is down and a study without CT end in one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from medseg.cli import main
from medseg.inference.segmenter import Segmenter
from medseg.pacs.destination import Destination
from medseg.pacs.dicomweb import segment_dicomweb_study
from medseg.pacs.errors import PacsError
from tests.pacs.conftest import RunningNode
from tests.pacs.helpers import assert_results_match, file_based_results, orthanc_objects
from tests.pacs.orthanc import Orthanc

pytestmark = pytest.mark.data


def test_medseg_dicomweb_pulls_segments_and_stores_back(
    orthanc: Orthanc,
    pacs_bundle: Path,
    pacs_segmenter: Segmenter,
    sts_series: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    study = orthanc.upload(sts_series)
    ct = pydicom.dcmread(sts_series[0], stop_before_pixels=True)
    argv = ["dicomweb", orthanc.dicomweb_url, ct.StudyInstanceUID, "--storage", str(tmp_path / "work")]
    code = main([*argv, "--bundle", str(pacs_bundle), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"series {ct.SeriesInstanceUID}: sent" in out
    (seg,) = orthanc_objects(orthanc, study, "SEG")
    (rtstruct,) = orthanc_objects(orthanc, study, "RTSTRUCT")
    reference = file_based_results(pacs_segmenter, sts_series[0].parent, tmp_path / "file-based")
    assert_results_match(seg, rtstruct, sts_series, reference)
    # Only the CT series is segmented when the study already holds medseg's results.
    result = segment_dicomweb_study(orthanc.dicomweb_url, ct.StudyInstanceUID, pacs_segmenter, tmp_path / "again")
    assert result.ok
    assert list(result.series) == [ct.SeriesInstanceUID]


def test_an_unknown_study_is_one_line(
    orthanc: Orthanc, pacs_segmenter: Segmenter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(PacsError, match=r"has no study 1\.2\.3\.4"):
        segment_dicomweb_study(orthanc.dicomweb_url, "1.2.3.4", pacs_segmenter, tmp_path)
    with pytest.raises(PacsError, match="is not a DICOM UID"):
        segment_dicomweb_study(orthanc.dicomweb_url, "../etc", pacs_segmenter, tmp_path)


def test_a_study_without_ct_is_refused(
    orthanc: Orthanc, pacs_segmenter: Segmenter, sts_series: list[Path], tmp_path: Path
) -> None:
    files = [sts_series[0].parent.parent / "mask" / "RS.dcm"]  # the study's clinical RTSTRUCT alone
    orthanc.upload(files)
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    with pytest.raises(PacsError, match="holds no CT series"):
        segment_dicomweb_study(orthanc.dicomweb_url, study, pacs_segmenter, tmp_path)


def test_a_server_that_is_down_is_one_line(
    orthanc: Orthanc, pacs_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = orthanc.dicomweb_url
    orthanc.stop()
    code = main(["dicomweb", url, "1.2.3.4", "--storage", str(tmp_path), "--bundle", str(pacs_bundle)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"medseg dicomweb: error: {url}") and err.count("\n") == 1, err
    assert "could not be reached (Connection refused)" in err and "0x" not in err, err


def test_a_ct_series_without_ct_images_fails_alone(
    orthanc: Orthanc, pacs_segmenter: Segmenter, sts_series: list[Path], tmp_path: Path
) -> None:
    """QIDO-RS says CT, but WADO-RS brings no CT Image Storage instance (a secondary capture labelled CT)."""
    capture = pydicom.dcmread(sts_series[0])
    capture.SOPClassUID = capture.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    capture.SeriesInstanceUID = pydicom.uid.generate_uid()
    capture.save_as(tmp_path / "capture.dcm")
    orthanc.upload([tmp_path / "capture.dcm"])
    result = segment_dicomweb_study(orthanc.dicomweb_url, capture.StudyInstanceUID, pacs_segmenter, tmp_path / "w")
    assert result.series == {capture.SeriesInstanceUID: "failed"}
    assert "is a CT image" in result.errors[capture.SeriesInstanceUID]
    assert not result.ok


def test_medseg_serve_stores_its_results_with_stow_rs(
    orthanc: Orthanc, start_node: Callable[..., RunningNode], sts_series: list[Path]
) -> None:
    """The service's DICOMweb destination: Orthanc sends the study by C-STORE, the results come back by STOW-RS."""
    study = orthanc.upload(sts_series)
    start_node(Destination.parse(orthanc.dicomweb_url))
    orthanc.post("/modalities/medseg/store", {"Resources": [study], "Synchronous": True})
    orthanc.wait_for_modalities(study, {"SEG", "RTSTRUCT"}, timeout=600)


def test_server_stopped_mid_study_fails_each_series_on_its_own(
    orthanc: Orthanc, pacs_segmenter: Segmenter, sts_series: list[Path], tmp_path: Path
) -> None:
    """A study of two CT series; Orthanc stops right after the first is retrieved: the first is segmented and its
    push fails (kept as ``segmented``), the second's retrieval fails; each with its one-line reason."""
    second = tmp_path / "second"
    second.mkdir()
    series_uid = pydicom.uid.generate_uid()
    for path in sts_series:
        dataset = pydicom.dcmread(path)
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        dataset.save_as(second / path.name)
    orthanc.upload(sts_series)
    orthanc.upload(sorted(second.iterdir()))
    study = pydicom.dcmread(sts_series[0], stop_before_pixels=True).StudyInstanceUID

    class StopsAfterOneSeries(DICOMwebClient):
        def retrieve_series(self, *args: Any, **kwargs: Any) -> list[pydicom.Dataset]:
            instances = super().retrieve_series(*args, **kwargs)
            orthanc.stop()
            return instances

    client = StopsAfterOneSeries(url=orthanc.dicomweb_url)
    result = segment_dicomweb_study(orthanc.dicomweb_url, study, pacs_segmenter, tmp_path / "work", client=client)
    assert sorted(result.series.values()) == ["failed", "segmented"]
    assert not result.ok
    for uid, status in result.series.items():
        error = result.errors[uid]
        assert "\n" not in error and "0x" not in error
        assert "could not be reached" in error, error
        assert ("WADO-RS retrieval failed" if status == "failed" else "STOW-RS failed") in error, error
