from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.datasets.datalist import ensure_cases
from medseg.datasets.manifest import load_manifest
from medseg.datasets.openkbp import (
    GRID,
    LABELS,
    OVERLAP_PRIORITY,
    case_files,
    find_cases,
    import_openkbp,
    load_case,
    openkbp_affine,
    read_sparse_csv,
)
from medseg.errors import InputError
from tests.datasets.synthetic import write_openkbp_case, write_sparse_csv


def flat(i: int, j: int, k: int) -> int:
    return int(np.ravel_multi_index((i, j, k), GRID))


def test_affine_maps_axes_to_ras() -> None:
    affine = openkbp_affine((3.0, 4.0, 5.0))
    assert nib.aff2axcodes(affine) == ("P", "L", "I")
    # index (i, j, k) -> (x_R, y_A, z_S) = (-j*s1, -i*s0, -k*s2)
    assert np.allclose(affine @ [1, 2, 3, 1], [-8.0, -3.0, -15.0, 1.0])


def test_load_case_hu_overlap_contoured_and_body(tmp_path: Path) -> None:
    case_dir = tmp_path / "train-pats" / "pt_1"
    ct = {flat(0, 0, 5): 1024.0, flat(1, 1, 5): 5000.0, flat(2, 2, 6): 2000.0, flat(3, 3, 7): 1.0}
    shared = flat(2, 2, 6)
    write_openkbp_case(
        case_dir,
        (3.0, 4.0, 5.0),
        ct,
        {"Brainstem": [shared, flat(0, 0, 5)], "SpinalCord": [shared, flat(9, 9, 9)], "Mandible": [flat(1, 1, 5)]},
    )
    case = load_case(case_dir)
    assert case.hu.shape == GRID and case.hu.dtype == np.int16 and case.label.dtype == np.uint8
    assert case.hu[0, 0, 5] == 0  # raw 1024 -> 0 HU
    assert case.hu[1, 1, 5] == 3071  # raw 5000 is clipped to 4095 first
    assert case.hu[2, 2, 6] == 2000 - 1024
    assert case.hu[50, 50, 50] == -1024  # unstored raw 0 is air
    # Brainstem outranks SpinalCord in OVERLAP_PRIORITY, so it keeps the shared voxel.
    assert OVERLAP_PRIORITY.index("Brainstem") < OVERLAP_PRIORITY.index("SpinalCord")
    assert case.label[2, 2, 6] == LABELS["Brainstem"]
    assert case.label[9, 9, 9] == LABELS["SpinalCord"]
    assert case.label[1, 1, 5] == LABELS["Mandible"]
    report = case.report
    assert report.overlap_voxels == 1
    assert report.metal_clipped == 1
    assert report.labels_outside_body == 1  # (9, 9, 9) has no CT value
    assert report.contoured == ("Brainstem", "SpinalCord", "Mandible")  # label-id order
    assert report.voxels["Brainstem"] == 2 and report.voxels["Larynx"] == 0
    assert report.body_slices == (5, 7) and report.partial_field  # the body does not reach slice 0
    assert np.allclose(case.affine, openkbp_affine((3.0, 4.0, 5.0)))


def test_read_sparse_csv_rejects_bad_files(tmp_path: Path) -> None:
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("index,data\n1,\n")
    with pytest.raises(InputError, match="header"):
        read_sparse_csv(bad_header, 10, values=False)
    out_of_range = tmp_path / "b.csv"
    write_sparse_csv(out_of_range, [3, 10])
    with pytest.raises(InputError, match=r"flat index 10 is not an integer in \[0, 10\)"):
        read_sparse_csv(out_of_range, 10, values=False)
    empty = tmp_path / "c.csv"
    write_sparse_csv(empty, [])
    index, values = read_sparse_csv(empty, 10, values=False)
    assert index.size == 0 and values is None
    with pytest.raises(InputError, match="not found"):
        read_sparse_csv(tmp_path / "missing.csv", 10, values=True)


