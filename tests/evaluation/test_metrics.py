from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from medseg.evaluation.metrics import (
    STATUS_BOTH_EMPTY,
    STATUS_MISSING_IN_PRED,
    STATUS_MISSING_IN_REF,
    STATUS_OK,
    compare_label_maps,
)
from tests.evaluation.helpers import reference_hd95_nsd


def shifted_cubes(axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Two 6-voxel cubes (label 1), the second shifted by exactly 2 voxels along ``axis``; shape (12, 12, 14)."""
    pred = np.zeros((12, 12, 14), np.uint8)
    ref = np.zeros_like(pred)
    pred[2:8, 2:8, 2:8] = 1
    box = [slice(2, 8)] * 3
    box[axis] = slice(4, 10)
    ref[tuple(box)] = 1
    return pred, ref


def test_shifted_cubes_anisotropic_hand_checked() -> None:
    # Spacing (z, y, x) = (3, 1, 1) mm; cubes shifted 2 voxels along z = 6 mm.
    # Dice = 2 * 6*6*4 / (2 * 6^3) = 2/3. Per direction, 36 of the 152 boundary voxels (the far face, 24 %) lie
    # 6 mm from the other boundary and none farther, so HD95 = 6 mm. Within 2 mm: the 80 voxels of the shared side
    # rings (0 mm) and the 16 inner voxels of the near face (1 or 2 mm in-plane), per direction: NSD = 96/152.
    pred, ref = shifted_cubes(axis=0)
    (result,) = compare_label_maps(pred, ref, spacing=(3.0, 1.0, 1.0), tolerance_mm=2.0)
    assert result.status == STATUS_OK
    assert result.dice == pytest.approx(2 / 3, abs=1e-6)
    assert result.hd95_mm == pytest.approx(6.0, abs=1e-5)
    assert result.nsd == pytest.approx(96 / 152, abs=1e-6)
    assert result.volume_pred_ml == pytest.approx(216 * 3 / 1000)
    assert result.volume_ref_ml == pytest.approx(216 * 3 / 1000)


def test_spacing_follows_the_array_axes() -> None:
    # The same 2-voxel shift along a 1 mm axis is 2 mm: every boundary voxel lies within 2 mm of the other.
    pred, ref = shifted_cubes(axis=2)
    (result,) = compare_label_maps(pred, ref, spacing=(3.0, 1.0, 1.0), tolerance_mm=2.0)
    assert result.dice == pytest.approx(2 / 3, abs=1e-6)
    assert result.hd95_mm == pytest.approx(2.0, abs=1e-5)
    assert result.nsd == pytest.approx(1.0)
    (tight,) = compare_label_maps(pred, ref, spacing=(3.0, 1.0, 1.0), tolerance_mm=1.9)
    assert tight.nsd < 1.0


def test_missing_and_empty_statuses() -> None:
    pred = np.zeros((4, 5, 6), np.uint8)
    ref = np.zeros_like(pred)
    pred[1:3, 1:3, 1:3] = 2  # label 2 only predicted
    ref[0:2, 0:2, 0:2] = 3  # label 3 only in the reference
    pred[3, 4, 5] = ref[3, 4, 5] = 4  # label 4 on both sides, identical
    results = {m.label_id: m for m in compare_label_maps(pred, ref, (2.0, 1.0, 0.5), label_ids=[1, 2, 3, 4])}
    diagonal = math.sqrt(8.0**2 + 5.0**2 + 3.0**2)
    assert results[1].status == STATUS_BOTH_EMPTY
    assert all(math.isnan(v) for v in (results[1].dice, results[1].hd95_mm, results[1].nsd))
    assert results[1].volume_pred_ml == results[1].volume_ref_ml == 0.0
    assert results[2].status == STATUS_MISSING_IN_REF
    assert (results[2].dice, results[2].nsd) == (0.0, 0.0)
    assert results[2].hd95_mm == pytest.approx(diagonal)
    assert results[2].volume_pred_ml == pytest.approx(8 * 1.0 / 1000)
    assert results[3].status == STATUS_MISSING_IN_PRED
    assert results[3].hd95_mm == pytest.approx(diagonal)
    assert (results[4].status, results[4].dice, results[4].hd95_mm, results[4].nsd) == (STATUS_OK, 1.0, 0.0, 1.0)


def test_default_labels_are_those_present_and_worst_case_can_be_set() -> None:
    pred = np.zeros((3, 3, 3), np.uint16)
    ref = np.zeros_like(pred)
    pred[0, 0, 0], ref[2, 2, 2] = 7, 300
    results = compare_label_maps(pred, ref, (1.0, 1.0, 1.0), missing_hd95_mm=math.nan)
    assert [(m.label_id, m.status) for m in results] == [(7, STATUS_MISSING_IN_REF), (300, STATUS_MISSING_IN_PRED)]
    assert all(math.isnan(m.hd95_mm) for m in results)


def test_bounding_box_crop_matches_monai_on_the_whole_volume() -> None:
    # Random blobs of two labels: cropping to the label's bounding box must not change MONAI's numbers.
    rng = np.random.default_rng(3)

    def blobs() -> np.ndarray:
        noise = ndimage.gaussian_filter(rng.normal(size=(20, 30, 26)), 2.0)
        return np.digitize(noise, [0.05, 0.15]).astype(np.uint8)  # labels 0, 1, 2

    pred, ref = blobs(), blobs()
    spacing = (2.5, 0.8, 1.2)
    results = compare_label_maps(pred, ref, spacing, tolerance_mm=1.5)
    assert [(m.label_id, m.status) for m in results] == [(1, STATUS_OK), (2, STATUS_OK)]
    one_hot = [torch.from_numpy(np.stack([a == c for c in (1, 2)])[None].astype(np.float32)) for a in (pred, ref)]
    hd95 = compute_hausdorff_distance(*one_hot, include_background=True, percentile=95, spacing=list(spacing))
    nsd = compute_surface_dice(*one_hot, [1.5, 1.5], include_background=True, spacing=list(spacing))
    for index, metrics in enumerate(results):
        assert metrics.hd95_mm == pytest.approx(float(hd95[0, index]), rel=1e-6)
        assert metrics.nsd == pytest.approx(float(nsd[0, index]), rel=1e-6)
        ref_hd95, ref_nsd = reference_hd95_nsd(pred == metrics.label_id, ref == metrics.label_id, spacing, 1.5)
        assert metrics.hd95_mm == pytest.approx(ref_hd95, rel=1e-5)
        assert metrics.nsd == pytest.approx(ref_nsd, rel=1e-6)
        a, b = pred == metrics.label_id, ref == metrics.label_id
        assert metrics.dice == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()), rel=1e-6)


def test_two_dimensional_label_maps() -> None:
    pred = np.zeros((10, 10), np.uint8)
    ref = np.zeros_like(pred)
    pred[2:6, 2:6] = 1
    ref[2:6, 3:7] = 1  # one pixel along x = 0.5 mm
    (result,) = compare_label_maps(pred, ref, (2.0, 0.5))
    assert result.dice == pytest.approx(0.75)
    assert result.hd95_mm == pytest.approx(0.5)


def test_rejects_bad_arguments() -> None:
    labels = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        compare_label_maps(labels, np.zeros((2, 2, 3), np.uint8), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        compare_label_maps(labels, labels, (1, 1))
    with pytest.raises(ValueError, match="tolerance"):
        compare_label_maps(labels, labels, (1, 1, 1), tolerance_mm=-1)
    with pytest.raises(ValueError, match="background"):
        compare_label_maps(labels, labels, (1, 1, 1), label_ids=[0, 1])
