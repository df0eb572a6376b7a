"""Per-label Dice, HD95 and normalised surface Dice between two label maps on one grid, in millimetres.

The metrics are MONAI's (``compute_dice``, ``compute_hausdorff_distance(percentile=95)``, ``compute_surface_dice``),
fed one label at a time, cropped to the bounding box of that label in either map, with the voxel spacing so that
distances are physical on anisotropic grids. HD95 is MONAI's symmetric form: the larger of the two directed
95th percentiles of boundary-voxel distances (DeepMind surface-distance's ``compute_robust_hausdorff`` does the same).
NSD counts boundary voxels within the tolerance on both sides (MONAI's default, ``use_subvoxels=False``).

Missing organs (the conventions of nnU-Net v2 and Metrics Reloaded; the worst-case HD95 as in BraTS):

* ``ok``: the label is in both maps; all three metrics computed.
* ``both_empty``: in neither map. Dice, HD95 and NSD are NaN and excluded from means (there is nothing to score;
  nnU-Net v2 also gives NaN, where MONAI's ``ignore_empty=False`` would give Dice 1).
* ``missing_in_pred`` / ``missing_in_ref``: in one map only. Dice 0, NSD 0, HD95 = a worst case, by default the
  image diagonal (shape × spacing, the largest distance possible on the grid), so misses pull the mean HD95 up
  instead of vanishing from it as NaN or inf would.
* ``not_contoured``: the reference case was partially contoured and this organ was not drawn in it (``medseg
  evaluate --contoured``): its absence says nothing, so Dice, HD95 and NSD are NaN and excluded from the means,
  whatever the prediction holds. One rule for every metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

STATUS_OK = "ok"
STATUS_BOTH_EMPTY = "both_empty"
STATUS_MISSING_IN_PRED = "missing_in_pred"
STATUS_MISSING_IN_REF = "missing_in_ref"
STATUS_NOT_CONTOURED = "not_contoured"
STATUSES = (STATUS_OK, STATUS_BOTH_EMPTY, STATUS_MISSING_IN_PRED, STATUS_MISSING_IN_REF)


@dataclass(frozen=True)
class LabelMetrics:
    """Scores of one label in one case; distances in mm, volumes in mL."""

    label_id: int
    status: str
    dice: float
    hd95_mm: float
    nsd: float
    volume_pred_ml: float
    volume_ref_ml: float


def _as_countable(labels: np.ndarray) -> np.ndarray:
    # bincount/find_objects need a type that casts safely to intp; uint64 label maps do not.
    return labels.astype(np.int64) if labels.dtype == np.uint64 else labels


def _union_box(first: tuple[slice, ...], second: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(first, second, strict=True))


def _score_box(
    pred_mask: np.ndarray, ref_mask: np.ndarray, spacing: Sequence[float], tolerance_mm: float
) -> tuple[float, float, float]:
    """Dice, HD95 (mm) and NSD of two non-empty boolean masks, shape ``(Z, Y, X)`` or ``(Y, X)``."""
    pred_t = torch.from_numpy(pred_mask)[None, None].float()  # (B=1, C=1, *spatial)
    ref_t = torch.from_numpy(ref_mask)[None, None].float()
    with warnings.catch_warnings():
        # MONAI 1.6 warns about its own internal use of a deprecated get_mask_edges argument on every call.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")
        dice = compute_dice(pred_t, ref_t, include_background=True, ignore_empty=False)
        hd95 = compute_hausdorff_distance(pred_t, ref_t, include_background=True, percentile=95, spacing=list(spacing))
        nsd = compute_surface_dice(pred_t, ref_t, [tolerance_mm], include_background=True, spacing=list(spacing))
    return float(dice.item()), float(hd95.item()), float(nsd.item())


def compare_label_maps(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    tolerance_mm: float = 2.0,
    label_ids: Iterable[int] | None = None,
    missing_hd95_mm: float | None = None,
) -> list[LabelMetrics]:
    """Score every label of ``pred`` against ``ref``.

    Args:
        pred: predicted integer label map, shape ``(Z, Y, X)`` (or ``(Y, X)``), 0 = background, no negatives.
        ref: reference label map of the same shape and grid.
        spacing: voxel size in mm in the arrays' axis order (``(z, y, x)`` for SimpleITK arrays).
        tolerance_mm: NSD tolerance in mm (boundary voxels at most this far from the other boundary count).
        label_ids: labels to score; ``None`` scores every non-zero label found in either map.
        missing_hd95_mm: HD95 reported when the label is in one map only; ``None`` = the image diagonal
            (shape × spacing), the largest distance possible on this grid.

    Returns:
        One :class:`LabelMetrics` per label, in ascending id order. See the module docstring for the status rules.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match {pred.ndim}D arrays")
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise ValueError(f"tolerance_mm must be finite and >= 0, got {tolerance_mm}")
    pred, ref = _as_countable(pred), _as_countable(ref)
    if missing_hd95_mm is None:
        missing_hd95_mm = float(np.sqrt(np.sum((np.asarray(pred.shape) * np.asarray(spacing, dtype=float)) ** 2)))
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # One pass each for voxel counts and per-label bounding boxes, instead of a full-volume comparison per label.
    pred_counts, ref_counts = np.bincount(pred.ravel()), np.bincount(ref.ravel())
    if label_ids is None:
        present = set(np.flatnonzero(pred_counts).tolist()) | set(np.flatnonzero(ref_counts).tolist())
        label_ids = present - {0}
    wanted = sorted({int(label_id) for label_id in label_ids})
    if wanted and wanted[0] < 1:
        raise ValueError(f"label ids must be >= 1 (0 is background), got {wanted[0]}")
    pred_boxes = ndimage.find_objects(pred)
    ref_boxes = ndimage.find_objects(ref)

    results: list[LabelMetrics] = []
    for label_id in wanted:
        n_pred = int(pred_counts[label_id]) if label_id < len(pred_counts) else 0
        n_ref = int(ref_counts[label_id]) if label_id < len(ref_counts) else 0
        volumes = {"volume_pred_ml": n_pred * voxel_ml, "volume_ref_ml": n_ref * voxel_ml}
        if n_pred == 0 and n_ref == 0:
            results.append(LabelMetrics(label_id, STATUS_BOTH_EMPTY, math.nan, math.nan, math.nan, **volumes))
        elif n_pred == 0 or n_ref == 0:
            status = STATUS_MISSING_IN_PRED if n_pred == 0 else STATUS_MISSING_IN_REF
            results.append(LabelMetrics(label_id, status, 0.0, missing_hd95_mm, 0.0, **volumes))
        else:
            pred_box, ref_box = pred_boxes[label_id - 1], ref_boxes[label_id - 1]
            assert pred_box is not None and ref_box is not None  # both counts are non-zero
            box = _union_box(pred_box, ref_box)
            dice, hd95, nsd = _score_box(pred[box] == label_id, ref[box] == label_id, spacing, tolerance_mm)
            results.append(LabelMetrics(label_id, STATUS_OK, dice, hd95, nsd, **volumes))
    return results