def test_import_writes_msd_layout_with_exact_affine(tmp_path: Path) -> None:
    source = tmp_path / "provided-data"
    write_openkbp_case(source / "train-pats" / "pt_2", (3.906, 3.906, 2.5), {flat(5, 6, 7): 1100.0}, {"Larynx": [7]})
    write_openkbp_case(source / "validation-pats" / "pt_10", (4.0, 4.0, 3.0), {flat(0, 0, 0): 10.0}, {})
    assert [(c.split, c.case_id) for c in find_cases(source)] == [("train", "pt_2"), ("validation", "pt_10")]
    out = tmp_path / "out"
    reports = import_openkbp(source, out)
    assert [r.case_id for r in reports] == ["pt_2", "pt_10"]
    image = nib.load(out / "imagesTr" / "pt_2.nii.gz")
    label = nib.load(out / "labelsTr" / "pt_2.nii.gz")
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
    expected = openkbp_affine((3.906, 3.906, 2.5))
    for img in (image, label):
        assert np.allclose(img.affine, expected, atol=1e-6)  # float32 storage of 3.906
        assert img.header.get_qform(coded=True)[1] == 1 and img.header.get_sform(coded=True)[1] == 1
    assert np.asarray(image.dataobj)[5, 6, 7] == 76
    assert np.asarray(label.dataobj).flat[7] == LABELS["Larynx"]
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 2 and dataset["labels"]["6"] == "Larynx"
    assert [e["contoured"] for e in dataset["training"]] == [["Larynx"], []]
    report = json.loads((out / "import_report.json").read_text())
    assert [row["split"] for row in report["cases"]] == ["train", "validation"]
    assert report["overlap_priority"] == list(OVERLAP_PRIORITY)
    # one unreadable case neither stops the others nor vanishes: it is named once they are written
    write_openkbp_case(source / "train-pats" / "pt_3", (3.0, 3.0, 3.0), {7: 100.0}, {"Larynx": [2]})
    (source / "train-pats" / "pt_1" / "ct.csv").parent.mkdir(parents=True)
    (source / "train-pats" / "pt_1" / "ct.csv").write_text("index,data\n")
    (source / "train-pats" / "pt_1" / "voxel_dimensions.csv").write_text("1\n1\n1\n")
    with pytest.raises(InputError, match=r"1 of 4 case\(s\) not imported: pt_1 \(.*pt_1/ct\.csv: expected the OpenKBP"):
        import_openkbp(source, tmp_path / "again")
    listed = [e["image"] for e in json.loads((tmp_path / "again" / "dataset.json").read_text())["training"]]
    assert listed == ["./imagesTr/pt_2.nii.gz", "./imagesTr/pt_3.nii.gz", "./imagesTr/pt_10.nii.gz"]


# Label voxel counts of pt_4 from SOURCES.md section 7.
PT4_VOXELS = {
    "Brainstem": 817,
    "SpinalCord": 631,
    "RightParotid": 540,
    "LeftParotid": 581,
    "Esophagus": 185,
    "Larynx": 310,
    "Mandible": 1664,
}


