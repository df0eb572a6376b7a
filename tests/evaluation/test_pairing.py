from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.evaluation.pairing import case_id, match_cases


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("liver_3.nii.gz", "liver_3"),
        ("liver_3_seg.nii.gz", "liver_3"),
        ("CASE.NII.GZ", "CASE"),
        ("a_seg.seg.nrrd", "a"),
        ("b.nrrd", "b"),
        ("c.mha", "c"),
        ("_seg.nii", "_seg"),  # nothing left to strip
        ("x_seg_seg.nii.gz", "x_seg"),  # one suffix only
        ("dataset.json", None),
        ("scan.dcm", None),
    ],
)
def test_case_id(name: str, expected: str | None) -> None:
    assert case_id(name) == expected


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_folders_pair_by_case_id_and_report_the_rest(tmp_path: Path) -> None:
    _touch(tmp_path / "pred", "a_seg.nii.gz", "b_seg.nii.gz", "extra.nii.gz", "plans.json", ".hidden.nii.gz")
    _touch(tmp_path / "ref", "a.nii.gz", "b.nrrd", "lonely.nii.gz")
    (tmp_path / "pred" / "subfolder.nii.gz").mkdir()
    matching = match_cases(tmp_path / "pred", tmp_path / "ref")
    assert [(p.case_id, p.pred.name, p.ref.name) for p in matching.pairs] == [
        ("a", "a_seg.nii.gz", "a.nii.gz"),
        ("b", "b_seg.nii.gz", "b.nrrd"),
    ]
    assert list(matching.pred_only) == ["extra"]
    assert list(matching.ref_only) == ["lonely"]


def test_two_files_make_one_pair(tmp_path: Path) -> None:
    _touch(tmp_path, "p_seg.nii.gz", "r.nii.gz")
    matching = match_cases(tmp_path / "p_seg.nii.gz", tmp_path / "r.nii.gz")
    assert [(p.case_id, p.ref.name) for p in matching.pairs] == [("p", "r.nii.gz")]
    assert not matching.pred_only and not matching.ref_only


def test_refusals(tmp_path: Path) -> None:
    _touch(tmp_path / "pred", "a.nii.gz", "a_seg.nii.gz")
    _touch(tmp_path / "ref", "a.nii.gz")
    _touch(tmp_path / "other", "z.nii.gz")
    _touch(tmp_path / "empty", "notes.txt")
    with pytest.raises(InputError, match="two files have case id 'a'"):
        match_cases(tmp_path / "pred", tmp_path / "ref")
    with pytest.raises(InputError, match="is a file but"):
        match_cases(tmp_path / "ref" / "a.nii.gz", tmp_path / "ref")
    with pytest.raises(InputError, match="does not exist"):
        match_cases(tmp_path / "nope", tmp_path / "ref")
    with pytest.raises(InputError, match="neither a file nor a folder"):
        match_cases(Path("/dev/null"), tmp_path / "ref")
    with pytest.raises(InputError, match="holds no label maps"):
        match_cases(tmp_path / "empty", tmp_path / "ref")
    with pytest.raises(InputError, match="no case id in common"):
        match_cases(tmp_path / "other", tmp_path / "ref")
