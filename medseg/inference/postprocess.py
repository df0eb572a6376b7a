"""Clean a predicted label map: per organ, keep the largest connected component, and drop what is below a volume.

Per organ, on its bounding box only (found for all organs in one pass by ``scipy.ndimage.find_objects``, so a
full-resolution CT costs organ-sized crops, not one full-size mask per organ): :func:`largest_component` (MONAI's
``KeepLargestConnectedComponent`` with int32 component labels), then the organ is removed entirely when that
component is below ``min_component_ml`` (for an organ outside the field of view the network tends to leave a speck,
and a speck is not an organ). Without ``keep_largest``, MONAI's :class:`~monai.transforms.RemoveSmallObjects`
(``by_measure``, mm³) drops every component below the volume instead. Connectivity is full (26-neighbour in 3D)
in both, so a diagonal bridge joins two blobs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from monai.transforms import RemoveSmallObjects
from scipy import ndimage

# DEFAULT_MIN_COMPONENT_ML (0.1 ml): components smaller are noise for the head-and-neck organs (the smallest,
# Esophagus, is ~3 mL).
from medseg.inference.options import DEFAULT_MIN_COMPONENT_ML
from medseg.io.writers.labels import label_counts


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The full-connectivity components of a boolean ``mask`` (int32 labels, 0 outside it) and each one's voxel
    count (``sizes[0]`` set to 0), counted in chunks (:func:`medseg.io.writers.labels.label_counts`: a plain
    ``np.bincount`` would make an int64 copy of the labels, 8 bytes a voxel)."""
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool), output=np.int32)
    sizes = label_counts(components, minlength=int(count) + 1)
    sizes[0] = 0
    return components, sizes


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest full-connectivity component of a boolean ``mask`` (the first one found on a tie), as a new mask.

    What MONAI's ``KeepLargestConnectedComponent(connectivity=ndim)`` computes, with the component labelling held in
    int32 (scikit-image's labels, behind MONAI's transform, are int64, plus a uint8 copy of the input): on a
    512 x 512 x 1000 CT where an organ's box spans the scan that is the difference between about 2 GiB and 1 GiB.
    """
    components, sizes = _components(mask)
    if sizes.size <= 2:  # one component, or none
        return mask.copy()
    kept: np.ndarray = components == int(sizes.argmax())
    return kept


def _keep_largest(crop: np.ndarray, value: int, min_voxels: float) -> int:
    """Set to 0, in ``crop`` (a label array or a view of one), the voxels of ``value`` outside its largest component
    (:func:`largest_component`), or all of them when that component has fewer than ``min_voxels``; returns how many
    were set to 0.

    Beside ``crop`` it holds 5 bytes a voxel: the organ's mask, whose buffer then takes the voxels to drop, and the
    int32 component labels."""
    mask = crop == value
    components, sizes = _components(mask)
    keep = int(sizes.argmax())
    if sizes[keep] < min_voxels:
        keep = 0  # the organ is a speck: every component goes
    drop = np.not_equal(components, keep, out=mask)  # mask's buffer reused: no other full-size temporary
    if keep:
        np.logical_and(drop, components, out=drop)  # and inside the organ
    del components
    removed = int(sizes.sum() - sizes[keep])
    if removed:
        crop[drop] = 0
    return removed


def clean_label_map(
    labels: np.ndarray,
    label_values: Iterable[int],
    spacing_mm: Sequence[float],
    keep_largest: bool = True,
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML,
) -> dict[int, int]:
    """Remove small components and keep each organ's largest component, in place.

    Args:
        labels: uint8 label array, any axis order (e.g. (z, y, x) from SimpleITK); modified in place.
        label_values: the organ labels to clean (others are left alone).
        spacing_mm: voxel size along ``labels``' axes, in the same order as the array axes.
        keep_largest: keep only the largest connected component of each organ.
        min_component_ml: remove components smaller than this (mL); 0 disables.

    Returns:
        ``{label: voxels removed}`` for the labels that lost voxels.
    """
    if labels.dtype != np.uint8:
        raise ValueError(f"expected a uint8 label map, got {labels.dtype}")
    spacing = tuple(float(s) for s in spacing_mm)
    remove_small = (
        RemoveSmallObjects(
            min_size=min_component_ml * 1000.0,  # type: ignore[arg-type]  # mm³ (by_measure), MONAI types it int
            connectivity=labels.ndim,
            by_measure=True,
            pixdim=spacing,
        )
        if min_component_ml > 0
        else None
    )
    boxes = ndimage.find_objects(labels)  # boxes[v - 1] bounds label v; None when absent
    min_voxels = min_component_ml * 1000.0 / float(np.prod(spacing))
    removed: dict[int, int] = {}
    for value in sorted(set(int(v) for v in label_values)):
        if not 0 < value <= len(boxes) or boxes[value - 1] is None:
            continue
        crop = labels[boxes[value - 1]]  # a view: writing to it writes to ``labels``
        if keep_largest:
            # One connected-component labelling per organ: after it the organ is one component, so the volume
            # threshold is a voxel count.
            count = _keep_largest(crop, value, min_voxels)
            if count:
                removed[value] = count
            continue
        mask = crop == value
        if remove_small is not None:
            # A zero border: MONAI returns a crop holding one value unchanged, which would spare an all-organ speck.
            padded = torch.from_numpy(np.pad(mask, 1)[None].astype(np.uint8))
            with warnings.catch_warnings():
                # MONAI 1.6 calls scikit-image's deprecated ``min_size``; the behaviour is still "smaller than".
                warnings.filterwarnings("ignore", message=r".*`min_size` is deprecated", category=FutureWarning)
                kept = np.asarray(remove_small(padded))[0].astype(bool)[(slice(1, -1),) * mask.ndim]
        else:
            continue
        drop = mask & ~kept
        count = int(np.count_nonzero(drop))
        if count:
            crop[drop] = 0
            removed[value] = count
    return removed
