from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.config import cache_root
from medseg.datasets import fold_datalists, label_names, prepare_dataset, spacing_fingerprint
from medseg.datasets.datalist import STAMP_NAME
from medseg.datasets.manifest import load_manifest
from medseg.errors import ManifestError
from tests.datasets.synthetic import write_msd_folder


def test_label_names_and_spacing_come_from_the_manifest() -> None:
    names = label_names("openkbp")
    assert list(names.items())[:2] == [("background", 0), ("Brainstem", 1)]
    assert len(names) == 8 and names["Mandible"] == 7
    assert spacing_fingerprint("openkbp") == [4.688, 4.688, 2.5]
    assert label_names("ibsi_sts") == {"background": 0, "GTV_Mass": 1}
    with pytest.raises(ManifestError, match="no fingerprint"):
        spacing_fingerprint("pyradiomics")


def test_bad_requests_raise_manifest_errors() -> None:
    with pytest.raises(ManifestError, match="max_cases must be at least 1"):
        fold_datalists("openkbp", 0, max_cases=0)
    with pytest.raises(ManifestError, match=r"fold 5 does not exist: openkbp has folds 0\.\.4"):
        fold_datalists("openkbp", 5)
    with pytest.raises(ManifestError, match="no validation split"):
        fold_datalists("ibsi_sts", -1)
    with pytest.raises(ManifestError, match="no importer"):
        prepare_dataset("pyradiomics")
    with pytest.raises(ManifestError, match="no dataset 'unknown'"):
        prepare_dataset("unknown")


def test_fold_datalists_on_a_users_msd_folder(tmp_path: Path) -> None:
    folder = write_msd_folder(tmp_path / "Task01", [f"c{i}" for i in range(6)])
    train, val = fold_datalists("my_task", 1, dataset_dir=folder)
    assert len(train) + len(val) == 6 and len(val) == 1
    assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in train + val)


@pytest.mark.data
def test_prepare_dataset_imports_once_and_lists_the_cases(data_root: Path) -> None:
    folder = Path(prepare_dataset("openkbp", max_cases=2))
    assert folder == cache_root() / "datasets" / "openkbp"
    first_two = [c.case_id for c in load_manifest().dataset("openkbp").cases[:2]]
    stamp = json.loads((folder / STAMP_NAME).read_text())
    assert set(first_two) <= set(stamp["cases"])
    image = folder / "imagesTr" / f"{first_two[0]}.nii.gz"
    mtime = image.stat().st_mtime_ns
    assert prepare_dataset("openkbp", max_cases=2) == str(folder)
    assert image.stat().st_mtime_ns == mtime  # nothing re-imported
    listed = {Path(e["image"]).name for e in json.loads((folder / "dataset.json").read_text())["training"]}
    assert {f"{c}.nii.gz" for c in first_two} <= listed


@pytest.mark.data
def test_fold_datalists_for_a_fold_and_for_the_source_split(data_root: Path) -> None:
    folds = load_manifest().dataset("openkbp").folds
    assert folds is not None
    train, val = fold_datalists("openkbp", fold=3, max_cases=1)
    assert [i["case_id"] for i in train] == [folds.folds[3].train[0]]
    assert [i["case_id"] for i in val] == [folds.folds[3].validation[0]]
    for item in train + val:
        assert set(item) == {"image", "label", "case_id", "contoured"}
        assert item["contoured"] == [1] * 8  # the folds hold the fully contoured cases
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        assert item["image"].endswith(f"imagesTr/{item['case_id']}.nii.gz")
    train, val = fold_datalists("openkbp", fold=-1, max_cases=2)
    dataset = load_manifest().dataset("openkbp")
    assert [i["case_id"] for i in train] == dataset.split_ids("train")[:2]
    assert [i["case_id"] for i in val] == dataset.split_ids("validation")[:2]


@pytest.mark.data
def test_concurrent_prepare_calls_share_one_import(data_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "shared"
    code = (
        "import sys; from medseg.datasets import fold_datalists;"
        f"t, v = fold_datalists('openkbp', 0, dataset_dir={str(target)!r}, max_cases=2); print(len(t), len(v))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outputs == ["2 2"] * 3
    assert not list(target.rglob(".medseg-tmp-*"))
    assert len(json.loads((target / STAMP_NAME).read_text())["cases"]) == 4


@pytest.mark.data
@pytest.mark.slow
def test_fold_minus_one_trains_on_all_170_and_validates_on_33(data_root: Path) -> None:
    """The official split over all 203 patients; each item says which organs its case carries."""
    train, val = fold_datalists("openkbp", fold=-1)
    assert len(train) == 170 and len(val) == 33
    expected = {
        c["case_id"]: c["organs"]
        for c in json.loads((data_root / "openkbp_partial/datalist.json").read_text())["cases"]
    }
    organs = list(label_names("openkbp"))[1:]
    for item in train + val:
        contoured = expected.get(item["case_id"], organs)  # openkbp/ cases carry all 7
        assert item["contoured"] == [1] + [int(name in contoured) for name in organs], item["case_id"]
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
    assert sum(item["contoured"] == [1] * 8 for item in train + val) == 34  # openkbp_partial has no case with all 7
