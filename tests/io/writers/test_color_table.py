from __future__ import annotations

from pathlib import Path

import pytest

from medseg.io.writers.color_table import write_color_table
from medseg.io.writers.labels import HEAD_NECK_LABELS, label_table


def test_color_table_lines(tmp_path: Path) -> None:
    path = write_color_table(HEAD_NECK_LABELS, tmp_path / "case_seg.ctbl")
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert rows[0] == ["0", "Background", "0", "0", "0", "0"]
    assert [row[:2] for row in rows[1:]] == [[str(v), info.name] for v, info in HEAD_NECK_LABELS.items()]
    for row, info in zip(rows[1:], HEAD_NECK_LABELS.values(), strict=True):
        assert tuple(int(c) for c in row[2:5]) == info.color and row[5] == "255"


def test_names_with_blanks_keep_one_token(tmp_path: Path) -> None:
    path = write_color_table(label_table({2: "vertebra  T12", 7: " left kidney"}), tmp_path / "t.txt")
    rows = [line.split() for line in path.read_text().splitlines()[2:]]
    assert [row[:2] for row in rows] == [["0", "Background"], ["2", "vertebra_T12"], ["7", "left_kidney"]]
    assert all(len(row) == 6 for row in rows)
    with pytest.raises(ValueError, match="ctbl"):
        write_color_table(HEAD_NECK_LABELS, tmp_path / "t.csv")
