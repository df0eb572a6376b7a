from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.datasets.msd import msd_fold_datalists, msd_folds, read_msd_dataset, validate_msd, write_msd_datalist
from medseg.errors import InputError
from tests.datasets.synthetic import write_msd_folder, write_nifti

IDS = ["liver_1", "liver_2", "liver_3", "liver_4", "liver_5", "liver_6"]


@pytest.mark.parametrize("style", ["msd", "nnunetv2"])
def test_both_layouts_parse_to_the_same_cases(tmp_path: Path, style: str) -> None:
    folder = write_msd_folder(tmp_path / style, IDS, {"background": 0, "liver": 1, "tumour": 2}, style=style)
    dataset = read_msd_dataset(folder)
    assert dataset.style == style
    assert dataset.labels == {"background": 0, "liver": 1, "tumour": 2}
    assert [c.case_id for c in dataset.cases] == IDS
    suffix = "_0000.nii.gz" if style == "nnunetv2" else ".nii.gz"
    assert all(c.image.name == c.case_id + suffix and c.image.is_file() for c in dataset.cases)
    assert validate_msd(dataset) == []


def test_validation_lists_each_problem(tmp_path: Path) -> None:
    folder = write_msd_folder(tmp_path / "ds", IDS, style="nnunetv2")
    write_nifti(folder / "imagesTr" / "orphan_0000.nii.gz", np.zeros((6, 5, 4), np.float32))
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    write_nifti(folder / "labelsTr" / "liver_2.nii.gz", np.zeros((6, 5, 4), np.uint8), shifted)
    write_nifti(folder / "labelsTr" / "liver_3.nii.gz", np.full((6, 5, 4), 4, np.uint8))
    write_nifti(folder / "labelsTr" / "liver_4.nii.gz", np.zeros((6, 5, 3), np.uint8))
    (folder / "imagesTr" / "liver_5_0000.nii.gz").unlink()
    problems = validate_msd(read_msd_dataset(folder))
    text = "\n".join(problems)
    assert "orphan_0000.nii.gz: image has no label" in text
    # NIfTI x is flipped into LPS; one grid rule (medseg.io.geometry.grid_differences)
    grid = "label grid differs from the image's (label vs image)"
    assert f"liver_2.nii.gz: {grid}: origin (-2, 0, 0) vs (0, 0, 0)" in text
    assert "liver_3.nii.gz: label values [4] are not declared" in text
    assert f"liver_4.nii.gz: {grid}: size (6, 5, 3) vs (6, 5, 4)" in text
    assert "liver_5_0000.nii.gz: missing" in text
    assert len(problems) == 5


