from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.cli import main
from medseg.io.files import TMP_PREFIX
from tests.io.dicom_factory import ramp_volume, rotation, write_series


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    volume = ramp_volume((5, 6, 4))
    write_series(root / "soft", volume, kernel="B30f", series_uid="1.2.3.30", description="soft")
    write_series(root / "lung", volume, kernel="B70f", series_uid="1.2.3.70", description="lung")
    write_series(root / "mr", volume, modality="MR", series_uid="1.2.3.99", description="t1")
    return root


def test_inspect_text_lists_series_choice_and_geometry(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["inspect", str(study)], capsys)
    assert code == 0
    assert "* CT 'soft' #2: 5 files, 5 slices, step 2 mm, kernel 'B30f'" in out
    assert "skipped: not chosen: series 1.2.3.30 has a softer reconstruction kernel ('B30f' vs 'B70f')" in out
    assert "skipped: modality MR is not CT" in out
    assert "chosen: 1.2.3.30 ('soft')" in out
    assert "size:        4 x 6 x 5 (16-bit signed integer)" in out
    assert "spacing:     0.8, 0.7, 2 mm" in out
    assert "orientation: LPS" in out and "HU range:" in out and "warnings:   none" in out


def test_inspect_json(study: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["inspect", str(study), "--json", "--series", "1.2.3.70"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["series"]["uid"] == "1.2.3.70"
    assert summary["size"] == [4, 6, 5] and summary["orientation"] == "LPS"
    assert {c["uid"]: c["skip_reason"] for c in summary["candidates"]} == {
        "1.2.3.30": "not chosen: series 1.2.3.70 was asked for",
        "1.2.3.70": None,
        "1.2.3.99": "modality MR is not CT",
    }
    volume = ramp_volume((5, 6, 4))
    assert summary["hu_range"] == [float(volume.min()), float(volume.max())]


def test_convert_writes_exact_geometry_atomically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    direction = rotation(z_degrees=25, x_degrees=-10)
    volume = ramp_volume((6, 5, 4))
    write_series(tmp_path / "dicom", volume, direction=direction, step=1.25)
    out = tmp_path / "out" / "scan.nii.gz"
    code, stdout, _ = run(["convert", str(tmp_path / "dicom"), str(out)], capsys)
    assert code == 0 and f"wrote {out}" in stdout
    written = sitk.ReadImage(str(out))
    assert np.array_equal(sitk.GetArrayFromImage(written), volume)
    np.testing.assert_allclose(np.reshape(written.GetDirection(), (3, 3)), direction, atol=1e-6)
    np.testing.assert_allclose(written.GetSpacing(), (0.8, 0.7, 1.25), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), (-10.0, -20.0, 30.0), atol=1e-4)
    assert [p.name for p in out.parent.iterdir()] == ["scan.nii.gz"]
    assert not any(p.name.startswith(TMP_PREFIX) for p in out.parent.iterdir())


@pytest.mark.data
def test_convert_ibsi_dicom_equals_the_reference_nifti(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "STS_019.nii.gz"
    assert main(["convert", str(data_root / "ibsi_sts" / "dicom" / "STS_019"), str(out)]) == 0
    reference = nib.load(data_root / "ibsi_sts" / "nifti" / "STS_019" / "CT_image.nii.gz")
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, reference.affine, rtol=0, atol=1e-4)
    assert np.array_equal(np.asanyarray(written.dataobj), np.asanyarray(reference.dataobj))


def test_convert_refuses_to_overwrite_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((4, 5, 6), -100, np.int16), np.eye(4)), path)
    before = path.read_bytes()
    code, _, err = run(["convert", str(path), str(path)], capsys)
    assert code == 2 and "is an input of this conversion: refusing to overwrite it" in err
    assert path.read_bytes() == before
    code, _, err = run(["convert", str(path), str(tmp_path / "scan.nrrd")], capsys)
    assert code == 2 and "output must end in .nii.gz or .nii" in err


@pytest.mark.data
def test_convert_output_problems_are_one_line_and_leave_no_temporary(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = str(data_root / "ibsi_sts" / "nifti" / "STS_019" / "CT_image.nii.gz")
    (tmp_path / "folder.nii.gz").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    problems = {
        "twice.nii.gz.nii.gz": "output name must be NAME.nii.gz or NAME.nii with no other image suffix in NAME",
        "twice.nii.nii": "output name must be NAME.nii.gz or NAME.nii with no other image suffix in NAME",
        "folder.nii.gz": "is a folder: name the output file",
        "locked/scan.nii.gz": "locked: cannot be written: ",
        "locked/sub/scan.nii.gz": "locked/sub: cannot be written: ",
    }
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        locked.chmod(0o555)  # not root: a read-only folder does the same
    try:
        for name, message in problems.items():
            code, out, err = run(["convert", scan, str(tmp_path / name)], capsys)
            assert code == 2 and out == "", name
            assert err.startswith("medseg convert: error: ") and message in err, (name, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder.nii.gz", "locked"]


BAD_INPUTS = {
    "empty file": ("empty.nii.gz", "is an empty file (0 bytes)"),
    "folder without images": ("nothing", "holds no DICOM series or image file"),
    "missing slice": ("gap", "unsafe geometry: missing slices"),
    "truncated DICOM": ("truncated", "IM0001: truncated: pixel data holds at most"),
    "2D image": ("flat.nii.gz", "is a 2D image (size 8x9)"),
    "MR DICOM": ("mr", "modality MR is not CT"),
}


@pytest.fixture
def bad_inputs(tmp_path: Path) -> Path:
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "readme.txt").write_text("x")
    paths = write_series(tmp_path / "gap", ramp_volume((5, 4, 4)))
    paths[2].unlink()
    paths = write_series(tmp_path / "truncated", ramp_volume((3, 4, 4)))
    paths[1].write_bytes(paths[1].read_bytes()[:-4])
    nib.save(nib.Nifti1Image(np.zeros((8, 9), np.int16), np.eye(4)), tmp_path / "flat.nii.gz")
    write_series(tmp_path / "mr", ramp_volume((3, 4, 4)), modality="MR")
    return tmp_path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_exit_2_with_one_line(case: str, bad_inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name, message = BAD_INPUTS[case]
    code, out, err = run(["inspect", str(bad_inputs / name)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"medseg inspect: error: {bad_inputs / name}")
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "medseg", "convert", str(tmp_path / "absent"), str(tmp_path / "x.nii.gz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"medseg convert: error: {tmp_path / 'absent'}: does not exist"
