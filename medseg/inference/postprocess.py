"""Clean a predicted label map: per organ, keep the largest connected component, and drop what is below a volume.

Per organ, on its bounding box only (found for all organs in one pass by ``scipy.ndimage.find_objects``, so a
full-resolution CT costs organ-sized crops, not one full-size mask per organ): the largest component (MONAI's
``KeepLargestConnectedComponent``, with int32 component labels taken in slabs of a bounded size), then the organ
is removed entirely when that component is below ``min_component_ml`` (for an organ outside the field of view the
network tends to leave a speck, and a speck is not an organ). Without ``keep_largest``, MONAI's
:class:`~monai.transforms.RemoveSmallObjects` (``by_measure``, mm³) drops every component below the volume
instead. Connectivity is full (26-neighbour in 3D) in both, so a diagonal bridge joins two blobs.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from monai.transforms import RemoveSmallObjects
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# DEFAULT_MIN_COMPONENT_ML (0.1 ml): components smaller are noise for the head-and-neck organs (the smallest,
# Esophagus, is ~3 mL).
from medseg.inference.options import DEFAULT_MIN_COMPONENT_ML
from medseg.io.writers.labels import label_counts

# Voxels labelled at a time when an organ's box is cut into slabs (5 bytes each: its mask and int32 labels): an
# organ whose box spans a 512 x 512 x 1000 CT (a poor prediction) costs 320 MiB of temporaries, not 1.25 GiB.
_SLAB_VOXELS = 1 << 26


def _slab_components(crop: np.ndarray, value: int, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Full-connectivity components (int32 labels, 0 outside) of ``value`` in ``crop[start:stop]``."""
    structure = np.ones((3,) * crop.ndim, dtype=bool)
    components, count = ndimage.label(crop[start:stop] == value, structure=structure, output=np.int32)
    return components, int(count)


def _touching_pairs(previous: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``(2, n)`` pairs of component ids that touch across a slab boundary: ``previous`` is the last plane of one
    slab, ``first`` the first plane of the next (ids, 0 outside), full connectivity (every in-plane offset of -1,
    0 or 1 per axis)."""
    pairs = []
    for offset in itertools.product((-1, 0, 1), repeat=first.ndim):
        here = tuple(slice(max(d, 0), n + min(d, 0)) for d, n in zip(offset, first.shape, strict=True))
        there = tuple(slice(max(-d, 0), n + min(-d, 0)) for d, n in zip(offset, first.shape, strict=True))
        a, b = previous[here], first[there]
        both = (a > 0) & (b > 0)
        pairs.append(np.stack([a[both], b[both]]))
    return np.concatenate(pairs, axis=1)


def _drop_outside_largest(crop: np.ndarray, value: int, min_voxels: float = 0.0) -> int:
    """Set to 0, in ``crop`` (a label array or a view of one, modified in place), the voxels of ``value`` outside its
    largest full-connectivity component (the first in index order on a tie, as ``scipy.ndimage.label`` numbers
    them), or all of them when that component has fewer than ``min_voxels``; returns how many were set to 0.

    Labelled in slabs along the first axis of about :data:`_SLAB_VOXELS` voxels (one slab for most organs):
    ``scipy.ndimage.label`` per slab, the components that touch across slab boundaries joined with
    ``scipy.sparse.csgraph.connected_components``, then, when there is more than one slab, each slab labelled again
    to clear what is not kept. Component ids grow in index order (slab by slab, and in each slab as ``label`` numbers
    them), and a joined component's first voxel is its smallest id, so the tie rule is that of one ``label`` call
    over the whole crop.
    """
    depth = max(1, _SLAB_VOXELS // max(1, int(np.prod(crop.shape[1:]))))
    slabs = [(start, min(start + depth, crop.shape[0])) for start in range(0, crop.shape[0], depth)]
    sizes, pairs, offsets = [], [], []
    total, previous = 0, None
    kept_components: np.ndarray | None = None  # one slab: its labels serve the clearing pass too
    for start, stop in slabs:
        components, count = _slab_components(crop, value, start, stop)
        sizes.append(label_counts(components, minlength=count + 1)[1:])
        if previous is not None:
            pairs.append(_touching_pairs(previous, np.where(components[0] > 0, components[0] + total, 0)))
        previous = np.where(components[-1] > 0, components[-1] + total, 0)
        offsets.append(total)
        total += count
        kept_components = components if len(slabs) == 1 else None
        del components
    if total == 0:
        return 0
    size = np.concatenate(sizes)
    edges = np.concatenate(pairs, axis=1) - 1 if pairs else np.zeros((2, 0), dtype=np.int64)
    graph = coo_matrix((np.ones(edges.shape[1], dtype=np.int8), (edges[0], edges[1])), shape=(total, total))
    _, joined = connected_components(graph, directed=False)  # numbered by smallest member id
    joined_sizes = np.zeros(int(joined.max()) + 1, dtype=np.int64)
    np.add.at(joined_sizes, joined, size)
    keep = int(joined_sizes.argmax())
    if joined_sizes[keep] < min_voxels:
        keep = -1  # the organ is a speck: every component goes
    removed = int(joined_sizes.sum() - (joined_sizes[keep] if keep >= 0 else 0))
    if not removed:
        return 0
    for (start, stop), offset, slab_sizes in zip(slabs, offsets, sizes, strict=True):
        dropped = np.zeros(slab_sizes.size + 1, dtype=bool)
        dropped[1:] = joined[offset : offset + slab_sizes.size] != keep
        if not dropped.any():
            continue  # every component of this slab is kept
        if kept_components is not None:
            components = kept_components
        else:
            components, _ = _slab_components(crop, value, start, stop)
        crop[start:stop][dropped[components]] = 0
        del components
    return removed


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest full-connectivity component of a boolean ``mask`` (the first one found on a tie), as a new mask.

    What MONAI's ``KeepLargestConnectedComponent(connectivity=ndim)`` computes (scikit-image's int64 labels, plus a
    uint8 copy of the input), here with int32 labels taken slab by slab (:func:`_drop_outside_largest`).
    """
    labels = mask.astype(np.uint8)
    _drop_outside_largest(labels, 1)
    kept: np.ndarray = labels.astype(bool)
    return kept


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
            count = _drop_outside_largest(crop, value, min_voxels)
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
