"""Helpers for the evaluation tests: write small label maps with a chosen grid, and an independent reference
implementation of boundary distances (exact EDT instead of MONAI's KD-tree) to check MONAI's numbers against."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def write_label_map(
    path: Path,
    array: np.ndarray,
    spacing_xyz: Sequence[float] = (1.0, 1.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Path:
    """Write ``array`` (shape ``(Z, Y, X)``) as a uint8 label map with the given SimpleITK (x-first) geometry."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing([float(s) for s in spacing_xyz])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def boundary(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one face neighbour outside it (outside the image counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = np.ones_like(mask)
    core = tuple(slice(1, -1) for _ in range(mask.ndim))
    for axis in range(mask.ndim):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[core]
    return mask & ~inner


def reference_hd95_nsd(a: np.ndarray, b: np.ndarray, spacing: Sequence[float], tolerance: float) -> tuple[float, float]:
    """HD95 (max of the two directed 95th percentiles) and NSD of two non-empty masks, by exact EDT."""
    edge_a, edge_b = boundary(a), boundary(b)
    a_to_b = ndimage.distance_transform_edt(~edge_b, sampling=spacing)[edge_a]
    b_to_a = ndimage.distance_transform_edt(~edge_a, sampling=spacing)[edge_b]
    hd95 = max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))
    nsd = (np.sum(a_to_b <= tolerance) + np.sum(b_to_a <= tolerance)) / (a_to_b.size + b_to_a.size)
    return float(hd95), float(nsd)