def test_bad_dataset_json_is_refused(tmp_path: Path) -> None:
    folder = write_msd_folder(tmp_path / "ds", IDS[:2])
    raw = json.loads((folder / "dataset.json").read_text())
    raw["labels"] = {"background": 0, "organ": [1, 2]}
    (folder / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="region-based labels"):
        read_msd_dataset(folder)
    raw["labels"] = {"0": "background"}
    raw["modality"] = {"0": "CT", "1": "PET"}
    (folder / "dataset.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="2 image channels"):
        read_msd_dataset(folder)
    with pytest.raises(InputError, match="not an MSD / nnU-Net folder"):
        read_msd_dataset(tmp_path / "nothing")


def test_folds_from_nnunet_splits_file_or_generated(tmp_path: Path) -> None:
    folder = write_msd_folder(tmp_path / "ds", IDS)
    generated = msd_folds(read_msd_dataset(folder))
    assert generated.n_folds == 5 and sorted(c for f in generated.folds for c in f.validation) == sorted(IDS)
    splits = [{"train": IDS[:4], "val": IDS[4:]}, {"train": IDS[2:], "val": IDS[:2]}]
    (folder / "splits_final.json").write_text(json.dumps(splits))
    train, val = msd_fold_datalists(folder, fold=1, max_cases=1)
    assert [i["case_id"] for i in train] == ["liver_3"] and [i["case_id"] for i in val] == ["liver_1"]
    assert Path(train[0]["image"]).is_file()
    (folder / "splits_final.json").write_text(json.dumps([{"train": ["ghost"], "val": IDS}]))
    with pytest.raises(InputError, match="ghost"):
        msd_folds(read_msd_dataset(folder))


def test_datalist_json_is_monai_decathlon_style(tmp_path: Path) -> None:
    from monai.data import load_decathlon_datalist

    dataset = read_msd_dataset(write_msd_folder(tmp_path / "ds", IDS, style="nnunetv2"))
    path = write_msd_datalist(dataset, tmp_path / "out", msd_folds(dataset))
    items = load_decathlon_datalist(str(path), data_list_key="training")
    assert [i["case_id"] for i in items] == IDS
    assert sorted(i["fold"] for i in items) == sorted([0, 0, 1, 2, 3, 4])
    splits = json.loads((tmp_path / "out" / "splits_final.json").read_text())
    assert len(splits) == 5 and set(splits[0]) == {"train", "val"}


def _declare(
    folder: Path, per_entry: dict[str, list[str]] | None = None, top: dict[str, list[str]] | None = None
) -> None:
    raw = json.loads((folder / "dataset.json").read_text())
    for entry in raw.get("training", []):
        case_id = Path(entry["image"]).name.removesuffix(".nii.gz")
        if per_entry and case_id in per_entry:
            entry["contoured"] = per_entry[case_id]
    if top is not None:
        raw["contoured"] = top
    (folder / "dataset.json").write_text(json.dumps(raw))


LIVER_TUMOUR = {"background": 0, "liver": 1, "tumour": 2}


@pytest.mark.parametrize("style", ["msd", "nnunetv2"])
def test_per_case_contoured_labels_reach_the_datalist(tmp_path: Path, style: str) -> None:
    """A case may declare the labels contoured in it; undeclared cases are fully labelled."""
    folder = write_msd_folder(tmp_path / style, IDS, LIVER_TUMOUR, style=style)
    tumour_only = np.zeros((6, 5, 4), np.uint8)
    tumour_only[1:3, 1:3, 1:3] = 2
    write_nifti(folder / "labelsTr" / "liver_3.nii.gz", tumour_only)
    if style == "msd":  # per training entry, and the top-level map for another case
        _declare(folder, per_entry={"liver_2": ["liver"]}, top={"liver_3": ["tumour", "background"]})
    else:  # nnU-Net v2 has no training list: the top-level map only
        _declare(folder, top={"liver_2": ["liver"], "liver_3": ["tumour", "background"]})
    dataset = read_msd_dataset(folder)
    assert [c.contoured for c in dataset.cases[:4]] == [None, ("liver",), ("background", "tumour"), None]
    assert validate_msd(dataset) == []
    (folder / "splits_final.json").write_text(json.dumps([{"train": IDS[:4], "val": IDS[4:]}]))
    train, val = msd_fold_datalists(folder, fold=0)
    assert [item["contoured"] for item in train] == [[1, 1, 1], [1, 1, 0], [1, 0, 1], [1, 1, 1]]
    assert all(item["contoured"] == [1, 1, 1] for item in val)
    written = json.loads(write_msd_datalist(dataset, tmp_path / "out", msd_folds(dataset)).read_text())
    assert written["training"][1]["contoured"] == [1, 1, 0]


def test_contoured_declarations_are_checked(tmp_path: Path) -> None:
    folder = write_msd_folder(tmp_path / "ds", IDS, LIVER_TUMOUR)
    _declare(folder, per_entry={"liver_1": ["liver", "spleen"]})
    with pytest.raises(InputError, match=r"training\[0\] \(liver_1\): 'contoured' names \['spleen'\]"):
        read_msd_dataset(folder)
    _declare(folder, per_entry={"liver_1": "liver"})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="must be a list of label names"):
        read_msd_dataset(folder)
    _declare(folder, per_entry={"liver_1": ["liver"]}, top={"ghost": ["liver"]})
    with pytest.raises(InputError, match=r"names cases that are not in the dataset: \['ghost'\]"):
        read_msd_dataset(folder)
    # the label map of liver_1 holds label 1 everywhere it has foreground: declaring only the tumour is a lie
    _declare(folder, per_entry={"liver_1": ["tumour"]}, top={})
    problems = validate_msd(read_msd_dataset(folder))
    assert len(problems) == 1 and "liver_1.nii.gz: label values [1] are present but not contoured" in problems[0]
