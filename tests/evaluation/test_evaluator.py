from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medseg.errors import InputError
from medseg.evaluation.evaluator import METRICS_COLUMNS, SUMMARY_COLUMNS, evaluate
from medseg.evaluation.labels import parse_label_spec
from tests.evaluation.helpers import reference_hd95_nsd, write_label_map


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_folders_end_to_end(tmp_path: Path) -> None:
    ref_a = np.zeros((6, 8, 8), np.uint8)
    ref_a[1:4, 2:6, 2:6] = 1
    ref_a[4:6, 0:2, 0:2] = 2
    pred_a = ref_a.copy()
    pred_a[pred_a == 2] = 0  # label 2 missed
    ref_b = np.zeros_like(ref_a)
    ref_b[2:5, 1:5, 1:5] = 1
    geometry = {"spacing_xyz": (0.8, 0.8, 2.5), "origin": (-10.0, 4.0, 30.0)}
    write_label_map(tmp_path / "ref" / "a.nii.gz", ref_a, **geometry)
    write_label_map(tmp_path / "ref" / "b.nii.gz", ref_b, **geometry)
    write_label_map(tmp_path / "ref" / "c.nii.gz", ref_b, **geometry)
    write_label_map(tmp_path / "pred" / "a_seg.nii.gz", pred_a, **geometry)
    write_label_map(tmp_path / "pred" / "b_seg.nii.gz", ref_b, **geometry)
    before = {side: _digest(tmp_path / side) for side in ("ref", "pred")}

    report = evaluate(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", tolerance_mm=1.0)

    assert {side: _digest(tmp_path / side) for side in ("ref", "pred")} == before  # inputs untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "boxplot.png",
        "metrics.csv",
        "summary.csv",
        "unmatched.csv",
    ]
    assert report.label_names == {1: "label_1", 2: "label_2"}
    metrics = _rows(report.metrics_csv)
    assert tuple(metrics[0]) == METRICS_COLUMNS
    by_key = {(row["case_id"], row["label_id"]): row for row in metrics}
    assert sorted(by_key) == [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]
    assert by_key["a", "1"]["status"] == "ok" and float(by_key["a", "1"]["dice"]) == 1.0
    missed = by_key["a", "2"]
    diagonal = math.sqrt((8 * 0.8) ** 2 + (8 * 0.8) ** 2 + (6 * 2.5) ** 2)
    assert (missed["status"], missed["dice"], missed["nsd"]) == ("missing_in_pred", "0", "0")
    assert float(missed["hd95_mm"]) == pytest.approx(diagonal, rel=1e-5)
    assert float(missed["volume_ref_ml"]) == pytest.approx(8 * 0.8 * 0.8 * 2.5 / 1000, rel=1e-5)
    assert (by_key["b", "2"]["status"], by_key["b", "2"]["dice"]) == ("both_empty", "nan")
    assert by_key["b", "1"]["pred_file"] == str(tmp_path / "pred" / "b_seg.nii.gz")

    summary = {row["label"]: row for row in _rows(report.summary_csv)}
    assert tuple(next(iter(summary.values()))) == SUMMARY_COLUMNS
    assert (summary["label_2"]["n"], summary["label_2"]["n_both_empty"], summary["label_2"]["n_missing_in_pred"]) == (
        "1",
        "1",
        "1",
    )
    assert summary["label_1"]["dice_mean"] == "1" and summary["label_1"]["dice_ci_low"] == "1"
    assert _rows(report.unmatched_csv) == [
        {"case_id": "c", "only_in": "ref", "file": str(tmp_path / "ref" / "c.nii.gz")}
    ]


def test_mismatched_grid_is_refused_naming_both_files(tmp_path: Path) -> None:
    labels = np.ones((2, 3, 4), np.uint8)
    ref = write_label_map(tmp_path / "ref.nii.gz", labels)
    pred = write_label_map(tmp_path / "pred.nii.gz", labels, origin=(0.0, 0.0, 1.0))
    with pytest.raises(InputError, match=r"pred\.nii\.gz: grid differs from reference .*ref\.nii\.gz: origin"):
        evaluate(pred, ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="tolerance"):
        evaluate(ref, ref, tmp_path / "out", tolerance_mm=math.inf)


