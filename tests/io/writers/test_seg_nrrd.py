from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from medseg.io.writers.geometry import ijk_to_lps
from medseg.io.writers.labels import LabelInfo
from medseg.io.writers.seg_nrrd import write_seg_nrrd
from tests.io.writers.conftest import SYNTHETIC_TABLE, Case, oblique_direction, synthetic_labels


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
