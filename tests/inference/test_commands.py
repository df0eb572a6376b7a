"""The ``segment`` subcommand: arguments, exit codes, and the pipeline script running the same function."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk

from medseg.config import REPO_ROOT
from medseg.inference import commands
from medseg.inference.options import PRECISIONS
from tests.inference.helpers import body_phantom


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_arguments_and_defaults() -> None:
    args = _parser().parse_args(["segment", "in", "out"])
    assert args.func is commands.run_segment
    assert (args.bundle, args.device, args.formats) == (None, "auto", "all")
    assert (args.tta, args.overwrite, args.fix_geometry, args.postprocess, args.progress) == (
        False,
        False,
        False,
        True,
        True,
    )
    args = _parser().parse_args(["segment", "in", "out", "--no-postprocess", "--tta", "--formats", "nifti,png"])
    assert args.postprocess is False and args.tta is True and args.formats == "nifti,png"
    assert args.precision == "fp32"  # exact by default; bf16 is opt-in
    assert _parser().parse_args(["segment", "in", "out", "--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        _parser().parse_args(["segment", "in", "out", "--precision", "fp16"])
    for value in PRECISIONS:  # the command's choices are the precisions the Segmenter knows
        assert _parser().parse_args(["segment", "in", "out", "--precision", value]).precision == value


def test_run_segment_exit_codes(test_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in"
    source.mkdir()
    sitk.WriteImage(body_phantom(), str(source / "good.nii.gz"))
    common: list[Any] = ["--bundle", str(test_bundle), "--device", "cpu", "--formats", "nifti", "--no-progress"]
    args = _parser().parse_args(["segment", str(source), str(tmp_path / "out"), *common])
    assert args.func(args) == 0
    assert "1 of 1 case(s) segmented" in capsys.readouterr().out
    (source / "bad.nrrd").write_text("NRRD0004\ngarbage\n")
    (source / "notes.txt").write_text("not a scan")
    args = _parser().parse_args(["segment", str(source), str(tmp_path / "out"), *common])
    assert args.func(args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("  FAILED bad: ") for line in lines)
    # The last line counts every entry of the input.
    assert lines[-1] == f"1 of 2 case(s) segmented into {tmp_path / 'out'}; 1 failed; 1 skipped (not a scan)"


def test_requested_formats_not_written_are_named_and_counted(
    test_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    sitk.WriteImage(body_phantom(), str(source / "good.nii.gz"))
    argv = ["segment", str(source), str(tmp_path / "out"), "--bundle", str(test_bundle), "--device", "cpu"]
    argv += ["--no-progress", "--formats", "nifti,dicom-seg,rtstruct"]
    args = _parser().parse_args(argv)
    assert args.strict_formats is False and args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  NOT WRITTEN good dicom-seg: input is nifti, not DICOM" in lines
    assert lines[-1].endswith("; 0 failed; 0 skipped (not a scan); 2 requested output(s) not written in 1 case(s)")
    args = _parser().parse_args([*argv, "--strict-formats"])
    assert args.func(args) == 1
    assert "FAILED good: requested output(s) not written (--strict-formats): dicom-seg" in capsys.readouterr().out


def test_cli_debug_and_output_errors(test_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medseg.cli import main

    source = tmp_path / "in"
    source.mkdir()
    (source / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    (tmp_path / "taken").write_text("a file")
    common = ["--bundle", str(test_bundle), "--device", "cpu", "--no-progress"]
    assert main(["segment", str(source), str(tmp_path / "taken"), *common]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"medseg segment: error: {tmp_path / 'taken'}: exists and is not a folder: name a folder for the outputs\n"
    )
    assert main(["--debug", "segment", str(source), str(tmp_path / "out"), *common]) == 1
    err = capsys.readouterr().err
    assert "broken failed:\nTraceback (most recent call last):" in err


def test_pipeline_script_reports_input_errors_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "pipelines" / "segment_folder.py"), str(tmp_path / "missing"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"segment_folder: error: {tmp_path / 'missing'}: does not exist"
