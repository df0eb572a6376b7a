"""Bring the network's output from the model grid back onto the scan's own grid in bounded memory.

MONAI's bundle way, ``Activationsd(softmax) -> Invertd -> AsDiscreted(argmax)``, inverts every class's float
probability volume at the scan's full resolution before the argmax: for a 512 x 512 x 1000 CT and 8 classes that
is 8 GiB of float32, plus the float64 copies grid resampling makes (MONAI#1189, #6427). Here the preprocessing chain
(orientation, spacing, body crop: all affine) is undone in ONE resampling from the model grid's affine to the scan
grid's affine, done slab by slab along the scan's third axis, with the argmax taken per slab into a uint8 volume.
Peak memory is C x slab, not C x volume, and the output grid is the scan's grid exactly.

The resampling is MONAI's :class:`~monai.transforms.SpatialResample` (trilinear, ``align_corners=False`` like the
forward ``Spacingd``), which is what ``Invertd`` runs for the Spacing step; orientation and crop are exact index
permutations, flips and shifts, so one composed resampling gives the same values. Outside the model grid (what the
body crop removed) the padding is zero for every class; since trilinear weights scale all classes alike, zeros
change no argmax except where all weights fall outside, which is background (label 0), as with ``Invertd``.
Only the part of the scan grid near the model grid's non-background voxels is resampled (see
:func:`foreground_box`): the rest is background, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SpatialResample

Interpolation = Literal["bilinear", "nearest"]
# Slab thickness (scan voxels along the third axis) when none is given: aims at about 256 MiB of float32 per slab.
SLAB_BUDGET_BYTES = 256 * 1024**2


def covered_box(
    model_affine: np.ndarray, model_shape: Sequence[int], grid_affine: np.ndarray, grid_size: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Index ranges [start, stop) along the scan grid's x, y, z that the model grid's voxels can reach.

    Args:
        model_affine: 4x4 voxel-to-world matrix of the model grid (any world frame, the same as ``grid_affine``).
        model_shape: (x, y, z) size of the model grid.
        grid_affine: 4x4 voxel-to-world matrix of the scan grid.
        grid_size: (x, y, z) size of the scan grid.
    """
    # Corners of the model grid's outer voxel faces (index -0.5 .. n - 0.5), one voxel of margin for interpolation.
    lows = [-1.5] * 3
    highs = [n + 0.5 for n in model_shape]
    corners = np.array(
        [[x, y, z, 1.0] for x in (lows[0], highs[0]) for y in (lows[1], highs[1]) for z in (lows[2], highs[2])]
    )
    to_grid = np.linalg.solve(np.asarray(grid_affine, dtype=np.float64), np.asarray(model_affine, dtype=np.float64))
    reached = corners @ to_grid.T
    box = []
    for axis in range(3):
        start = max(math.floor(reached[:, axis].min()), 0)
        stop = min(math.ceil(reached[:, axis].max()) + 1, int(grid_size[axis]))
        box.append((start, max(stop, start)))
    return box[0], box[1], box[2]


def foreground_box(scores: torch.Tensor) -> list[tuple[int, int]] | None:
    """Index ranges [start, stop) per spatial axis of the model-grid voxels that are not background: argmax over
    channels > 0 (C > 1) or label > 0 (C = 1); ``None`` when there is none.

    Only scan voxels near these can get a label: a trilinear mix of probability vectors that all have their
    maximum at background has its maximum at background too, and nearest sampling copies a model voxel.
    """
    labels = scores.argmax(dim=0) if scores.shape[0] > 1 else scores[0]
    nonzero = labels != 0
    if not bool(nonzero.any()):
        return None
    ranges = []
    for axis in range(nonzero.ndim):
        other = tuple(a for a in range(nonzero.ndim) if a != axis)
        hits = torch.nonzero(nonzero.any(dim=other)).flatten()
        ranges.append((int(hits[0]), int(hits[-1]) + 1))
    return ranges


