"""Batch behaviour: per-case isolation, resume, overwrite, stale temporaries, summaries, torchrun shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
from medseg.io.atomic import TMP_PREFIX
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
