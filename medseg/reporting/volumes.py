"""Organ volumes in millilitres from a label map."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from medseg.io.writers.labels import label_counts


def label_volumes_ml(
    label_array: np.ndarray, spacing_mm: Sequence[float], label_values: Iterable[int]
) -> dict[int, float]:
    """Volume of each label, in mL.

    Args:
        label_array: integer label map of any shape (e.g. (z, y, x) from SimpleITK); values < 0 are not allowed.
        spacing_mm: voxel size along each axis in mm (any axis order: only the product is used).
        label_values: the labels to report; a label absent from the map gets 0.0, so missing organs show.

    Returns:
        ``{label value: volume in mL}`` (1 mL = 1000 mm³), in the order of ``label_values``.
    """
    voxel_ml = float(np.prod(np.asarray(spacing_mm, dtype=float))) / 1000.0
    values = [int(v) for v in label_values]
    if label_array.size == 0 or not values:
        return dict.fromkeys(values, 0.0)
    counts = label_counts(label_array, minlength=max(values) + 1)
    return {v: float(counts[v]) * voxel_ml if v < len(counts) else 0.0 for v in values}


def image_volumes_ml(labels: sitk.Image, label_values: Iterable[int]) -> dict[int, float]:
    """:func:`label_volumes_ml` of a SimpleITK label map, with its own spacing (direction does not change
    volume: it is orthonormal)."""
    return label_volumes_ml(sitk.GetArrayViewFromImage(labels), labels.GetSpacing(), label_values)
