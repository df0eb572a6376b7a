"""Bring a scan onto the model's grid straight from its stored voxels, slab by slab: :func:`streamed_scan_chain`
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
model grid's affine (medseg's :func:`~medseg.inference.inversion.labels_on_grid`); MONAI ``Invertd`` of the whole
chain needs the stock chain (``enabled=False``; the segmenter: ``preprocessing="chain"``). A chain that does not
start with these transforms as the bundle writes them (bilinear, border padding, a MedsegReader for the path form) is
left as it is.

Memory, 512 x 512 x 1000 int16 CT (500 MiB stored) to a 4.7 x 4.7 x 2.5 mm grid: the stock chain holds 1 GiB (float32
load) + 1 GiB (orientation copy) + 2 GiB (float64 resampling) at full resolution; the streamed pass holds the stored
voxels, one slab of them in float32 (about :data:`BLOCK_BUDGET_BYTES`) and the model grid.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

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
)
from monai.utils import ImageMetaKey, MetaKeys, SpaceKeys

from medseg.inference.inversion import axis_permutation
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
