from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import InputError
from medseg.evaluation.commands import register
from tests.evaluation.helpers import write_label_map


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_evaluate_command_prints_table_and_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = np.zeros((5, 10, 10), np.uint8)
    ref[1:4, 2:8, 2:8] = 3
    pred = np.zeros_like(ref)
    pred[1:4, 2:8, 3:9] = 3  # one voxel (1 mm) along x
    write_label_map(tmp_path / "ref" / "k1.nii.gz", ref, spacing_xyz=(1, 1, 2))
    write_label_map(tmp_path / "pred" / "k1_seg.nii.gz", pred, spacing_xyz=(1, 1, 2))
    write_label_map(tmp_path / "pred" / "k2_seg.nii.gz", pred, spacing_xyz=(1, 1, 2))
    args = _parser().parse_args(
        ["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--labels", "kidney=3",
         "--tolerance-mm", "0.5", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "1 case(s) evaluated" in printed
    assert "1 case(s) without a reference, not scored: k2" in printed
    assert "kidney" in printed and "NSD@0.5mm" in printed
    with (tmp_path / "out" / "metrics.csv").open(newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["label"], row["dice"], row["hd95_mm"], row["nsd_tolerance_mm"]) == ("kidney", "0.833333", "1", "0.5")


def test_defaults_and_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["evaluate", "p", "r"])
    assert (args.tolerance_mm, args.out, args.labels) == (2.0, Path("evaluation"), None)
    for bad in ("-1", "nan", "two"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["evaluate", "p", "r", "--tolerance-mm", bad])
    assert "--tolerance-mm" in capsys.readouterr().err
    args = _parser().parse_args(["evaluate", str(tmp_path / "missing"), str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(InputError, match="does not exist"):
        args.func(args)


def test_through_the_medseg_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import medseg.cli

    assert medseg.cli.COMMAND_MODULES["medseg.evaluation.commands"] == ("evaluate",)
    labels = np.ones((2, 3, 4), np.uint8)
    ref = write_label_map(tmp_path / "ref.nii.gz", labels)
    pred = write_label_map(tmp_path / "pred.nii.gz", labels, spacing_xyz=(1, 1, 1.5))
    assert medseg.cli.main(["evaluate", str(pred), str(ref), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"medseg evaluate: error: {pred}: grid differs from reference {ref}: spacing")
    assert medseg.cli.main(["evaluate", str(ref), str(ref), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "summary.csv").is_file()
