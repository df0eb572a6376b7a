"""Batch behaviour: per-case isolation, resume, overwrite, stale temporaries, summaries, torchrun shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medseg.config import REPO_ROOT
from medseg.errors import InputError, MedsegError
from medseg.inference.batch import Shard, segment_folder
from medseg.inference.cases import Case
from medseg.inference.segmenter import Segmenter
from medseg.io.files import TMP_PREFIX
from medseg.reporting import read_summary
from tests.inference.helpers import body_phantom


def _phantom_folder(folder: Path, names: tuple[str, ...] = ("a", "b")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        sitk.WriteImage(body_phantom(origin=(-40.0 + n, 12.5, 300.0)), str(folder / f"{name}.nii.gz"))
    return folder


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*_seg.nii.gz"))}


def test_a_corrupt_case_is_recorded_and_the_batch_goes_on(segmenter: Segmenter, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in")
    (source / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    result = segment_folder(source, tmp_path / "out", segmenter=segmenter, progress=False)
    assert result.exit_code == 1
    assert [(r.case_id, r.status) for r in result.records] == [("a", "ok"), ("b", "ok"), ("broken", "failed")]
    assert "broken.nii.gz" in result.failed[0].error
    assert sorted(p.name for p in (tmp_path / "out").rglob("*_seg.nii.gz")) == ["a_seg.nii.gz", "b_seg.nii.gz"]
    assert not (tmp_path / "out" / "broken" / "case.json").exists()
    summary = read_summary(tmp_path / "out" / "summary.json")
    assert [(r.case_id, r.status) for r in summary] == [("a", "ok"), ("b", "ok"), ("broken", "failed")]
    ok = summary[0]
    assert ok.size == [48, 40, 24] and ok.spacing_mm == [2.0, 2.5, 3.0]
    assert set(ok.seconds) >= {"read", "preprocess", "inference", "invert", "postprocess", "write"}
    assert ok.peak_memory_mb and ok.peak_memory_mb > 0
    assert set(ok.volumes_ml) == set(segmenter.label_names.values())
    # Non-DICOM input: the DICOM formats are skipped with a reason, not failed.
    assert "output_skipped:dicom-seg" in ok.qa_flags and "output_skipped:rtstruct" in ok.qa_flags
    assert ok.warnings == [
        "dicom-seg not written: input is nifti, not DICOM",
        "rtstruct not written: input is nifti, not DICOM",
    ]
    assert ok.outputs == sorted(ok.outputs) or len(ok.outputs) == 4
    csv_rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 4 and "volume_ml:Brainstem" in csv_rows[0]
    assert "dicom-seg not written: input is nifti, not DICOM | rtstruct not written" in csv_rows[1]


def test_resume_skips_complete_cases_and_redoes_incomplete_ones(segmenter: Segmenter, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in")
    out = tmp_path / "out"
    first = segment_folder(source, out, segmenter=segmenter, progress=False)
    before = _mtimes(out)
    manifest = json.loads((out / "a" / "case.json").read_text())
    assert set(manifest["outputs"]) == {"nifti", "seg.nrrd", "ctbl", "png"}
    # Stale temporaries of a killed run, at the top and in a case folder.
    (out / f"{TMP_PREFIX}dead1234-summary.json").write_text("{")
    (out / "b" / f"{TMP_PREFIX}dead5678-b_seg.nii.gz").write_bytes(b"half")
    (out / "b" / "b.seg.nrrd").unlink()  # case b is now incomplete
    second = segment_folder(source, out, segmenter=segmenter, progress=False)
    after = _mtimes(out)
    assert after["a/a_seg.nii.gz"] == before["a/a_seg.nii.gz"]  # skipped
    assert after["b/b_seg.nii.gz"] != before["b/b_seg.nii.gz"]  # redone
    assert (out / "b" / "b.seg.nrrd").is_file()
    assert not list(out.rglob(f"{TMP_PREFIX}*"))
    assert second.records[0].to_dict() == first.records[0].to_dict()  # reused record, unchanged
    third = segment_folder(source, out, segmenter=segmenter, progress=False, overwrite=True)
    assert all(_mtimes(out)[key] != after[key] for key in after)
    assert third.exit_code == 0


def test_other_settings_or_more_formats_redo_the_case(segmenter: Segmenter, test_bundle: Path, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in", names=("a",))
    out = tmp_path / "out"
    segment_folder(source, out, segmenter=segmenter, progress=False, formats=("nifti",))
    assert sorted(p.name for p in (out / "a").iterdir()) == ["a_seg.nii.gz", "case.json"]
    stamp = _mtimes(out)
    segment_folder(source, out, segmenter=segmenter, progress=False, formats=("nifti",))
    assert _mtimes(out) == stamp
    segment_folder(source, out, segmenter=segmenter, progress=False, formats=("nifti", "png"))
    assert (out / "a" / "a_quicklook.png").is_file() and _mtimes(out) != stamp
    stamp = _mtimes(out)
    unprocessed = Segmenter(test_bundle, device="cpu", postprocess=False)
    segment_folder(source, out, segmenter=unprocessed, progress=False, formats=("nifti",))
    assert _mtimes(out) != stamp
    assert json.loads((out / "a" / "case.json").read_text())["settings"]["postprocess"] is False
    assert not (out / "a" / "a_quicklook.png").exists()  # the redo removed what the old manifest listed


def test_dicom_input_gets_dicom_seg_and_rtstruct(segmenter: Segmenter, tmp_path: Path) -> None:
    from tests.io.dicom_factory import write_series

    volume = sitk.GetArrayFromImage(body_phantom(size_xyz=(40, 32, 10)))
    # written without PatientBirthDate, PatientSex, ReferringPhysicianName (type 2), as de-identification leaves
    # series: the writers add them empty
    files = write_series(tmp_path / "in" / "patient 7" / "CT", volume, pixel_spacing=(2.5, 2.0), step=3.0)
    assert "PatientBirthDate" not in pydicom.dcmread(files[0])
    # A folder holding one series folder is one case, named after the folder.
    result = segment_folder(tmp_path / "in" / "patient 7", tmp_path / "out", segmenter=segmenter, progress=False)
    record = result.records[0]
    assert record.case_id == "patient_7" and record.status == "ok", record.error
    folder = tmp_path / "out" / "patient_7"
    seg = hd.seg.segread(folder / "patient_7_seg.dcm")
    source_uids = {str(sitk.ReadImage(str(f)).GetMetaData("0008|0018")) for f in files}
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= source_uids
    assert (folder / "patient_7_rtstruct.dcm").is_file()
    assert not [flag for flag in record.qa_flags if flag.startswith("output_skipped")]


def test_reader_warnings_and_skipped_outputs_reach_the_summary(test_bundle: Path, tmp_path: Path) -> None:
    from tests.io.dicom_factory import write_series

    volume = sitk.GetArrayFromImage(body_phantom(size_xyz=(40, 32, 8)))
    offsets = [0.0, 2.5, 5.0, 10.0, 12.5, 15.0, 17.5, 20.0]  # a slice missing after the third
    write_series(tmp_path / "in" / "uneven", volume, positions=[(-40.0, -30.0, 100.0 + z) for z in offsets])
    repairing = Segmenter(test_bundle, device="cpu", fix_geometry=True)
    result = segment_folder(tmp_path / "in", tmp_path / "out", segmenter=repairing, progress=False)
    record = result.records[0]
    assert record.status == "ok", record.error
    repairs = [flag for flag in record.qa_flags if flag == "geometry_repaired"]
    assert repairs and len(record.warnings) == len(repairs) + 2  # the repairs, then the two DICOM outputs
    assert record.warnings[-2:] == [
        f"{fmt} not written: the reader resampled the series to repair its geometry, so the mask's planes are not "
        "its slices"
        for fmt in ("dicom-seg", "rtstruct")
    ]
    (summary,) = read_summary(tmp_path / "out" / "summary.json")
    assert summary.warnings == record.warnings
    row = (tmp_path / "out" / "summary.csv").read_text().splitlines()[1]
    assert all(warning in row for warning in record.warnings[:-2])
    # a resumed batch reports the same warnings (the record comes back from case.json)
    again = segment_folder(tmp_path / "in", tmp_path / "out", segmenter=repairing, progress=False)
    assert again.records[0].warnings == record.warnings


def test_output_inside_input_is_refused(segmenter: Segmenter, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in", names=("a",))
    with pytest.raises(InputError, match="inside the input folder"):
        segment_folder(source, source / "out", segmenter=segmenter, progress=False)


def test_shards_take_every_nth_case() -> None:
    cases = [Case(f"c{n}", Path(f"/x/{n}")) for n in range(5)]
    assert [c.case_id for c in Shard(0, 2).take(cases)] == ["c0", "c2", "c4"]
    assert [c.case_id for c in Shard(1, 2).take(cases)] == ["c1", "c3"]
    assert Shard(3, 4).take(cases[:2]) == []


def test_shard_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert Shard.from_env() == Shard(0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert Shard.from_env() == Shard(3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(MedsegError, match="not a valid torchrun rank"):
        Shard.from_env()


@pytest.mark.slow
def test_torchrun_two_processes_merge_their_shards(test_bundle: Path, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in", names=("a", "b", "c"))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port on this machine
        "--nproc_per_node",
        "2",
        str(REPO_ROOT / "pipelines" / "segment_folder.py"),
        str(source),
        str(out),
        "--bundle",
        str(test_bundle),
        "--device",
        "cpu",
        "--formats",
        "nifti",
        "--no-progress",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = read_summary(out / "summary.json")
    assert [(r.case_id, r.status) for r in merged] == [("a", "ok"), ("b", "ok"), ("c", "ok")]
    shard0 = read_summary(out / ".medseg-shards" / "rank-0-of-2" / "summary.json")
    shard1 = read_summary(out / ".medseg-shards" / "rank-1-of-2" / "summary.json")
    assert [r.case_id for r in shard0] == ["a", "c"] and [r.case_id for r in shard1] == ["b"]
    masks = [sitk.GetArrayFromImage(sitk.ReadImage(str(out / n / f"{n}_seg.nii.gz"))) for n in ("a", "b", "c")]
    assert all(mask.shape == (24, 40, 48) and mask.dtype == np.uint8 for mask in masks)


def _real_dicom(data_root: Path) -> list[Path]:
    return sorted((data_root / "ibsi_sts" / "dicom" / "STS_019" / "CT" / "image").glob("*.dcm"))


@pytest.mark.data
def test_no_patient_vanishes_from_a_batch(
    segmenter: Segmenter, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _phantom_folder(tmp_path / "in", names=("good",))
    real = _real_dicom(data_root)[0].read_bytes()
    (source / "corrupt").mkdir()
    (source / "corrupt" / "IM0").write_bytes(real[:2000])  # a real header cut short
    (source / "cut").mkdir()
    (source / "cut" / "IM0.dcm").write_bytes(real[:100])  # cut before its DICM signature
    (source / "zeros").mkdir()
    for n in range(3):
        (source / "zeros" / f"{n}.dcm").write_bytes(b"")
    (source / "notes").mkdir()
    (source / "notes" / "report.pdf").write_bytes(b"%PDF-1.4")
    (source / "empty").mkdir()
    (source / "locked").mkdir()
    (source / "moved").symlink_to(tmp_path / "nowhere")
    (source / "list.csv").write_text("id\n1\n")
    real_scandir = os.scandir

    def scandir(path: object = ".") -> object:  # the tests run as root: simulate a folder the user cannot read
        if str(path) == str(source / "locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    result = segment_folder(source, tmp_path / "out", segmenter=segmenter, progress=False, formats="nifti")
    statuses = {r.case_id: r.status for r in result.records}
    assert statuses == {
        "good": "ok",
        "corrupt": "failed",
        "cut": "failed",
        "zeros": "failed",
        "notes": "failed",
        "empty": "failed",
        "locked": "failed",
        "moved": "failed",
        "list.csv": "skipped",
    }
    errors = {r.case_id: r.error for r in result.records}
    assert "corrupt" in errors["corrupt"] and "IM0" in errors["corrupt"]  # the reader's one line on the file
    assert errors["zeros"].endswith("3 empty (zero-byte) file(s): 0.dcm, 1.dcm, 2.dcm")
    assert errors["locked"].endswith("locked: cannot be listed: Permission denied")
    assert errors["list.csv"].startswith("not a scan")
    assert result.exit_code == 1
    summary = read_summary(tmp_path / "out" / "summary.json")
    assert {r.case_id: r.status for r in summary} == statuses
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"] == {
        "ok": 1,
        "failed": 7,
        "skipped": 1,
    }
    assert len((tmp_path / "out" / "summary.csv").read_text().splitlines()) == 1 + len(statuses)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "good",
        "report.html",
        "summary.csv",
        "summary.json",
    ]


@pytest.mark.data
def test_symlinked_series_folder_is_segmented_as_inspect_reads_it(
    segmenter: Segmenter, data_root: Path, tmp_path: Path
) -> None:
    from medseg.io.readers import read_scan

    series = data_root / "ibsi_sts" / "dicom" / "STS_019" / "CT" / "image"
    source = _phantom_folder(tmp_path / "patients", names=("other",))
    (source / "STS_019").mkdir()
    (source / "STS_019" / "CT").symlink_to(series, target_is_directory=True)
    (source / "STS_019" / "loop").symlink_to(source / "STS_019", target_is_directory=True)
    result = segment_folder(source, tmp_path / "out", segmenter=segmenter, progress=False, formats="nifti")
    record = {r.case_id: r for r in result.records}["STS_019"]
    assert record.status == "ok", record.error
    scan = read_scan(source / "STS_019").image  # what medseg inspect reads
    mask = sitk.ReadImage(str(tmp_path / "out" / "STS_019" / "STS_019_seg.nii.gz"))
    assert mask.GetSize() == scan.GetSize() == (136, 134, 47)
    np.testing.assert_allclose(mask.GetOrigin(), scan.GetOrigin(), atol=1e-4)
    assert record.series.endswith(f"({len(_real_dicom(data_root))} files)")


def test_a_case_folder_that_is_a_file_fails_only_that_case(segmenter: Segmenter, tmp_path: Path) -> None:
    source = _phantom_folder(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("in the way")
    result = segment_folder(source, out, segmenter=segmenter, progress=False, formats="nifti")
    assert [(r.case_id, r.status) for r in result.records] == [("a", "failed"), ("b", "ok")]
    assert (
        result.records[0].error
        == f"{out / 'a'}: exists and is not a folder: the case's outputs cannot be written there"
    )
    assert [(r.case_id, r.status) for r in read_summary(out / "summary.json")] == [("a", "failed"), ("b", "ok")]
    assert (out / "a").read_text() == "in the way"


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """chattr +i on folders (undone afterwards); skips where the file system or the user cannot."""
    done: list[Path] = []

    def lock(folder: Path) -> None:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        done.append(folder)

    yield lock
    for folder in done:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_output_folder_problems_are_one_error_before_any_case(
    segmenter: Segmenter, tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    source = _phantom_folder(tmp_path / "in", names=("a",))
    as_file = tmp_path / "out_file"
    as_file.write_text("x")
    with pytest.raises(MedsegError, match="out_file: exists and is not a folder"):
        segment_folder(source, as_file, segmenter=segmenter, progress=False)
    (tmp_path / "out_dir" / "summary.csv").mkdir(parents=True)
    with pytest.raises(MedsegError, match=r"summary.csv: is not a file"):
        segment_folder(source, tmp_path / "out_dir", segmenter=segmenter, progress=False)
    locked = tmp_path / "locked"
    locked.mkdir()
    immutable(locked)
    with pytest.raises(MedsegError, match="locked: cannot be written: Operation not permitted"):
        segment_folder(source, locked, segmenter=segmenter, progress=False)
    with pytest.raises(MedsegError, match="locked/out: cannot be created: Operation not permitted"):
        segment_folder(source, locked / "out", segmenter=segmenter, progress=False)
    assert not list((tmp_path / "out_dir").iterdir())[1:] and not list(locked.iterdir())


def test_an_unwritable_case_folder_fails_that_case(
    segmenter: Segmenter, tmp_path: Path, immutable: Callable[[Path], None]
) -> None:
    source = _phantom_folder(tmp_path / "in")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    immutable(out / "a")
    result = segment_folder(source, out, segmenter=segmenter, progress=False, formats="nifti")
    assert [(r.case_id, r.status) for r in result.records] == [("a", "failed"), ("b", "ok")]
    assert result.records[0].error == f"{out / 'a'}: cannot be written: Operation not permitted"


def test_debug_prints_the_traceback_of_a_failed_case(
    segmenter: Segmenter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _phantom_folder(tmp_path / "in", names=())
    (source / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    segment_folder(source, tmp_path / "out", segmenter=segmenter, progress=False, formats="nifti")
    assert "Traceback" not in capsys.readouterr().err
    segment_folder(source, tmp_path / "out2", segmenter=segmenter, progress=False, formats="nifti", debug=True)
    err = capsys.readouterr().err
    assert "broken failed:\nTraceback (most recent call last):" in err and "segment" in err


def test_a_requested_format_not_written_is_counted_and_strict_fails_the_case(
    segmenter: Segmenter, tmp_path: Path
) -> None:
    source = _phantom_folder(tmp_path / "in", names=("a",))
    out = tmp_path / "out"
    # --formats all: DICOM formats are expected of DICOM input only
    assert segment_folder(source, out, segmenter=segmenter, progress=False).not_written == {}
    # named explicitly, they are missing; the resumed case (complete for these formats) says so too
    explicit = segment_folder(source, out, segmenter=segmenter, progress=False, formats="nifti,dicom-seg")
    assert explicit.records[0].status == "ok" and explicit.exit_code == 0
    assert explicit.not_written == {"a": {"dicom-seg": "input is nifti, not DICOM"}}
    strict = segment_folder(
        source, out, segmenter=segmenter, progress=False, formats="nifti,dicom-seg", strict_formats=True
    )
    assert strict.records[0].status == "failed" and strict.exit_code == 1
    assert strict.records[0].error == (
        "requested output(s) not written (--strict-formats): dicom-seg (input is nifti, not DICOM)"
    )
    assert not (out / "a" / "case.json").exists()  # a failed case is redone next time


def test_one_failing_writer_costs_only_its_format(
    segmenter: Segmenter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from medseg.inference import outputs

    def broken_writer(*args: object, **kwargs: object) -> None:
        raise ValueError("PatientName has 2 values")

    monkeypatch.setattr(outputs, "write_seg_nrrd", broken_writer)
    source = _phantom_folder(tmp_path / "in", names=("a",))
    out = tmp_path / "out"
    result = segment_folder(source, out, segmenter=segmenter, progress=False, formats="nifti,seg.nrrd,png", debug=True)
    (record,) = result.records
    assert record.status == "ok"
    assert result.not_written == {"a": {"seg.nrrd": "the seg.nrrd writer failed: ValueError: PatientName has 2 values"}}
    assert sorted(p.name for p in (out / "a").iterdir()) == ["a_quicklook.png", "a_seg.nii.gz", "case.json"]
    manifest = json.loads((out / "a" / "case.json").read_text())
    assert set(manifest["outputs"]) == {"nifti", "png"} and set(manifest["skipped_outputs"]) == {"seg.nrrd"}
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "PatientName has 2 values" in captured.err


@pytest.mark.data
def test_a_series_without_preamble_gets_its_dicom_outputs(
    segmenter: Segmenter, data_root: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in" / "STS_019"
    source.mkdir(parents=True)
    for path in _real_dicom(data_root):  # old exports: a bare data set, no preamble, no file meta
        dataset = pydicom.dcmread(path)
        dataset.file_meta = pydicom.dataset.FileMetaDataset()
        dataset.preamble = None
        pydicom.dcmwrite(source / path.name, dataset, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert (source / path.name).read_bytes()[:2] == b"\x08\x00"
    # (dicom-seg only: the RTSTRUCT writer re-reads the headers the same way, and takes ~40 s on this mask)
    result = segment_folder(source, tmp_path / "out", segmenter=segmenter, progress=False, formats="dicom-seg")
    assert result.records[0].status == "ok" and result.not_written == {}, result.records[0].outputs_not_written
    seg = hd.seg.segread(tmp_path / "out" / "STS_019" / "STS_019_seg.dcm")
    assert seg.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
