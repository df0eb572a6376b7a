"""Case discovery: which files and folders of INPUT become cases, and their ids."""

from __future__ import annotations

import os
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
    scans = [c for c in cases if c.problem is None and c.skip_reason is None]
    assert {c.case_id: c.path for c in scans} == {
        "pat-B": root / "pat-B",
        "pat_A": root / "pat A",
        "pat-C": only_image,  # a folder holding one image file is that file
        "scan3": nifti,
        "lung": nrrd,
    }
    # Nothing vanishes: a patient folder without a scan fails, a hidden folder is skipped unsearched.
    others = {c.case_id: c for c in cases if c not in scans}
    assert set(others) == {"notes", "hidden"}
    assert others["notes"].problem == (
        f"{root / 'notes'}: holds no scan: no DICOM or image file, only 1 file(s) that are neither DICOM nor "
        "images: readme.txt"
    )
    assert others["hidden"].skip_reason is not None and "hidden folder" in others["hidden"].skip_reason


def test_colliding_names_keep_their_suffix(tmp_path: Path) -> None:
    root = tmp_path / "batch"
    _image(root / "a.nii.gz")
    _image(root / "a.nrrd")
    _image(root / "b.nii")
    _image(root / "summary.json" / "ct.nii.gz")  # the batch's own file name
    ids = [c.case_id for c in discover_cases(root)]
    assert ids == ["a.nii.gz", "a.nrrd", "b", "summary.json-2"]


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


def test_every_entry_without_a_scan_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "batch"
    _image(root / "good.nii.gz")
    (root / "empty").mkdir()
    for n in range(2):
        _image(root / "zeros" / f"IM{n}.dcm").write_bytes(b"")
    _image(root / "cut" / "IM0.dcm").write_bytes(b"\0" * 100)  # cut before the DICM signature
    (root / "fifo_only").mkdir()
    os.mkfifo(root / "fifo_only" / "pipe")
    (root / "locked").mkdir()
    (root / "gone").symlink_to(tmp_path / "moved away")
    _image(root / "readme.txt")
    (root / "zero.dcm").write_bytes(b"")
    os.mkfifo(root / "stream")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # root may list anything: simulate a folder the user cannot read
        if str(path) == str(root / "locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    cases = {c.case_id: c for c in discover_cases(root)}
    assert cases["good"] == Case("good", root / "good.nii.gz")
    problems = {case_id: c.problem for case_id, c in cases.items() if c.problem}
    assert problems == {
        "empty": f"{root / 'empty'}: holds no scan: the folder is empty",
        "zeros": f"{root / 'zeros'}: holds no scan: no DICOM or image file, only 2 empty (zero-byte) file(s): "
        "IM0.dcm, IM1.dcm",
        "cut": f"{root / 'cut'}: holds no scan: no DICOM or image file, only 1 file(s) that are neither DICOM nor "
        "images: IM0.dcm",
        "fifo_only": f"{root / 'fifo_only'}: holds no scan: no DICOM or image file, only 1 special file(s), not "
        "read: pipe: a FIFO (named pipe)",
        "locked": f"{root / 'locked'}: cannot be listed: Permission denied",
        "gone": f"{root / 'gone'}: is a broken symbolic link (to {tmp_path / 'moved away'})",
        "zero.dcm": f"{root / 'zero.dcm'}: is not DICOM: empty file (0 bytes)",
    }
    skipped = {case_id: c.skip_reason for case_id, c in cases.items() if c.skip_reason}
    assert skipped == {
        "readme.txt": "not a scan: neither DICOM (no DICOM signature) nor an image file (.nii, .nii.gz, .nrrd, "
        ".nhdr, .mha, .mhd)",
        "stream": "not a scan: a FIFO (named pipe), special files are not read",
    }
    assert len(cases) == 1 + len(problems) + len(skipped)


def test_only_stray_files_is_no_input(tmp_path: Path) -> None:
    _image(tmp_path / "in" / "notes.txt")
    with pytest.raises(InputError, match=r"holds no scan: .* \(1 other entries, e.g. notes.txt\)"):
        discover_cases(tmp_path / "in")


def test_symlinked_series_folders_are_followed_once(tmp_path: Path) -> None:
    series = tmp_path / "elsewhere" / "CT"
    _dicom(series / "IM0")
    root = tmp_path / "batch"
    (root / "linked").mkdir(parents=True)
    (root / "linked" / "CT").symlink_to(series, target_is_directory=True)
    (root / "linked" / "CT_again").symlink_to(series, target_is_directory=True)
    (root / "looped").mkdir()
    (root / "looped" / "self").symlink_to(root / "looped", target_is_directory=True)
    _image(root / "looped" / "scan.nrrd")
    cases = {c.case_id: c for c in discover_cases(root)}
    assert cases["linked"] == Case("linked", root / "linked")  # read as inspect reads it: through the link
    assert cases["looped"] == Case("looped", root / "looped" / "scan.nrrd")  # the loop is walked once


def test_a_single_case_never_takes_the_summary_s_name(tmp_path: Path) -> None:
    scan = _image(tmp_path / "summary.csv.nii.gz")
    assert discover_cases(scan) == [Case("summary.csv-2", scan)]
