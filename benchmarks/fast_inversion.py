"""A faster, same-result replacement for :func:`medseg.inference.inversion.labels_on_grid` (a lever measured by
:mod:`benchmarks.inversion`; medseg's own module is not changed here).

``labels_on_grid`` resamples all C class probabilities trilinearly onto every scan voxel and takes the argmax: for
a 512 x 512 x 236 CT and 8 classes that is 500 million interpolations, most of them far from any organ boundary.
The shortcut rests on one fact: a trilinear sample is a convex combination of the 8 model-grid voxels around it, and
if one class is the argmax at all 8 of them it is the argmax of every convex combination of them (each of its
probabilities beats every other class's, so the weighted sums do too). So:

1. take the argmax on the model grid (small);
2. mark each model-grid *cell* (2 x 2 x 2 neighbouring voxels) whose 8 corners share one argmax;
3. map every scan voxel to its cell (the scan-to-model affine, slab by slab): inside a uniform cell the label is
   that argmax, exactly;
4. only the voxels in mixed cells or at the model grid's border are interpolated (trilinear, zero padding outside
   the model grid, like ``SpatialResample(padding_mode="zeros", align_corners=False)``) and argmaxed.

As in medseg's ``labels_on_grid``, only the scan voxels near the bounding box of the model grid's non-background
voxels are visited (the same convexity argument: elsewhere every corner is background). The result equals
``labels_on_grid`` except where two classes tie to within float32 rounding in a mixed cell (the
two compute the same weighted sums in a different order). Shapes and the output convention are those of
``labels_on_grid``: scores ``(C, X', Y', Z')``, labels ``(Z, Y, X)`` uint8, 0 outside the model grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg.inference.inversion import labelled_scan_box

# Scan voxels per slab (bounds the float64 coordinate arrays: 3 x 8 bytes x this).
SLAB_VOXELS = 4 * 1024**2
_MIXED = 255  # cell code: corners disagree (or the cell leaves the model grid): interpolate


def _uniform_cells(model_labels: np.ndarray) -> np.ndarray:
    """Per cell (X'-1, Y'-1, Z'-1): the label its 8 corners share, or :data:`_MIXED`."""
    corners = [
        model_labels[
            dx : dx + model_labels.shape[0] - 1,
            dy : dy + model_labels.shape[1] - 1,
            dz : dz + model_labels.shape[2] - 1,
        ]
        for dx in (0, 1)
        for dy in (0, 1)
        for dz in (0, 1)
    ]
    low = np.minimum.reduce(corners)
    high = np.maximum.reduce(corners)
    return np.where(low == high, corners[0], _MIXED).astype(np.uint8)


def _trilinear_argmax(scores: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Argmax of the trilinear interpolation of ``scores`` (C, X', Y', Z') at ``points`` (N, 3) continuous model
    indices, corners outside the grid counting as zero: ``torch.nn.functional.grid_sample`` as MONAI's
    ``SpatialResample`` calls it (``align_corners=False``: index i sits at normalised ``(2i + 1) / n - 1``)."""
    sizes = np.array(scores.shape[1:], dtype=np.float64)
    normalised = (2.0 * points + 1.0) / sizes - 1.0
    # grid_sample's last axis is (W, H, D) = (model z, model y, model x) for an input (1, C, X', Y', Z').
    grid = torch.from_numpy(normalised[:, ::-1].astype(np.float32)).reshape(1, 1, 1, -1, 3)
    sampled = torch.nn.functional.grid_sample(
        scores[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (1, C, 1, 1, N)
    values = sampled[0, :, 0, 0]  # (C, N)
    # A running maximum over the classes: torch's argmax along the short leading axis is several times slower.
    best, labels = values[0].clone(), torch.zeros(values.shape[1], dtype=torch.uint8)
    for channel in range(1, values.shape[0]):
        better = values[channel] > best  # strict: ties keep the lower class, as argmax does
        best = torch.where(better, values[channel], best)
        labels[better] = channel
    return labels.numpy()


def labels_on_grid_fast(
    scores: torch.Tensor,
    model_affine: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    grid_size: Sequence[int],
) -> tuple[np.ndarray, dict[str, float]]:
    """Same contract as ``labels_on_grid(scores, model_affine, grid_affine, grid_size)`` for probabilities
    (C > 1); also returns ``{"mixed_fraction": share of covered scan voxels that were interpolated}``."""
    probabilities_t = scores.detach().float().cpu().contiguous()
    probabilities = probabilities_t.numpy()
    size_x, size_y, size_z = (int(n) for n in grid_size)
    labels = np.zeros((size_z, size_y, size_x), dtype=np.uint8)
    # Only scan voxels near the model grid's non-background voxels can get a label (medseg's own shortcut).
    model_np, grid_np, box = labelled_scan_box(probabilities_t, model_affine, grid_affine, grid_size)
    if box is None:  # background at every reachable voxel: background everywhere (convexity, as below)
        return labels, {"mixed_fraction": 0.0}
    (x0, x1), (y0, y1), (z0, z1) = box
    cells = _uniform_cells(probabilities.argmax(axis=0).astype(np.uint8))
    cell_limit = np.array(cells.shape)
    to_model = np.linalg.solve(model_np, grid_np)  # scan voxel (x, y, z, 1) -> model continuous index
    xs = np.arange(x0, x1, dtype=np.float64)
    ys = np.arange(y0, y1, dtype=np.float64)
    plane = (ys[:, None, None] * to_model[:3, 1] + xs[None, :, None] * to_model[:3, 0]).reshape(-1, 3)  # (y, x) order
    slab = max(1, SLAB_VOXELS // plane.shape[0])
    mixed = 0
    for start in range(z0, z1, slab):
        zs = np.arange(start, min(start + slab, z1), dtype=np.float64)
        points = (zs[:, None, None] * to_model[:3, 2] + to_model[:3, 3] + plane[None]).reshape(-1, 3)
        cell = np.floor(points).astype(np.int64)
        inside = np.all((cell >= 0) & (cell < cell_limit), axis=1)
        code = np.full(len(points), _MIXED, dtype=np.uint8)
        code[inside] = cells[cell[inside, 0], cell[inside, 1], cell[inside, 2]]
        todo = code == _MIXED
        mixed += int(todo.sum())
        if todo.any():
            code[todo] = _trilinear_argmax(probabilities_t, points[todo])
        labels[start : start + len(zs), y0:y1, x0:x1] = code.reshape(len(zs), y1 - y0, x1 - x0)
    covered = (x1 - x0) * (y1 - y0) * (z1 - z0)
    return labels, {"mixed_fraction": mixed / covered}
