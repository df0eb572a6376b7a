from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.config import MANIFEST_PATH
from medseg.datasets.validate import Problem, sha256_file, validate_manifest


def test_sha256_file_reads_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * (3 << 20) + b"b")
    import hashlib

    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unreadable_manifest_is_one_problem(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text("[]")
    problems = validate_manifest(tmp_path / "m.json", tmp_path)
    assert len(problems) == 1 and problems[0].dataset == "manifest" and "must be a JSON object" in problems[0].problem


@pytest.mark.data
def test_real_data_root_passes_fast(data_root: Path) -> None:
    start = time.perf_counter()
    assert validate_manifest(MANIFEST_PATH, data_root) == []
    assert time.perf_counter() - start < 15


def _symlink_farm(data_root: Path, farm: Path) -> None:
    for path in data_root.rglob("*"):
        if path.is_file():
            target = farm / path.relative_to(data_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target)


def _replace(farm: Path, rel: str, data: bytes) -> None:
    (farm / rel).unlink()
    (farm / rel).write_bytes(data)


@pytest.mark.data
def test_corrupted_copy_lists_every_problem(data_root: Path, tmp_path: Path) -> None:
    farm = tmp_path / "data"
    _symlink_farm(data_root, farm)
    # 1. a file missing
    (farm / "openkbp/train-pats/pt_4/Larynx.csv").unlink()
    # 2. one byte changed, same size
    dcm = "ibsi_sts/dicom/STS_002/CT/image/000000.dcm"
    data = bytearray((data_root / dcm).read_bytes())
    data[-1] ^= 0xFF
    _replace(farm, dcm, bytes(data))
    # 3. a label with an undeclared value (monai declares 0 and 1)
    label_rel = "monai/anatomical_label.nii.gz"
    label = sitk.ReadImage(str(data_root / label_rel))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 5
    bad_label = sitk.GetImageFromArray(array)
    bad_label.CopyInformation(label)
    (farm / label_rel).unlink()
    sitk.WriteImage(bad_label, str(farm / label_rel))
    # 4. a label on another grid (origin shifted by one voxel)
    nrrd_rel = "pyradiomics/lung1_label.nrrd"
    lung = sitk.ReadImage(str(data_root / nrrd_rel))
    lung.SetOrigin(tuple(np.array(lung.GetOrigin()) + np.array(lung.GetSpacing())))
    (farm / nrrd_rel).unlink()
    sitk.WriteImage(lung, str(farm / nrrd_rel), useCompression=True)
    # 5. an OpenKBP mask indexing outside the 128^3 grid
    _replace(farm, "openkbp/train-pats/pt_13/Esophagus.csv", b",data\n5,\n2097152,\n")
    # 6. a file nobody listed
    (farm / "dcmqi/notes.txt").write_text("hello")
    # 7. folds that no longer partition the cases
    raw = json.loads(MANIFEST_PATH.read_text())
    folds = raw["datasets"]["ibsi_sts"]["folds"]["folds"]
    folds[0]["validation"].append(folds[1]["validation"][0])
    folds[2]["train"].append("STS_999")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(raw))

    problems = validate_manifest(manifest, farm)
    text = "\n".join(str(p) for p in problems)

    def has(path: str | None, phrase: str) -> bool:
        return any(p.path == path and phrase in p.problem for p in problems)

    assert has("openkbp/train-pats/pt_4/Larynx.csv", "missing"), text
    assert has("openkbp/train-pats/pt_4/Larynx.csv", "case 'pt_4': referenced path does not exist"), text
    assert has(dcm, "sha256"), text
    assert has(label_rel, "label values [5] are not declared"), text
    assert has(label_rel, "size") or has(label_rel, "sha256"), text
    assert has(nrrd_rel, "label grid differs from the image's (label vs image): origin ("), text
    assert has("openkbp/train-pats/pt_13/Esophagus.csv", "2097152"), text
    assert has("dcmqi/notes.txt", "not listed"), text
    assert any(p.dataset == "ibsi_sts" and "validated in more than one fold" in p.problem for p in problems), text
    assert any(p.dataset == "ibsi_sts" and "'STS_999'" in p.problem for p in problems), text
    # nothing else is reported: every problem above, and only those
    expected_paths = {
        "openkbp/train-pats/pt_4/Larynx.csv",
        dcm,
        label_rel,
        nrrd_rel,
        "openkbp/train-pats/pt_13/Esophagus.csv",
        "dcmqi/notes.txt",
        None,
    }
    assert {p.path for p in problems} <= expected_paths, text
    assert str(Problem("x", "a/b", "bad")) == "x: a/b: bad"

    sizes_only = validate_manifest(manifest, farm, checksums=False)
    assert not any(p.path == dcm for p in sizes_only)  # same size: only the sha256 finds it


def _tiny_manifest(tmp_path: Path, cases: list[dict[str, object]]) -> Path:
    """A manifest of one dataset ``mine`` (folder ``mine/``) listing every file under it."""
    files = [
        {"path": p.relative_to(tmp_path).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted((tmp_path / "mine").rglob("*"))
        if p.is_file()
    ]
    source = {"repository": "me", "url": "https://example.org"}
    dataset = {
        "title": "t", "description": "d", "folder": "mine", "modality": "CT", "licence": "CC0", "source": source,
        "citations": [], "importer": None, "labels": {"background": 0, "liver": 1, "spleen": 2},
        "files": files, "cases": cases,
    }  # fmt: skip
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "description": "d", "datasets": {"mine": dataset}}))
    return path


def test_partially_contoured_cases_hold_only_their_contoured_labels(tmp_path: Path) -> None:
    """A manifest case may declare its contoured labels; label voxels of another label are a problem."""
    label = np.zeros((4, 5, 6), np.uint8)
    label[1, 1, 1], label[2, 2, 2] = 1, 2
    (tmp_path / "mine").mkdir()
    for name in ("a", "b"):
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / f"mine/{name}_ct.nrrd"))
        sitk.WriteImage(sitk.GetImageFromArray(label), str(tmp_path / f"mine/{name}_seg.nrrd"))
    cases = [
        {"id": "a", "split": "train", "image": "mine/a_ct.nrrd", "label": "mine/a_seg.nrrd"},
        {"id": "b", "split": "train", "image": "mine/b_ct.nrrd", "label": "mine/b_seg.nrrd", "contoured": ["liver"]},
    ]
    problems = validate_manifest(_tiny_manifest(tmp_path, cases), tmp_path)
    assert [(p.path, p.problem) for p in problems] == [
        ("mine/b_seg.nrrd", "case 'b': label values [2] are present but not contoured in this case [1]")
    ]
    cases[1]["contoured"] = ["liver", "spleen"]
    assert validate_manifest(_tiny_manifest(tmp_path, cases), tmp_path) == []
