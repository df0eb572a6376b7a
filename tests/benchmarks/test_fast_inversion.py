"""The uniform-cell inversion gives medseg's ``labels_on_grid`` labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from benchmarks.fast_inversion import _uniform_cells, labels_on_grid_fast
from medseg.inference.inversion import labels_on_grid


def _smooth_scores(shape: tuple[int, int, int], classes: int, seed: int) -> torch.Tensor:
    """Softmax of smoothed noise: organ-like blobs with clear winners away from their borders."""
    rng = np.random.default_rng(seed)
    logits = np.stack([ndimage.gaussian_filter(rng.normal(size=shape), 2.0) * 40 for _ in range(classes)])
    return torch.softmax(torch.from_numpy(logits).float(), dim=0)


def _rotation(angle_degrees: float) -> np.ndarray:
    angle = np.deg2rad(angle_degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])


@pytest.mark.parametrize("angle", [0.0, 17.0])
def test_same_labels_as_labels_on_grid(angle: float) -> None:
    scores = _smooth_scores((20, 18, 16), classes=5, seed=1)
    model_affine = np.diag([4.7, 4.7, 2.5, 1.0])
    model_affine[:3, 3] = [-40.0, -30.0, 5.0]
    grid_affine = np.eye(4)
    grid_affine[:3, :3] = _rotation(angle) @ np.diag([-1.3, -1.1, 0.9])  # flipped axes like an LPS-stored scan
    grid_affine[:3, 3] = [40.0, 45.0, -2.0]
    grid_size = (70, 80, 50)  # reaches beyond the model grid on every side
    expected = labels_on_grid(scores, model_affine, grid_affine, grid_size)
    fast, info = labels_on_grid_fast(scores, model_affine, grid_affine, grid_size)
    assert fast.shape == expected.shape == (50, 80, 70)
    assert 0.0 < info["mixed_fraction"] < 0.9  # most voxels take the shortcut
    assert set(np.unique(expected)) == set(np.unique(fast))
    assert np.mean(fast == expected) >= 0.9999


def test_uniform_cells_by_hand() -> None:
    labels = np.zeros((3, 2, 2), dtype=np.uint8)
    labels[2, 1, 1] = 4
    cells = _uniform_cells(labels)
    assert cells.shape == (2, 1, 1)
    assert cells[0, 0, 0] == 0 and cells[1, 0, 0] == 255


def test_nothing_covered_gives_background() -> None:
    scores = _smooth_scores((6, 6, 6), classes=3, seed=2)
    far = np.eye(4)
    far[:3, 3] = 1000.0
    labels, info = labels_on_grid_fast(scores, np.eye(4), far, (5, 4, 3))
    assert labels.shape == (3, 4, 5) and not labels.any() and info["mixed_fraction"] == 0.0