@pytest.mark.data
def test_totalsegmentator_against_itself_and_a_shifted_copy(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "totalsegmentator"
    reference = folder / "example_seg.nii.gz"
    labels = parse_label_spec(str(folder / "labels_total.json"))
    same = evaluate(reference, reference, tmp_path / "same", labels=labels)
    scored = [m for m in same.results["example"] if m.status == "ok"]
    assert len(scored) == 41 and len(same.results["example"]) == 117
    assert all((m.dice, m.hd95_mm, m.nsd) == (1.0, 0.0, 1.0) for m in scored)
    assert sum(1 for s in same.summaries if s.n == 0) == 76

    # One voxel (3 mm) to the patient's left along x, same grid.
    image = sitk.ReadImage(str(reference))
    ref_array = sitk.GetArrayFromImage(image)
    shifted_array = np.zeros_like(ref_array)
    shifted_array[..., 1:] = ref_array[..., :-1]
    shifted_image = sitk.GetImageFromArray(shifted_array)
    shifted_image.CopyInformation(image)
    shifted = tmp_path / "example_shifted_seg.nii.gz"
    sitk.WriteImage(shifted_image, str(shifted))
    report = evaluate(shifted, reference, tmp_path / "shifted", labels=labels)
    checked = 0
    for m in report.results["example_shifted"]:
        pred_mask, ref_mask = shifted_array == m.label_id, ref_array == m.label_id
        if m.status != "ok":
            assert m.status == "both_empty" or not pred_mask.any()
            continue
        expected_dice = 2 * np.sum(pred_mask & ref_mask) / (pred_mask.sum() + ref_mask.sum())
        expected_hd95, expected_nsd = reference_hd95_nsd(pred_mask, ref_mask, (3.0, 3.0, 3.0), 2.0)
        assert m.dice == pytest.approx(expected_dice, rel=1e-5)
        assert m.hd95_mm == pytest.approx(expected_hd95, rel=1e-5)
        assert m.nsd == pytest.approx(expected_nsd, rel=1e-5)
        assert m.hd95_mm <= 3.0 + 1e-6  # no boundary voxel moved more than the 3 mm shift
        checked += 1
    assert checked >= 40
    liver = next(s for s in report.summaries if s.label == "liver")
    assert 0.9 < liver.dice.mean < 1.0 and liver.hd95_mm.mean == pytest.approx(3.0)


@pytest.mark.data
def test_totalsegmentator_liver_only_prediction(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "totalsegmentator"
    report = evaluate(folder / "example_seg_roi_subset.nii.gz", folder / "example_seg.nii.gz", tmp_path)
    metrics = {m.label_id: m for m in report.results["example_seg_roi_subset"]}
    ref_array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg.nii.gz")))
    pred_array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "example_seg_roi_subset.nii.gz")))
    liver_pred, liver_ref = pred_array == 5, ref_array == 5
    expected = 2 * np.sum(liver_pred & liver_ref) / (liver_pred.sum() + liver_ref.sum())
    assert metrics[5].dice == pytest.approx(expected, rel=1e-5)
    others = [m for label_id, m in metrics.items() if label_id != 5]
    assert len(others) == len(np.unique(ref_array)) - 2  # minus background and liver
    diagonal = math.sqrt((122 * 3.0) ** 2 + (101 * 3.0) ** 2 + (30 * 3.0) ** 2)
    assert all(m.status == "missing_in_pred" and m.hd95_mm == pytest.approx(diagonal) for m in others)