def _translate(affine: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """The affine of the sub-grid starting at voxel ``offset`` of the grid with ``affine``."""
    shifted = np.asarray(affine, dtype=np.float64).copy()
    shifted[:3, 3] = affine[:3, :3] @ np.asarray(offset, dtype=np.float64) + affine[:3, 3]
    return shifted


Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def labelled_scan_box(
    scores: torch.Tensor, model_affine: np.ndarray | torch.Tensor, grid_affine: np.ndarray, grid_size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, Box | None]:
    """Where on the scan grid a non-background label can land: both affines as float64 arrays, and the index ranges
    [start, stop) along the scan's x, y, z reached by the model grid's non-background voxels (:func:`foreground_box`,
    :func:`covered_box`); ``None`` when no scan voxel can get a label.

    Args:
        scores: ``(C, X', Y', Z')`` on the model grid, as for :func:`labels_on_grid`.
        model_affine, grid_affine: 4x4 voxel-to-world matrices of the model grid and the scan grid.
        grid_size: (X, Y, Z) size of the scan grid.
    """
    model_affine_np = np.asarray(
        model_affine.detach().cpu().numpy() if isinstance(model_affine, torch.Tensor) else model_affine,
        dtype=np.float64,
    )
    grid_affine_np = np.asarray(grid_affine, dtype=np.float64)
    foreground = foreground_box(scores)
    if foreground is None:
        return model_affine_np, grid_affine_np, None
    starts = [start for start, _ in foreground]
    shape = [stop - start for start, stop in foreground]
    box = covered_box(_translate(model_affine_np, starts), shape, grid_affine_np, grid_size)
    if any(stop <= start for start, stop in box):
        return model_affine_np, grid_affine_np, None
    return model_affine_np, grid_affine_np, box


def labels_on_grid(
    scores: torch.Tensor,
    model_affine: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    grid_size: Sequence[int],
    interpolation: Interpolation = "bilinear",
    slab: int | None = None,
) -> np.ndarray:
    """Resample model-grid scores onto the scan grid slab by slab and take the argmax: a uint8 label volume.

    Args:
        scores: ``(C, X', Y', Z')`` on the model grid: class probabilities (C > 1, argmax taken after resampling)
            or a single-channel label map (C = 1, resampled with ``interpolation="nearest"``, values kept; up to
            one model voxel beyond the grid's outer voxel centres the edge label is used, as ``Invertd`` does at
            the field of view's edge).
        model_affine: 4x4 voxel-to-world matrix of the model grid (RAS, as the preprocessed MetaTensor's
            ``affine``).
        grid_affine: 4x4 voxel-to-world matrix of the scan grid, same world frame (the reader's ``original_affine``).
        grid_size: (X, Y, Z) size of the scan grid.
        interpolation: ``"bilinear"`` (trilinear in 3D) for probabilities, ``"nearest"`` for a label map.
        slab: scan voxels per slab along Z; default from :data:`SLAB_BUDGET_BYTES`.

    Returns:
        uint8 array of shape (Z, Y, X), SimpleITK's array order for the scan grid; 0 outside the model grid.
    """
    channels = int(scores.shape[0])
    size_x, size_y, size_z = (int(n) for n in grid_size)
    labels = np.zeros((size_z, size_y, size_x), dtype=np.uint8)
    model_affine_np, grid_affine_np, box = labelled_scan_box(scores, model_affine, grid_affine, grid_size)
    if box is None:
        return labels
    (x0, x1), (y0, y1), (z0, z1) = box
    if slab is None:
        slab = max(1, SLAB_BUDGET_BYTES // (4 * (channels + 3) * (x1 - x0) * (y1 - y0)))
    affine = torch.as_tensor(model_affine_np)
    source = MetaTensor(scores.detach().float().cpu(), affine=affine)
    # Nearest sampling: edge labels (border padding) wherever the trilinear weight of the model grid is non-zero,
    # i.e. up to one voxel beyond its outer centres. With zero padding, scan voxels whose centres fall exactly on
    # the model grid's outer face (MONAI's Spacing puts the field of view's edge there) would round outwards and
    # lose the edge layer that Invertd keeps.
    nearest = interpolation == "nearest"
    resample = SpatialResample(
        mode=interpolation, padding_mode="border" if nearest else "zeros", align_corners=False, dtype=np.float32
    )
    coverage = SpatialResample(mode="bilinear", padding_mode="zeros", align_corners=False, dtype=np.float32)
    inside_model = MetaTensor(torch.ones((1, *scores.shape[1:])), affine=affine) if nearest else None
    with torch.no_grad():
        for start in range(z0, z1, slab):
            stop = min(start + slab, z1)
            dst_affine = torch.as_tensor(_translate(grid_affine_np, (x0, y0, start)))
            slab_size = (x1 - x0, y1 - y0, stop - start)
            values = torch.as_tensor(resample(source, dst_affine=dst_affine, spatial_size=slab_size))
            slab_labels = values.argmax(dim=0) if channels > 1 else values[0].round()
            if inside_model is not None:
                weight = torch.as_tensor(coverage(inside_model, dst_affine=dst_affine, spatial_size=slab_size))
                slab_labels = torch.where(weight[0] > 0, slab_labels, torch.zeros_like(slab_labels))
            # (x, y, z) -> (z, y, x)
            labels[start:stop, y0:y1, x0:x1] = slab_labels.permute(2, 1, 0).numpy().astype(np.uint8)
    return labels
