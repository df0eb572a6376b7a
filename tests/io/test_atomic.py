from __future__ import annotations

from pathlib import Path

import pytest

from medseg.io.atomic import TMP_PREFIX, atomic_path, remove_stale_temporaries


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
