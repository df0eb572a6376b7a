"""The scan's grid and the model's grid: there, straight from the scan's stored voxels, and back, in bounded memory.

**There.** Bring a scan onto the model's grid straight from its stored voxels, slab by slab: :func:`streamed_scan_chain`
(the segmenter's explicit read: a :class:`~medseg.io.readers.Scan` in, the chain's output out) and
:func:`streamed_preprocessing` (a chain that loads ``{"image": path}`` itself).

The bundle's chain starts ``LoadImaged -> EnsureChannelFirstd -> Orientationd("RAS") -> Spacingd(bilinear)``: MONAI
turns the whole scan into float32 on load, copies it again when it flips or permutes axes, and resamples it in
float64 (``Spacing``'s default ``dtype``): for a 512 x 512 x 1000 CT, 1 GiB + 1 GiB + 2 GiB at full resolution
before the first, much smaller, model-grid voxel exists. Here the same four steps are one transform:

1. the scan is read once by the chain's own reader (:class:`~medseg.io.monai_reader.MedsegReader`, series choice
   and geometry guard included), and its voxels are used in place, in their stored type (int16 for CT);
2. the model grid (affine and shape) is what MONAI's own ``Orientationd`` and ``Spacingd`` compute, run lazily on
   a zero-memory stand-in of the scan's shape and affine, so every option of the bundle's transforms is honoured;
3. each slab of the model grid is sampled trilinearly (border padding, voxel centres at integer indices: MONAI's
   ``Spacing`` with ``align_corners=False``) from only the block of stored voxels it reaches, converted to
   float32 block by block (about :data:`BLOCK_BUDGET_BYTES` at a time).

The values are the bundle chain's trilinear samples, computed in float32 instead of float64: they agree to a small
fraction of a HU (``tests/inference/test_model_grid.py`` measures it on real scans), far below the HU window's
resolution. This is point sampling, not area averaging, on purpose: it is what the model was trained on (the
training chain is the same ``Spacingd``), and an antialiased downsampling would feed it smoother images than it
has seen. The output carries no ``Orientationd``/``Spacingd`` trace, so it suits inversions that work from the
model grid's affine (:func:`labels_on_grid`, below); MONAI ``Invertd`` of the whole
chain needs the stock chain (``enabled=False``; the segmenter: ``preprocessing="chain"``). A chain that does not
start with these transforms as the bundle writes them (bilinear, border padding, a MedsegReader for the path form) is
left as it is.

Memory, 512 x 512 x 1000 int16 CT (500 MiB stored) to a 4.7 x 4.7 x 2.5 mm grid: the stock chain holds 1 GiB (float32
load) + 1 GiB (orientation copy) + 2 GiB (float64 resampling) at full resolution; the streamed pass holds the stored
voxels, one slab of them in float32 (about :data:`BLOCK_BUDGET_BYTES`) and the model grid.

**Back.** Bring the network's output from the model grid back onto the scan's own grid in bounded memory.

MONAI's bundle way, ``Activationsd(softmax) -> Invertd -> AsDiscreted(argmax)``, inverts every class's float
probability volume at the scan's full resolution before the argmax: for a 512 x 512 x 1000 CT and 8 classes that
is 8 GiB of float32, plus the float64 copies grid resampling makes (MONAI#1189, #6427). Here the preprocessing chain
(orientation, spacing, body crop: all affine) is undone as ONE trilinear resampling from the model grid's affine to
the scan grid's affine, slab by slab along the scan's third axis, with the argmax taken per slab into a uint8 volume,
and the output grid is the scan's grid exactly.

:func:`labels_on_grid` (the default) interpolates only where it can change the answer: where the 8 model voxels
around a scan voxel disagree on the argmax (a convex combination of probability vectors that share their argmax has
that argmax). Elsewhere the label is a lookup; on a 512 x 512 x 236 CT about 1 % of the voxels near the organs are
interpolated. :func:`labels_on_grid_resampled` interpolates every class at every voxel with MONAI's
:class:`~monai.transforms.SpatialResample` (trilinear, ``align_corners=False`` like the forward ``Spacingd``, which
is what ``Invertd`` runs for the Spacing step; orientation and crop are exact index permutations, flips and shifts):
the reference, equal to the default up to float32 ties, and the path for label maps (``"nearest"``). Outside the
model grid (what the body crop removed) the padding is zero for every class; since trilinear weights scale all
classes alike, zeros change no argmax except where all weights fall outside, which is background (label 0), as with
``Invertd``. Only the part of the scan grid near the model grid's non-background voxels is visited (see
:func:`foreground_box`): the rest is background, exactly. Peak memory is bounded per slab, not C x volume.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    Orientationd,
    Spacingd,
    SpatialResample,
)
from monai.utils import ImageMetaKey, MetaKeys, SpaceKeys

from medseg.io.monai_reader import MedsegReader
from medseg.io.readers import Scan

# Stored voxels converted to float32 at a time (one block per slab of the model grid).
BLOCK_BUDGET_BYTES = 64 * 1024**2
IMAGE_KEY = "image"


def _block_range(
    coordinates: np.ndarray, size: int
) -> tuple[int, int]:  # coordinates: continuous indices along one axis
    """[start, stop) of the stored voxels that trilinear sampling with border padding at ``coordinates`` reads."""
    start = min(max(int(np.floor(coordinates.min())), 0), size - 1)
    stop = min(max(int(np.floor(coordinates.max())) + 2, start + 1), size)
    return start, stop


def _sample_block(block: np.ndarray, points: np.ndarray, starts: Sequence[int]) -> torch.Tensor:
    """Trilinear samples (border padding) of ``block`` (z, y, x), at ``points`` ``(..., 3)`` = continuous (x, y, z)
    indices of the whole volume whose block starts at ``starts`` (x, y, z)."""
    values = torch.from_numpy(np.asarray(block, dtype=np.float32))[None, None]
    sizes = np.array(block.shape[::-1], dtype=np.float64)  # (x, y, z)
    # align_corners=True: index i at 2 i / (n - 1) - 1, so voxel centres sit at integer indices (a 1-voxel axis: 0).
    scale = np.where(sizes > 1, 2.0 / np.maximum(sizes - 1, 1), 0.0)
    shift = np.where(sizes > 1, -1.0 - scale * np.asarray(starts, dtype=np.float64), 0.0)
    normalised = torch.from_numpy((points * scale + shift).astype(np.float32))
    sampled = torch.nn.functional.grid_sample(
        values, normalised[None], mode="bilinear", padding_mode="border", align_corners=True
    )
    return sampled[0, 0]


def _linear_taps(coordinates: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation along one axis of ``size`` voxels with border padding: lower and upper neighbour
    indices and the upper one's weight, for continuous indices ``coordinates``."""
    clamped = np.clip(coordinates, 0.0, size - 1.0)
    lower = np.floor(clamped).astype(np.intp)
    upper = np.minimum(lower + 1, size - 1)
    return lower, upper, (clamped - lower).astype(np.float32)


