"""Case discovery: which files and folders of INPUT become cases, and their ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.inference.cases import Case, discover_cases


def _dicom(path: Path) -> Path:
    """A file that looks like Part-10 DICOM to discovery (preamble + DICM); its content is never parsed here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    return path


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really an image")
    return path


def test_single_file_is_one_case(tmp_path: Path) -> None:
    scan = _image(tmp_path / "Patient 1.nii.gz")
    assert discover_cases(scan) == [Case("Patient_1", scan)]


def test_series_folder_is_one_case(tmp_path: Path) -> None:
    series = tmp_path / "CT_series"
    for n in range(3):
        _dicom(series / f"IM{n}")
    assert discover_cases(series) == [Case("CT_series", series)]


def test_study_folder_with_one_subfolder_is_one_case_named_after_it(tmp_path: Path) -> None:
    study = tmp_path / "STS_019"
    _dicom(study / "CT" / "image" / "000.dcm")
    _dicom(study / "CT" / "mask" / "RS.dcm")
    assert discover_cases(study) == [Case("STS_019", study)]


def test_folder_of_patients(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    _dicom(root / "pat-B" / "series1" / "a.dcm")
    _dicom(root / "pat A" / "x" / "1")
    nifti = _image(root / "scan3.nii.gz")
    nrrd = _image(root / "lung.nrrd")
    only_image = _image(root / "pat-C" / "ct.mha")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no scan here")
    (root / ".hidden").mkdir()
    _dicom(root / ".hidden" / "x.dcm")
    cases = discover_cases(root)
    assert cases == sorted(cases, key=lambda c: c.case_id)
    assert {c.case_id: c.path for c in cases} == {
        "pat-B": root / "pat-B",
        "pat_A": root / "pat A",
        "pat-C": only_image,  # a folder holding one image file is that file
        "scan3": nifti,
        "lung": nrrd,
    }


def test_colliding_names_keep_their_suffix(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    _image(root / "a.nii.gz")
    _image(root / "a.nrrd")
    _image(root / "b.nii")
    ids = [c.case_id for c in discover_cases(root)]
    assert ids == ["a.nii.gz", "a.nrrd", "b"]


def test_unsafe_names_are_sanitised(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    _image(root / "-evil name;rm.nii.gz")
    _image(root / "ok.nii.gz")
    ids = [c.case_id for c in discover_cases(root)]
    assert ids == ["evil_name_rm", "ok"]


def test_empty_or_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        discover_cases(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no scan"):
        discover_cases(tmp_path / "empty")
