from __future__ import annotations

import os
from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.io.writers.paths import MAX_CASE_ID_BYTES, case_output_dir, check_case_id

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
