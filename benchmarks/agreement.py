"""Per-label Dice of two label maps from one confusion count: exact, one pass, no one-hot volumes (a 512 x 512 x 236
map with 8 classes would need 2 GiB of one-hot floats for MONAI's ``compute_dice``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def dice_per_label(first: np.ndarray, second: np.ndarray, labels: Iterable[int]) -> dict[int, float | None]:
    """Dice of each label between two integer label maps of the same shape.

    Args:
        first, second: label maps, any shape (the same), non-negative integers.
        labels: the labels to score.

    Returns:
        ``{label: Dice}``; ``None`` where the label is in neither map.
    """
    if first.shape != second.shape:
        raise ValueError(f"label maps differ in shape: {first.shape} vs {second.shape}")
    labels = [int(label) for label in labels]
    size = max([int(first.max(initial=0)), int(second.max(initial=0)), *labels]) + 1
    # counts[i, j]: voxels labelled i in ``first`` and j in ``second``.
    counts = np.bincount(
        first.astype(np.int64, copy=False).ravel() * size + second.astype(np.int64, copy=False).ravel(),
        minlength=size * size,
    ).reshape(size, size)
    result: dict[int, float | None] = {}
    for label in labels:
        total = int(counts[label, :].sum() + counts[:, label].sum())
        result[label] = None if total == 0 else 2.0 * int(counts[label, label]) / total
    return result
