from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from medseg.errors import InputError, ManifestError
from medseg.io.files import (
    MAX_CASE_ID_BYTES,
    TMP_PREFIX,
    atomic_path,
    case_output_dir,
    check_case_id,
    read_json_object,
    remove_stale_temporaries,
)


def test_atomic_path_renames_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "mask_seg.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.name.startswith(TMP_PREFIX)
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / f"{TMP_PREFIX}abc-x.nii.gz").write_text("x")
    (tmp_path / "keep.nii.gz").write_text("y")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [f"{TMP_PREFIX}abc-x.nii.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.nii.gz"]


def test_reads_an_object(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('{"labels": {"1": "spleen"}}', encoding="utf-8")
    assert read_json_object(path, "the labels") == {"labels": {"1": "spleen"}}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{", r"cannot read the thing as JSON: Expecting property name"),
        (b"\xff\xfe{}", r"cannot read the thing as JSON: 'utf-8' codec can't decode"),
        (b"[1, 2]", r"the thing must be a JSON object, got an array"),
        (b'"text"', r"the thing must be a JSON object, got a string"),
        (b"3.5", r"the thing must be a JSON object, got a number"),
        (b"true", r"the thing must be a JSON object, got true/false"),
        (b"null", r"the thing must be a JSON object, got null"),
    ],
)
def test_names_the_file_and_the_problem(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: {problem}"):
        read_json_object(path, "the thing")


def test_missing_file_and_error_class(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(InputError, match=r"missing\.json: cannot read the thing as JSON: No such file or directory$"):
        read_json_object(path, "the thing")
    with pytest.raises(ManifestError, match=r"missing\.json: manifest not found$"):
        read_json_object(path, "the manifest", ManifestError, not_found="manifest not found")
    with pytest.raises(ManifestError, match="cannot read the manifest as JSON"):
        read_json_object(tmp_path, "the manifest", ManifestError)  # a folder: IsADirectoryError


NASTY = {
    "../../etc": "'/'",
    "..": "is '.' or '..'",
    ".": "is '.' or '..'",
    "a/b": "'/'",
    "a\\b": "'\\\\\\\\'",
    "C:evil": "':'",
    "CON": "device name",
    "nul.txt": "device name",
    "Com1": "device name",
    "\x00": "non-printable",
    "case\n1": "non-printable",
    "abc\u202edcba": "non-printable",  # right-to-left override hides the real name
    "": "empty",
    "   ": "empty",
    " lead": "blank",
    "trail.": "ends with '.'",
    "-rf": "starts with '-'",
    "x" * (MAX_CASE_ID_BYTES + 1): "longer than",
    "é" * (MAX_CASE_ID_BYTES // 2 + 1): "longer than",  # 2 bytes each in UTF-8
}


@pytest.mark.parametrize("case_id", list(NASTY))
def test_nasty_ids_are_refused_with_the_reason(case_id: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=NASTY[case_id]) as raised:
        case_output_dir(tmp_path, case_id)
    assert repr(case_id)[:40] in str(raised.value) or len(case_id) > 40
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "case_id", ["STS_019", "pt_4", "Patient 12 (2024-01-02)", "Müller^Anna", "a.b", "CT..Abdomen", "x" * 128]
)
def test_ordinary_ids_give_a_folder_inside_the_root(case_id: str, tmp_path: Path) -> None:
    assert check_case_id(case_id) == case_id
    folder = case_output_dir(tmp_path, case_id)
    assert folder == tmp_path / case_id and folder.parent == tmp_path
    assert not folder.exists()  # nothing is created


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "case1")
    with pytest.raises(InputError, match="outside the output folder"):
        case_output_dir(root, "case1")


def test_non_strings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a string"):
        case_output_dir(tmp_path, 12)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [*NASTY, "1.2.840.113619.2.55", "CT Thorax/Abdomen 1.0 B31f", "--help"])
def test_safe_names_from_the_series_module_are_accepted(text: str) -> None:
    from medseg.io.series import safe_name

    assert check_case_id(safe_name(text)) == safe_name(text)
