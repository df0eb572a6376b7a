from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.cli import main
from medseg.config import MANIFEST_PATH
from pipelines.prepare_datasets import main as prepare_main
from tests.datasets.synthetic import write_msd_folder, write_nifti


def test_import_msd_writes_datalist_or_lists_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_msd_folder(tmp_path / "Task09", [f"s{i}" for i in range(5)])
    assert main(["import", "msd", "--source", str(source), "--out", str(tmp_path / "out")]) == 0
    assert "5 cases" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "out" / "datalist.json").read_text())["training"]) == 5
    import numpy as np

    write_nifti(source / "labelsTr" / "s1.nii.gz", np.full((6, 5, 4), 9, np.uint8))
    assert main(["import", "msd", "--source", str(source), "--out", str(tmp_path / "out2")]) == 1
    out = capsys.readouterr().out
    assert "s1.nii.gz: label values [9]" in out and "nothing written" in out
    assert not (tmp_path / "out2").exists()
    assert main(["import", "msd"]) == 2
    assert "needs --source" in capsys.readouterr().err


def test_manifest_validate_reports_problems_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads(MANIFEST_PATH.read_text())
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({**raw, "datasets": {"pydicom": raw["datasets"]["pydicom"]}}))
    empty_root = tmp_path / "root"
    empty_root.mkdir()
    assert main(["manifest", "validate", "--manifest", str(manifest), "--data-root", str(empty_root)]) == 1
    out = capsys.readouterr().out
    assert "pydicom: pydicom/CT_small.dcm: missing" in out
    assert "pydicom: pydicom: dataset folder missing" in out


@pytest.mark.data
def test_manifest_validate_on_the_real_data(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "validate", "--data-root", str(data_root)]) == 0
    assert capsys.readouterr().out.startswith("manifest OK: 7 datasets")


@pytest.mark.data
def test_prepare_pipeline_imports_ibsi_and_reports_dice(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prepare_main(["--datasets", "ibsi_sts", "--no-checksums"]) == 0
    out = capsys.readouterr().out
    assert out.count("Dice vs reference mask 1.0000") == 13
    assert "median spacing RAS [0.9766, 0.9766, 3.27]" in out