def _centroid_ras(label: np.ndarray, label_id: int, affine: np.ndarray) -> np.ndarray:
    ijk = np.argwhere(label == label_id).mean(axis=0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.mark.data
def test_all_34_cases_are_anatomically_placed(data_root: Path) -> None:
    cases = find_cases(data_root / "openkbp")
    assert len(cases) == 34
    for files in cases:
        case = load_case(files)
        c = {name: _centroid_ras(case.label, i, case.affine) for name, i in LABELS.items()}
        where = files.case_id
        assert case.report.contoured == tuple(LABELS), where
        # RAS+ (nibabel, NIfTI): +x points to the patient's Right, +y Anterior, +z Superior. So the right parotid
        # has the LARGER x (LPS/DICOM is the convention where +x points left).
        assert c["RightParotid"][0] > c["LeftParotid"][0], where
        assert c["Brainstem"][2] > c["Larynx"][2], where
        assert c["Mandible"][1] > c["SpinalCord"][1], where
        assert c["Brainstem"][2] > c["Esophagus"][2], where
        assert case.hu.min() == -1024, where  # air
        assert np.mean(case.hu[case.label == LABELS["Mandible"]]) > 300, where  # bone
        assert -150 < np.mean(case.hu[case.label == LABELS["Brainstem"]]) < 100, where  # soft tissue
        assert case.report.labels_outside_body <= 7 and case.report.overlap_voxels <= 19, where
        if where == "pt_4":
            assert case.report.voxels == PT4_VOXELS
        if where == "pt_22":
            assert case.report.body_slices == (20, 96) and case.report.partial_field
        else:
            assert not case.report.partial_field, where


def test_csv_gz_reads_exactly_as_csv(tmp_path: Path) -> None:
    ct = {flat(1, 2, 3): 1500.0, flat(4, 4, 4): 40000.0}
    write_openkbp_case(tmp_path / "plain" / "pt_1", (3.0, 4.0, 2.5), ct, {"Larynx": [7, 9], "Mandible": [11]})
    gz_dir = tmp_path / "gz" / "pt_1"
    gz_dir.mkdir(parents=True)
    for path in (tmp_path / "plain" / "pt_1").iterdir():
        (gz_dir / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    plain, packed = load_case(tmp_path / "plain" / "pt_1"), load_case(gz_dir)
    assert case_files(gz_dir).ct.name == "ct.csv.gz"
    assert np.array_equal(plain.hu, packed.hu) and np.array_equal(plain.label, packed.label)
    assert plain.report == packed.report and packed.report.contoured == ("Larynx", "Mandible")
    truncated = tmp_path / "bad" / "Larynx.csv.gz"
    truncated.parent.mkdir()
    truncated.write_bytes((gz_dir / "Larynx.csv.gz").read_bytes()[:-12])
    with pytest.raises(InputError, match=r"Larynx\.csv\.gz: not an OpenKBP sparse CSV"):
        read_sparse_csv(truncated, 10, values=False)
    (tmp_path / "bad" / "ct.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"ct\.csv\.gz: not an OpenKBP sparse CSV"):
        read_sparse_csv(tmp_path / "bad" / "ct.csv.gz", 10, values=True)
    with pytest.raises(InputError, match=r"no voxel_dimensions\.csv"):
        case_files(tmp_path / "bad")


@pytest.mark.data
def test_real_partial_cases_import_with_their_contoured_organs(data_root: Path, tmp_path: Path) -> None:
    """Three real openkbp_partial cases (.csv.gz) and one fully contoured one, through the manifest's importer."""
    dataset = load_manifest().dataset("openkbp")
    ids = ["pt_4", "pt_1", "pt_38", "pt_207"]
    out = ensure_cases(dataset, ids, tmp_path / "openkbp")
    training = {
        Path(e["image"]).name.split(".")[0]: e for e in json.loads((out / "dataset.json").read_text())["training"]
    }
    report = {row["case_id"]: row for row in json.loads((out / "import_report.json").read_text())["cases"]}
    expected = {
        c["case_id"]: c["organs"]
        for c in json.loads((data_root / "openkbp_partial/datalist.json").read_text())["cases"]
    }
    expected["pt_4"] = list(LABELS)
    for case_id in ids:
        assert training[case_id]["contoured"] == expected[case_id] == list(report[case_id]["contoured"]), case_id
        label = np.asarray(nib.load(out / "labelsTr" / f"{case_id}.nii.gz").dataobj)
        present = {int(v) for v in np.unique(label)} - {0}
        assert present == {LABELS[name] for name in expected[case_id]}, case_id  # uncontoured: no voxels
        assert all(report[case_id]["voxels"][name] == 0 for name in LABELS if name not in expected[case_id])
        assert dataset.contoured_flags(case_id) == [1] + [int(name in expected[case_id]) for name in LABELS]
    assert report["pt_207"]["split"] == "validation" and report["pt_38"]["contoured"] == ["Esophagus", "Larynx"]
    image = nib.load(out / "imagesTr" / "pt_1.nii.gz")
    assert image.shape == GRID and np.allclose(image.affine, openkbp_affine((3.906, 3.906, 2.5)), atol=1e-6)


@pytest.mark.data
@pytest.mark.slow
def test_all_169_partial_cases_are_anatomically_placed(data_root: Path) -> None:
    """SOURCES.md section 9's checks on every .csv.gz case, organ by organ where both were contoured."""
    cases = find_cases(data_root / "openkbp_partial")
    assert len(cases) == 169 and sum(c.split == "validation" for c in cases) == 29
    for files in cases:
        case = load_case(files)
        where, has = files.case_id, set(case.report.contoured)
        c = {name: _centroid_ras(case.label, LABELS[name], case.affine) for name in has}
        assert all(case.report.voxels[name] > 0 for name in has), where
        if {"RightParotid", "LeftParotid"} <= has:
            assert c["RightParotid"][0] > c["LeftParotid"][0], where
        if {"Brainstem", "Larynx"} <= has:
            assert c["Brainstem"][2] > c["Larynx"][2], where
        if {"Mandible", "SpinalCord"} <= has:
            assert c["Mandible"][1] > c["SpinalCord"][1], where
        assert case.hu.min() == -1024 and case.hu.max() <= 3071, where
