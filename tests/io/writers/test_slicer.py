from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from medseg.io.writers.geometry import ijk_to_lps
from medseg.io.writers.labels import HEAD_NECK_LABELS, LabelInfo, label_table
from medseg.io.writers.slicer import write_color_table, write_label_nifti, write_seg_nrrd
from tests.io.writers.conftest import SYNTHETIC_TABLE, Case, oblique_direction, synthetic_labels

# 3D Slicer loads a volume as a label map when its file name matches this (qSlicerVolumesIOOptionsWidget).
SLICER_LABELMAP_NAME = re.compile(r"(\b|_)(label(s)?|seg)(\b|_)", re.IGNORECASE)


def _assert_same_image(written: sitk.Image, original: sitk.Image) -> None:
    assert written.GetPixelID() == sitk.sitkUInt8
    assert written.GetSize() == original.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(original))
    # NIfTI keeps geometry as float32.
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)


def test_oblique_label_map_round_trips(tmp_path: Path) -> None:
    labels = synthetic_labels(oblique_direction())
    path = write_label_nifti(labels, tmp_path / "case 1_seg.nii.gz")
    assert SLICER_LABELMAP_NAME.search(path.name.removesuffix(".nii.gz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case 1_seg.nii.gz"]  # no temporary left behind
    _assert_same_image(sitk.ReadImage(str(path)), labels)
    header = nib.load(path).header
    assert header.get_data_dtype() == np.uint8
    assert int(header["sform_code"]) > 0 and int(header["qform_code"]) > 0


def test_wrong_inputs_are_refused(tmp_path: Path) -> None:
    labels = synthetic_labels()
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_label_nifti(labels, tmp_path / "case_seg.nrrd")
    with pytest.raises(ValueError, match="uint8"):
        write_label_nifti(sitk.Cast(labels, sitk.sitkFloat32), tmp_path / "case_seg.nii.gz")
    assert not list(tmp_path.iterdir())


@pytest.mark.data
def test_real_mask_round_trips_in_the_ct_geometry(sts019: Case, tmp_path: Path) -> None:
    path = write_label_nifti(sts019.labels, tmp_path / "STS_019_seg.nii.gz")
    written = sitk.ReadImage(str(path))
    _assert_same_image(written, sts019.labels)
    assert int(sitk.GetArrayViewFromImage(written).sum()) == 5564


def _check(path: Path, labels: sitk.Image, table: dict[int, LabelInfo]) -> dict:
    segmentation = slicerio.read_segmentation(str(path))
    # Geometry: exactly the ITK voxel-to-LPS matrix, no float32 rounding.
    np.testing.assert_array_equal(segmentation["ijkToLPS"], ijk_to_lps(labels))
    voxels = segmentation["voxels"]
    assert voxels.dtype == np.uint8 and voxels.ndim == 3  # one shared labelmap layer
    np.testing.assert_array_equal(voxels, sitk.GetArrayViewFromImage(labels).transpose(2, 1, 0))
    segments = segmentation["segments"]
    assert [s["name"] for s in segments] == [info.name for _, info in sorted(table.items())]
    assert [s["labelValue"] for s in segments] == sorted(table)
    assert all(s["layer"] == 0 for s in segments)
    for segment, (_, info) in zip(segments, sorted(table.items()), strict=True):
        np.testing.assert_allclose(segment["color"], np.asarray(info.color) / 255.0, atol=1e-6)
        assert segment["terminology"]["type"][:2] == [info.type.scheme_designator, info.type.value]
        assert segment["terminology"]["category"][1] == info.category.value
        assert (
            slicerio.segment_mask(segmentation, segment["name"]).sum()
            == (sitk.GetArrayViewFromImage(labels) == segment["labelValue"]).sum()
        )
    assert segmentation["masterRepresentation"] == "Binary labelmap"
    return segmentation


def test_oblique_segmentation_reads_back_in_slicerio(tmp_path: Path) -> None:
    labels = synthetic_labels(oblique_direction())
    path = write_seg_nrrd(labels, SYNTHETIC_TABLE, tmp_path / "case.seg.nrrd")
    segmentation = _check(path, labels, SYNTHETIC_TABLE)
    parotid = segmentation["segments"][0]
    assert parotid["terminology"]["typeModifier"][1] == "24028007"  # Right
    header = nrrd.read_header(str(path))
    assert header["space"] == "left-posterior-superior"
    assert header["kinds"] == ["domain", "domain", "domain"]
    assert header["Segment0_Extent"] == "0 19 0 15 0 5"


def test_absent_labels_still_become_segments_and_unknown_values_are_refused(tmp_path: Path) -> None:
    labels = synthetic_labels()
    table = dict(SYNTHETIC_TABLE)
    table[9] = LabelInfo("Unused", (1, 2, 3), table[3].category, table[3].type)
    segmentation = _check(write_seg_nrrd(labels, table, tmp_path / "a.seg.nrrd"), labels, table)
    assert [s["name"] for s in segmentation["segments"]][-1] == "Unused"
    with pytest.raises(ValueError, match=r"\[3\]"):
        write_seg_nrrd(labels, {1: table[1], 2: table[2]}, tmp_path / "b.seg.nrrd")
    with pytest.raises(ValueError, match=r"\.seg\.nrrd"):
        write_seg_nrrd(labels, table, tmp_path / "c.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.seg.nrrd"]


@pytest.mark.data
def test_real_multi_organ_segmentation(totalseg: Case, tmp_path: Path) -> None:
    path = write_seg_nrrd(totalseg.labels, totalseg.table, tmp_path / "totalseg.seg.nrrd")
    _check(path, totalseg.labels, totalseg.table)


def test_color_table_lines(tmp_path: Path) -> None:
    path = write_color_table(HEAD_NECK_LABELS, tmp_path / "case_seg.ctbl")
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    assert rows[0] == ["0", "Background", "0", "0", "0", "0"]
    assert [row[:2] for row in rows[1:]] == [[str(v), info.name] for v, info in HEAD_NECK_LABELS.items()]
    for row, info in zip(rows[1:], HEAD_NECK_LABELS.values(), strict=True):
        assert tuple(int(c) for c in row[2:5]) == info.color and row[5] == "255"


def test_names_with_blanks_keep_one_token(tmp_path: Path) -> None:
    path = write_color_table(label_table({2: "vertebra  T12", 7: " left kidney"}), tmp_path / "t.txt")
    rows = [line.split() for line in path.read_text().splitlines()[2:]]
    assert [row[:2] for row in rows] == [["0", "Background"], ["2", "vertebra_T12"], ["7", "left_kidney"]]
    assert all(len(row) == 6 for row in rows)
    with pytest.raises(ValueError, match="ctbl"):
        write_color_table(HEAD_NECK_LABELS, tmp_path / "t.csv")
