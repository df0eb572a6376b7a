"""Output formats and the case.json manifest that decides whether a case is complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.inference.outputs import (
    FORMATS,
    CaseOutputs,
    completed_record,
    discard_manifest,
    output_names,
    parse_formats,
    write_manifest,
)
from medseg.reporting import CaseRecord


def test_parse_formats() -> None:
    assert parse_formats(None) == FORMATS
    assert parse_formats("all") == FORMATS
    assert parse_formats("png, NIFTI") == ("nifti", "png")  # canonical order, case-insensitive
    assert parse_formats(["rtstruct", "dicom-seg"]) == ("dicom-seg", "rtstruct")
    with pytest.raises(InputError, match=r"unknown output format.*mp4"):
        parse_formats("nifti,mp4")
    with pytest.raises(InputError, match="no format"):
        parse_formats(" , ")


def test_output_names_follow_slicer_conventions() -> None:
    names = output_names("pt_4")
    assert names["nifti"] == "pt_4_seg.nii.gz"  # Slicer loads *_seg.* as a label map
    assert names["seg.nrrd"] == "pt_4.seg.nrrd"
    assert len(set(names.values())) == len(FORMATS)


def _done_case(folder: Path, settings: dict) -> CaseRecord:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x_seg.nii.gz").write_bytes(b"mask")
    (folder / "x_quicklook.png").write_bytes(b"png")
    record = CaseRecord("x", "ok", volumes_ml={"Brainstem": 25.0})
    outputs = CaseOutputs(files={"nifti": "x_seg.nii.gz", "png": "x_quicklook.png"}, skipped={"rtstruct": "not DICOM"})
    write_manifest(folder, record, settings, ("nifti", "png", "rtstruct"), outputs, ["a reader warning"])
    return record


def test_complete_only_with_same_settings_formats_and_files(tmp_path: Path) -> None:
    settings = {"model_sha256": "abc", "tta": False}
    record = _done_case(tmp_path / "x", settings)
    found, why = completed_record(tmp_path / "x", settings, ("nifti", "png"))
    assert found is not None and found.to_dict() == record.to_dict() and why == "complete"
    assert completed_record(tmp_path / "x", {"model_sha256": "abd", "tta": False}, ("nifti",))[0] is None
    assert completed_record(tmp_path / "x", settings, ("nifti", "seg.nrrd"))[0] is None
    (tmp_path / "x" / "x_quicklook.png").unlink()
    found, why = completed_record(tmp_path / "x", settings, ("nifti",))
    assert found is None and "x_quicklook.png" in why
    assert completed_record(tmp_path / "nothing", settings, ("nifti",)) == (None, "no manifest")
    (tmp_path / "x" / "case.json").write_text("{ half written")
    assert completed_record(tmp_path / "x", settings, ("nifti",))[0] is None


def test_discard_removes_listed_outputs_only_inside_the_case(tmp_path: Path) -> None:
    _done_case(tmp_path / "x", {})
    outside = tmp_path / "keep.txt"
    outside.write_text("not ours")
    manifest = json.loads((tmp_path / "x" / "case.json").read_text())
    manifest["outputs"]["evil"] = "../keep.txt"
    (tmp_path / "x" / "case.json").write_text(json.dumps(manifest))
    (tmp_path / "x" / "unlisted.txt").write_text("user file")
    discard_manifest(tmp_path / "x")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["unlisted.txt"]
    assert outside.exists()