@pytest.mark.data
def test_ibsi_masks_against_dilated_masks(data_root: Path, tmp_path: Path) -> None:
    cases = ["STS_002", "STS_019", "STS_042"]
    for case in [*cases, "STS_008"]:
        (tmp_path / "ref").mkdir(exist_ok=True)
        (tmp_path / "ref" / f"{case}.nii.gz").symlink_to(data_root / "ibsi_sts" / "nifti" / case / "CT_mask.nii.gz")
    arrays: dict[str, tuple[np.ndarray, np.ndarray, tuple[float, ...]]] = {}
    for case in cases:
        image = sitk.ReadImage(str(tmp_path / "ref" / f"{case}.nii.gz"))
        mask = sitk.GetArrayFromImage(image) == 1
        dilated = ndimage.binary_dilation(mask)  # one voxel: 0.977 mm in-plane, 3.27 mm across slices
        out_image = sitk.GetImageFromArray(dilated.astype(np.uint8))
        out_image.CopyInformation(image)
        (tmp_path / "pred").mkdir(exist_ok=True)
        sitk.WriteImage(out_image, str(tmp_path / "pred" / f"{case}_seg.nii.gz"))
        arrays[case] = (dilated, mask, tuple(reversed(image.GetSpacing())))

    report = evaluate(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", labels={1: "GTV_Mass"})

    assert list(report.matching.ref_only) == ["STS_008"]
    rows = {row["case_id"]: row for row in _rows(report.metrics_csv)}
    assert sorted(rows) == cases
    for case, (dilated, mask, spacing) in arrays.items():
        (m,) = report.results[case]
        assert m.dice == pytest.approx(2 * mask.sum() / (mask.sum() + dilated.sum()), rel=1e-5)
        expected_hd95, expected_nsd = reference_hd95_nsd(dilated, mask, spacing, 2.0)
        assert m.hd95_mm == pytest.approx(expected_hd95, rel=1e-5)
        assert m.nsd == pytest.approx(expected_nsd, rel=1e-5)
        assert 0.5 < m.nsd < 1.0  # in-plane growth (0.98 mm) within 2 mm, growth across slices (3.27 mm) not
        assert m.volume_pred_ml == pytest.approx(dilated.sum() * np.prod(spacing) / 1000, rel=1e-6)
        assert float(rows[case]["dice"]) == pytest.approx(m.dice, rel=1e-5)
    summary = report.summaries[0]
    assert (summary.label, summary.n) == ("GTV_Mass", 3)
    assert summary.dice.ci_low <= summary.dice.mean <= summary.dice.ci_high


@pytest.mark.data
def test_ibsi_cases_on_different_grids_are_refused(data_root: Path, tmp_path: Path) -> None:
    nifti = data_root / "ibsi_sts" / "nifti"
    with pytest.raises(InputError, match=r"STS_003/CT_mask\.nii\.gz: grid differs .*STS_002/CT_mask\.nii\.gz: size"):
        evaluate(nifti / "STS_003" / "CT_mask.nii.gz", nifti / "STS_002" / "CT_mask.nii.gz", tmp_path)


def test_package_exports_the_function_not_the_module() -> None:
    import medseg.evaluation

    assert medseg.evaluation.evaluate is evaluate
    assert callable(medseg.evaluation.compare_label_maps)


def test_uncontoured_organs_of_partial_references_are_not_scored(tmp_path: Path) -> None:
    ref = np.zeros((6, 8, 8), np.uint8)
    ref[1:4, 2:6, 2:6] = 1  # organ 2 was not contoured in this case
    pred = ref.copy()
    pred[4:6, 0:2, 0:2] = 2  # the prediction finds it: no false positive, since the reference says nothing
    geometry = {"spacing_xyz": (1.0, 1.0, 2.0), "origin": (0.0, 0.0, 0.0)}
    write_label_map(tmp_path / "ref" / "a.nii.gz", ref, **geometry)
    write_label_map(tmp_path / "pred" / "a_seg.nii.gz", pred, **geometry)
    labels = {1: "Brainstem", 2: "Larynx"}
    plain = evaluate(tmp_path / "pred", tmp_path / "ref", tmp_path / "plain", labels=labels)
    assert [m.status for m in plain.results["a"]] == ["ok", "missing_in_ref"]
    partial = evaluate(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", labels=labels, contoured={"a": {1}})
    brainstem, larynx = partial.results["a"]
    assert brainstem.dice == 1.0 and larynx.status == "not_contoured"
    assert math.isnan(larynx.dice) and math.isnan(larynx.hd95_mm) and math.isnan(larynx.nsd)
    assert [s.n for s in partial.summaries] == [1, 0]


def test_contoured_file_names_organs_by_name_or_id(tmp_path: Path) -> None:
    from medseg.evaluation.labels import parse_contoured

    path = tmp_path / "contoured.json"
    path.write_text('{"pt_1": ["Brainstem", 7], "pt_2": []}')
    assert parse_contoured(path, {1: "Brainstem", 7: "Mandible"}) == {"pt_1": {1, 7}, "pt_2": set()}
    path.write_text('{"pt_1": ["Spleen"]}')
    with pytest.raises(InputError, match="unknown organ 'Spleen'"):
        parse_contoured(path, {1: "Brainstem"})