def _interpolate_axis(values: np.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``values`` linearly interpolated along ``axis`` (float32 out, whatever the stored type in)."""
    lower, upper, weight = taps
    low = np.take(values, lower, axis=axis).astype(np.float32, copy=False)
    high = np.take(values, upper, axis=axis).astype(np.float32, copy=False)
    shape = [1] * values.ndim
    shape[axis] = -1
    high -= low
    high *= weight.reshape(shape)
    high += low
    return high


def _resample_separable(
    stored: np.ndarray, to_source: np.ndarray, axes: Sequence[int], shape: Sequence[int], budget: int
) -> torch.Tensor:
    """:func:`resample_stored` for grids that differ by scaling, flips and axis permutations (output axis ``a``
    reads source axis ``axes[a]``): trilinear = three 1-D interpolations, each gathering only the rows it needs
    from the stored voxels, slab by slab along the output's Z."""
    stored_size = stored.shape[::-1]  # (x, y, z)
    taps = []
    for axis in range(3):
        source = axes[axis]
        coordinates = to_source[source, axis] * np.arange(shape[axis], dtype=np.float64) + to_source[source, 3]
        taps.append(_linear_taps(coordinates, stored_size[source]))
    result = torch.empty([int(n) for n in shape], dtype=torch.float32)
    # Per output slice: two stored slices across the other two axes, in the stored type and in float32.
    other = [stored_size[source] for source in range(3) if source != axes[2]]
    slab = max(1, budget // (12 * other[0] * other[1]))
    order = (2 - axes[0], 2 - axes[1], 2 - axes[2])  # numpy axis of each output axis in the (z, y, x) array
    for start in range(0, int(shape[2]), slab):
        stop = min(start + slab, int(shape[2]))
        lower, upper, weight = taps[2]
        values = _interpolate_axis(stored, order[2], (lower[start:stop], upper[start:stop], weight[start:stop]))
        values = _interpolate_axis(values, order[0], taps[0])
        values = _interpolate_axis(values, order[1], taps[1])
        result[:, :, start:stop] = torch.from_numpy(np.ascontiguousarray(values.transpose(order)))
    return result


def resample_stored(
    image: sitk.Image,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: Sequence[int],
    block_budget_bytes: int = BLOCK_BUDGET_BYTES,
) -> torch.Tensor:
    """Trilinear samples of ``image``'s stored voxels on the grid ``target_affine``/``target_shape`` (x, y, z):
    float32 ``(X, Y, Z)``, border padding, computed slab by slab along Z from the voxels each slab reaches
    (separable 1-D interpolations for axis-aligned grids, ``grid_sample`` on blocks for oblique ones)."""
    stored = sitk.GetArrayViewFromImage(image)  # (z, y, x), the stored type, no copy
    stored_size = stored.shape[::-1]
    to_source = np.linalg.solve(np.asarray(source_affine, np.float64), np.asarray(target_affine, np.float64))
    shape = [int(n) for n in target_shape]
    if min(shape) <= 0:
        return torch.empty(shape, dtype=torch.float32)
    axes = axis_permutation(to_source[:3, :3], shape)
    if axes is not None:
        return _resample_separable(stored, to_source, axes, shape, block_budget_bytes)
    result = torch.empty(shape, dtype=torch.float32)
    xs, ys = np.arange(shape[0], dtype=np.float64), np.arange(shape[1], dtype=np.float64)
    plane = xs[:, None, None] * to_source[:3, 0] + ys[None, :, None] * to_source[:3, 1] + to_source[:3, 3]  # (X,Y,3)

    def slab_points(start: int, stop: int) -> np.ndarray:
        zs = np.arange(start, stop, dtype=np.float64)
        return plane[:, :, None, :] + zs[None, None, :, None] * to_source[:3, 2]  # (X, Y, k, 3)

    def block_of(points: np.ndarray) -> list[tuple[int, int]]:
        return [_block_range(points[..., axis], stored_size[axis]) for axis in range(3)]

    one = block_of(slab_points(0, 1))
    per_slice = 4 * int(np.prod([stop - start for start, stop in one]))
    slab = max(1, block_budget_bytes // max(per_slice, 1))
    for start in range(0, shape[2], slab):
        stop = min(start + slab, shape[2])
        points = slab_points(start, stop)
        (x0, x1), (y0, y1), (z0, z1) = block_of(points)
        result[:, :, start:stop] = _sample_block(stored[z0:z1, y0:y1, x0:x1], points, (x0, y0, z0))
    return result


def _model_grid(scan: Scan, orientation: Orientationd, spacing: Spacingd) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine and shape MONAI's ``orientation`` and ``spacing`` would give ``scan``: both run lazily on a
    zero-stride stand-in of the scan's shape (no voxel is allocated)."""
    size = scan.image.GetSize()
    stand_in = MetaTensor(
        torch.zeros(1).expand(1, *size),
        affine=torch.as_tensor(np.asarray(scan.affine, np.float64)),
        meta={MetaKeys.SPACE: SpaceKeys.RAS},
    )
    data: dict[Hashable, Any] = spacing(orientation({IMAGE_KEY: stand_in}, lazy=True), lazy=True)
    out: MetaTensor = data[IMAGE_KEY]
    affine = np.asarray(torch.as_tensor(out.peek_pending_affine()), dtype=np.float64)
    shape = tuple(int(n) for n in out.peek_pending_shape())
    return affine, (shape[0], shape[1], shape[2])


def scan_on_model_grid(scan: Scan, orientation: Orientationd, spacing: Spacingd) -> MetaTensor:
    """``scan`` as ``EnsureChannelFirstd -> orientation -> spacing`` would leave it (``(1, X, Y, Z)`` float32 on the
    model grid, RAS affine), sampled slab by slab from its stored voxels (see the module notes). The result carries
    no ``Orientationd``/``Spacingd`` trace: the transforms after them record theirs as usual."""
    affine, shape = _model_grid(scan, orientation, spacing)
    volume = resample_stored(scan.image, scan.affine, affine, shape)
    meta = {
        MetaKeys.AFFINE: torch.as_tensor(affine),
        MetaKeys.ORIGINAL_AFFINE: np.asarray(scan.affine, np.float64),
        MetaKeys.SPATIAL_SHAPE: np.asarray(scan.image.GetSize()),
        MetaKeys.SPACE: SpaceKeys.RAS,
        ImageMetaKey.FILENAME_OR_OBJ: str(scan.path),
    }
    return MetaTensor(volume[None], meta=meta)


class StreamedScanChain:
    """A chain that starts ``EnsureChannelFirstd -> Orientationd -> Spacingd`` (the bundle's chain without its
    ``LoadImaged``), run on a :class:`~medseg.io.readers.Scan` already read: the three leading transforms as one
    streamed pass (:func:`scan_on_model_grid`), then the rest of the chain (the same transform objects).

    Make one with :func:`streamed_scan_chain`; call it as ``chain(scan, key)`` -> ``{key: MetaTensor}`` after the
    whole chain.
    """

    def __init__(self, orientation: Orientationd, spacing: Spacingd, rest: Compose) -> None:
        self.orientation = orientation
        self.spacing = spacing
        self.rest = rest

    def __call__(self, scan: Scan, key: Hashable = IMAGE_KEY) -> dict[Hashable, Any]:
        image = scan_on_model_grid(scan, self.orientation, self.spacing)
        return dict(self.rest({key: image}))


def streamed_scan_chain(chain: Compose, dtype: Any = np.float32) -> StreamedScanChain | None:
    """The :class:`StreamedScanChain` of ``chain`` (the bundle's chain without its ``LoadImaged``, whose loader
    gives ``dtype``); ``None`` when ``chain`` does not start with ``EnsureChannelFirstd -> Orientationd ->
    Spacingd`` as the bundle writes them, or the loader's type is not float32: then the chain runs as it is."""
    transforms = list(chain.flatten().transforms)
    if len(transforms) < 3 or np.dtype(dtype) != np.float32:
        return None
    channel, orientation, spacing = transforms[:3]
    if not _streamable_resampling(channel, orientation, spacing):
        return None
    rest = Compose(
        transforms[3:], map_items=chain.map_items, unpack_items=chain.unpack_items, log_stats=chain.log_stats
    )
    return StreamedScanChain(orientation, spacing, rest)


class _StreamedLoadResampled(MapTransform):
    """``LoadImaged -> EnsureChannelFirstd -> Orientationd -> Spacingd`` for ``{"image": path}`` as one pass (see
    the module notes); any other input (labels as well, several files) goes through the original transforms."""

    def __init__(self, originals: Sequence[Any], reader: MedsegReader) -> None:
        super().__init__(keys=IMAGE_KEY)
        self.originals = Compose(list(originals))
        self.reader = reader
        self.orientation: Orientationd = originals[2]
        self.spacing: Spacingd = originals[3]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:  # type: ignore[override]
        if set(data) != {IMAGE_KEY} or not isinstance(data[IMAGE_KEY], (str, os.PathLike)):
            return dict(self.originals(dict(data)))
        path = data[IMAGE_KEY]
        read = self.reader.read(path)
        if not isinstance(read, Scan):  # a failed read raises its one-line error here; several files: stock chain
            self.reader.get_data(read)
            return dict(self.originals(dict(data)))
        image = scan_on_model_grid(read, self.orientation, self.spacing)
        image.meta[ImageMetaKey.FILENAME_OR_OBJ] = str(path)
        return {IMAGE_KEY: image}


def _streamable_resampling(channel: Any, orientation: Any, spacing: Any) -> bool:
    """Whether ``channel, orientation, spacing`` are ``EnsureChannelFirstd``, ``Orientationd`` and a bilinear
    ``Spacingd`` of the image key with MONAI's defaults for what this module reproduces (border padding, no
    ``align_corners``, ``diagonal``, ``scale_extent`` or ``recompute_affine``)."""
    if not (
        isinstance(channel, EnsureChannelFirstd)
        and isinstance(orientation, Orientationd)
        and isinstance(spacing, Spacingd)
        and IMAGE_KEY in channel.keys
        and IMAGE_KEY in orientation.keys
        and IMAGE_KEY in spacing.keys
    ):
        return False
    if getattr(channel.adjuster, "input_channel_dim", None) is not None:
        return False
    index = list(spacing.keys).index(IMAGE_KEY)
    space = spacing.spacing_transform
    return not (
        str(spacing.mode[index]) != "bilinear"
        or str(spacing.padding_mode[index]) != "border"
        or bool(spacing.align_corners[index])
        or bool(space.diagonal)
        or bool(spacing.scale_extent[index])
        or bool(space.recompute_affine)
    )


def _streamable(transforms: Sequence[Any]) -> MedsegReader | None:
    """The chain's MedsegReader when its first four transforms are the bundle's load, channel, RAS and bilinear
    spacing steps with MONAI's defaults for what this module reproduces; else ``None``."""
    if len(transforms) < 4:
        return None
    load = transforms[0]
    if not (isinstance(load, LoadImaged) and IMAGE_KEY in load.keys):
        return None
    if not _streamable_resampling(*transforms[1:4]):
        return None
    readers = [reader for reader in load._loader.readers if isinstance(reader, MedsegReader)]
    return readers[-1] if readers else None


def streamed_preprocessing(preprocessing: Compose, enabled: bool = True) -> Compose:
    """``preprocessing`` with its leading ``LoadImaged -> EnsureChannelFirstd -> Orientationd -> Spacingd``
    replaced by one streamed pass from the stored voxels (see the module notes); the chain itself when
    ``enabled`` is false or it does not start with those transforms as the bundle writes them. The other
    transforms (body crop, HU window, padding...) are the same objects, in the same order."""
    if not enabled:
        return preprocessing
    transforms = list(preprocessing.flatten().transforms)
    reader = _streamable(transforms)
    if reader is None:
        return preprocessing
    return Compose([_StreamedLoadResampled(transforms[:4], reader), *transforms[4:]])


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


def class_argmax(values: torch.Tensor) -> torch.Tensor:
    """The argmax over the leading (class) axis of ``values`` ``(C, *rest)`` as uint8 (C <= 256), ties to the lower
    class as ``torch.argmax`` breaks them: a running maximum over the classes, one pass per class over contiguous
    memory, about ten times faster than ``argmax(dim=0)`` (which strides across the classes voxel by voxel)."""
    channels = int(values.shape[0])
    if channels > 256:
        raise ValueError(f"a uint8 label map holds at most 256 classes, got {channels}")
    best = values[0].clone()
    chosen = torch.zeros(values.shape[1:], dtype=torch.uint8, device=values.device)
    for channel in range(1, channels):
        better = values[channel] > best
        torch.maximum(best, values[channel], out=best)
        chosen.masked_fill_(better, channel)
    return chosen


def foreground_box(scores: torch.Tensor, model_labels: torch.Tensor | None = None) -> list[tuple[int, int]] | None:
    """Index ranges [start, stop) per spatial axis of the model-grid voxels that are not background: argmax over
    channels > 0 (C > 1) or label > 0 (C = 1); ``None`` when there is none. ``model_labels``: that argmax, when the
    caller has it already.

    Only scan voxels near these can get a label: a trilinear mix of probability vectors that all have their
    maximum at background has its maximum at background too, and nearest sampling copies a model voxel.
    """
    labels = model_labels
    if labels is None:
        labels = class_argmax(scores) if scores.shape[0] > 1 else scores[0]
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
    scores: torch.Tensor,
    model_affine: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    grid_size: Sequence[int],
    model_labels: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, Box | None]:
    """Where on the scan grid a non-background label can land: both affines as float64 arrays, and the index ranges
    [start, stop) along the scan's x, y, z reached by the model grid's non-background voxels (:func:`foreground_box`,
    :func:`covered_box`); ``None`` when no scan voxel can get a label.

    Args:
        scores: ``(C, X', Y', Z')`` on the model grid, as for :func:`labels_on_grid`.
        model_affine, grid_affine: 4x4 voxel-to-world matrices of the model grid and the scan grid.
        grid_size: (X, Y, Z) size of the scan grid.
        model_labels: the argmax of ``scores`` over classes, when the caller has it (:func:`class_argmax`).
    """
    model_affine_np = np.asarray(
        model_affine.detach().cpu().numpy() if isinstance(model_affine, torch.Tensor) else model_affine,
        dtype=np.float64,
    )
    grid_affine_np = np.asarray(grid_affine, dtype=np.float64)
    foreground = foreground_box(scores, model_labels)
    if foreground is None:
        return model_affine_np, grid_affine_np, None
    starts = [start for start, _ in foreground]
    shape = [stop - start for start, stop in foreground]
    box = covered_box(_translate(model_affine_np, starts), shape, grid_affine_np, grid_size)
    if any(stop <= start for start, stop in box):
        return model_affine_np, grid_affine_np, None
    return model_affine_np, grid_affine_np, box


MIXED = 255  # cell code: the 8 corners disagree, or the cell reaches outside the model grid: interpolate there
# Scan voxels per slab of the uniform-cells inversion (bounds its index arrays: about 32 bytes per voxel).
SLAB_VOXELS = 2 * 1024**2
# Bytes of interpolated class values per chunk of mixed voxels (C x chunk float32): bounded whatever C is.
MIXED_BUDGET_BYTES = 32 * 1024**2


def uniform_cells(model_labels: np.ndarray) -> np.ndarray:
    """Per model-grid cell (the 2 x 2 x 2 voxels from ``c`` to ``c + 1``): the label its 8 corners share, else
    :data:`MIXED`; shifted by one voxel and framed with :data:`MIXED`, so cell ``c`` (``-1 <= c <= n - 1``) is at
    index ``c + 1`` and the cells that reach outside the grid are mixed. Shape ``(X' + 1, Y' + 1, Z' + 1)``."""
    sizes = model_labels.shape
    corners = [
        model_labels[dx : dx + sizes[0] - 1, dy : dy + sizes[1] - 1, dz : dz + sizes[2] - 1]
        for dx in (0, 1)
        for dy in (0, 1)
        for dz in (0, 1)
    ]
    low = np.minimum.reduce(corners)
    high = np.maximum.reduce(corners)
    cells = np.full([n + 1 for n in sizes], MIXED, dtype=np.uint8)
    cells[1:-1, 1:-1, 1:-1] = np.where(low == high, corners[0], MIXED)
    return cells


def axis_permutation(linear: np.ndarray, extents: Sequence[int]) -> list[int] | None:
    """For a scan-to-model index matrix that only scales, flips and permutes axes: the model axis each scan axis
    maps to (``None`` for an oblique one, where a model coordinate depends on more than one scan index)."""
    axes = [int(np.argmax(np.abs(linear[:, axis]))) for axis in range(3)]
    if sorted(axes) != [0, 1, 2]:
        return None
    for axis, model_axis in enumerate(axes):
        others = [linear[row, axis] for row in range(3) if row != model_axis]
        if max(abs(value) for value in others) * max(int(extents[axis]), 1) > 1e-6:
            return None
    return axes


def _cell_index(coordinates: np.ndarray, size: int) -> np.ndarray:
    """Index into :func:`uniform_cells`' output of the cells holding continuous model ``coordinates`` along one
    axis of ``size`` voxels."""
    return np.clip(np.floor(coordinates).astype(np.intp) + 1, 0, size)


def _trilinear_argmax(scores: torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Argmax over classes of the trilinear interpolation of ``scores`` ``(C, X', Y', Z')`` at ``points`` ``(N, 3)``
    (continuous model indices), corners outside the grid counting as zero: ``grid_sample`` as MONAI's
    ``SpatialResample`` calls it (``align_corners=False``: index ``i`` sits at normalised ``(2i + 1) / n - 1``).
    Ties keep the lower class, as ``argmax`` does. Done in chunks of :data:`MIXED_BUDGET_BYTES`."""
    channels = int(scores.shape[0])
    sizes = np.array(scores.shape[1:], dtype=np.float64)
    labels = np.empty(len(points), dtype=np.uint8)
    chunk = max(1, MIXED_BUDGET_BYTES // (4 * (channels + 3)))
    for start in range(0, len(points), chunk):
        normalised = (2.0 * points[start : start + chunk] + 1.0) / sizes - 1.0
        # grid_sample's last axis is (W, H, D) = (model z, model y, model x) for an input (1, C, X', Y', Z').
        grid = torch.from_numpy(np.ascontiguousarray(normalised[:, ::-1], dtype=np.float32)).reshape(1, 1, 1, -1, 3)
        values = torch.nn.functional.grid_sample(
            scores[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0, :, 0, 0]  # (C, n)
        chosen = class_argmax(values)
        labels[start : start + len(chosen)] = chosen.numpy()
    return labels


def labels_on_grid(
    scores: torch.Tensor,
    model_affine: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    grid_size: Sequence[int],
    interpolation: Interpolation = "bilinear",
    slab: int | None = None,
) -> np.ndarray:
    """The argmax of the model-grid ``scores`` trilinearly resampled onto the scan grid (a uint8 label volume),
    interpolating only at scan voxels whose 8 surrounding model voxels disagree.

    A trilinear sample is a convex combination of the 8 model voxels around it; when one class is the argmax at
    all 8, it is the argmax of every such combination. So the argmax is taken on the model grid, each model cell
    whose corners share one label is marked (:func:`uniform_cells`), every scan voxel is mapped to its cell (one
    gather per slab when the two grids differ by scaling, flips and axis permutations, as after ``Orientationd`` +
    ``Spacingd``; per-voxel coordinates for oblique grids), and only the voxels in mixed cells or at the model
    grid's border are interpolated (:func:`_trilinear_argmax`, zero padding like ``SpatialResample``) and argmaxed.
    The labels are :func:`labels_on_grid_resampled`'s (MONAI ``SpatialResample`` of every class at every voxel)
    except where two classes tie to within float32 rounding. Memory: the model grid's scores and labels, the scan's
    uint8 labels, and per slab index arrays of :data:`SLAB_VOXELS` and class values of :data:`MIXED_BUDGET_BYTES`,
    neither growing with the class count.

    Args:
        scores: ``(C, X', Y', Z')`` class probabilities on the model grid (C > 1, at most 255). A single-channel
            label map, or ``interpolation="nearest"``, goes to :func:`labels_on_grid_resampled`.
        model_affine: 4x4 voxel-to-world matrix of the model grid (RAS, as the preprocessed MetaTensor's
            ``affine``).
        grid_affine: 4x4 voxel-to-world matrix of the scan grid, same world frame (the reader's ``original_affine``).
        grid_size: (X, Y, Z) size of the scan grid.
        interpolation: ``"bilinear"`` (trilinear in 3D) for probabilities, ``"nearest"`` for a label map.
        slab: scan voxels per slab along Z; default from :data:`SLAB_VOXELS`.

    Returns:
        uint8 array of shape (Z, Y, X), SimpleITK's array order for the scan grid; 0 outside the model grid.
    """
    channels = int(scores.shape[0])
    if interpolation == "nearest" or channels == 1:
        return labels_on_grid_resampled(scores, model_affine, grid_affine, grid_size, interpolation, slab)
    if channels > MIXED:
        raise ValueError(f"a uint8 label map holds at most {MIXED} classes, the scores have {channels}")
    size_x, size_y, size_z = (int(n) for n in grid_size)
    labels = np.zeros((size_z, size_y, size_x), dtype=np.uint8)
    probabilities = scores.detach().float().cpu().contiguous()
    model_labels = class_argmax(probabilities)
    model_np, grid_np, box = labelled_scan_box(probabilities, model_affine, grid_affine, grid_size, model_labels)
    if box is None:  # every reachable model voxel is background: so is every scan voxel (convexity)
        return labels
    (x0, x1), (y0, y1), (z0, z1) = box
    cells = uniform_cells(model_labels.numpy())
    model_sizes = [int(n) for n in probabilities.shape[1:]]
    to_model = np.linalg.solve(model_np, grid_np)  # scan voxel (x, y, z, 1) -> continuous model index
    linear, offset = to_model[:3, :3], to_model[:3, 3]
    axes = axis_permutation(linear, grid_size)
    ranges = [np.arange(x0, x1), np.arange(y0, y1)]
    if slab is None:
        slab = max(1, SLAB_VOXELS // ((x1 - x0) * (y1 - y0)))
    for start in range(z0, z1, slab):
        stop = min(start + slab, z1)
        scan_ranges = [*ranges, np.arange(start, stop)]
        if axes is not None:  # one gather: model axis axes[a] depends on scan axis a alone
            per_model_axis: list[np.ndarray] = [np.empty(0, dtype=np.intp)] * 3
            for axis, model_axis in enumerate(axes):
                coordinates = linear[model_axis, axis] * scan_ranges[axis] + offset[model_axis]
                per_model_axis[model_axis] = _cell_index(coordinates, model_sizes[model_axis])
            gathered = cells[np.ix_(*per_model_axis)]  # model axis order
            codes = gathered.transpose(axes[2], axes[1], axes[0])  # scan (z, y, x)
        else:  # oblique: each voxel's own coordinates
            z, y, x = np.meshgrid(scan_ranges[2], scan_ranges[1], scan_ranges[0], indexing="ij", sparse=True)
            index = []
            for model_axis in range(3):
                coordinates = (
                    linear[model_axis, 0] * x + linear[model_axis, 1] * y + linear[model_axis, 2] * z
                ) + offset[model_axis]
                index.append(_cell_index(coordinates, model_sizes[model_axis]))
            codes = cells[index[0], index[1], index[2]]
        codes = np.ascontiguousarray(codes)
        mixed = np.nonzero(codes == MIXED)
        if len(mixed[0]):
            voxels = np.stack([mixed[2] + x0, mixed[1] + y0, mixed[0] + start], axis=1).astype(np.float64)
            codes[mixed] = _trilinear_argmax(probabilities, voxels @ linear.T + offset)
        labels[start:stop, y0:y1, x0:x1] = codes
    return labels


def labels_on_grid_resampled(
    scores: torch.Tensor,
    model_affine: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    grid_size: Sequence[int],
    interpolation: Interpolation = "bilinear",
    slab: int | None = None,
) -> np.ndarray:
    """Resample model-grid scores onto the scan grid slab by slab and take the argmax: a uint8 label volume.

    Every class is interpolated at every scan voxel near the foreground (MONAI's ``SpatialResample``): the reference
    that :func:`labels_on_grid` (uniform cells) equals; also the path for label maps (``"nearest"``).

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
            resampled = resample(source, dst_affine=dst_affine, spatial_size=slab_size)
            values = resampled.as_tensor() if isinstance(resampled, MetaTensor) else torch.as_tensor(resampled)
            slab_labels = class_argmax(values) if channels > 1 else values[0].round()
            if inside_model is not None:
                weight = torch.as_tensor(coverage(inside_model, dst_affine=dst_affine, spatial_size=slab_size))
                slab_labels = torch.where(weight[0] > 0, slab_labels, torch.zeros_like(slab_labels))
            # (x, y, z) -> (z, y, x)
            labels[start:stop, y0:y1, x0:x1] = slab_labels.permute(2, 1, 0).numpy().astype(np.uint8)
    return labels
