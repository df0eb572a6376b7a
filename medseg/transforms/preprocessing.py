"""The deterministic half of the bundle's chain, written once: what a scan goes through before the network, with
the three transforms MONAI lacks that it uses.

``LoadImaged -> EnsureChannelFirstd -> Orientationd("RAS") -> Spacingd -> CropForegroundd(BodyMask) -> HUWindowd ->
StackSliceNeighboursd`` (:func:`preprocessing_transforms`), then mirror padding up to the inferer's window
(:func:`window_padding`). ``configs/train.json`` calls both for the image and its label (the label resampled
nearest), ``configs/inference.json`` calls :func:`preprocessing_chain` for the image alone. Every step is a stock
MONAI transform or one defined here, so the segmenter, ``Invertd`` and
:func:`medseg.inference.model_grid.streamed_scan_chain` see (and invert) them as MONAI transforms.

The transforms MONAI lacks, in the chain's order, each an array transform with its dictionary twin where the chain
needs one:

- **HU window** (:class:`HUWindow`, :class:`HUWindowd`, named presets :data:`HU_WINDOW_PRESETS`): a Hounsfield range
  mapped linearly onto [b_min, b_max] and clipped. The presets are the usual radiology display windows (level L, width
  W; the range is L - W/2 .. L + W/2). Array and dictionary twins subclass MONAI's ``ScaleIntensityRange`` /
  ``ScaleIntensityRanged``, so they behave exactly like those (MetaTensor in, MetaTensor out; any channel count) and
  only add the named range.
- **Body crop** (:class:`BodyMask`): which voxels are the patient's body, the ``select_fn`` that lets MONAI
  ``CropForegroundd`` crop a CT to the body. Cropping to the body (rather than to "anything above air") drops the air
  around the patient and, because only the largest connected component is kept, the couch and other objects that do not
  touch the patient. The crop itself is MONAI's ``CropForegroundd``, so it is recorded in the MetaTensor and ``Invertd``
  pads the prediction back.
- **2.5D slice stacks** (:class:`StackSliceNeighbours`, :class:`StackSliceNeighboursd`): every axial slice together with
  its ``n`` neighbours above and below, as channels. ``StackSliceNeighbours`` turns a volume ``(C, H, W, D)`` into
  ``(C * (2n + 1), H, W, D)``: for every slice index ``k`` the channels hold slices ``k - n .. k + n`` of each input
  channel (channel-major: all offsets of channel 0, then channel 1, ...). The volume keeps its geometry, so the same
  chain serves training (crop ``[h, w, 1]`` and squeeze to 2D), validation and inference (``SliceInferer`` runs a 2D
  network slice by slice). Past the first and last slice the end slice is repeated (``mode="edge"``) or ``fill`` is
  used (``mode="constant"``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    Spacingd,
    SpatialPadd,
    Transform,
)
from monai.transforms.utils import get_largest_connected_component_mask
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from medseg.errors import MedsegError

__all__ = [
    "HU_WINDOW_PRESETS",
    "BodyMask",
    "HUWindow",
    "HUWindowPreset",
    "HUWindowd",
    "StackSliceNeighbours",
    "StackSliceNeighboursd",
    "hu_window_range",
    "preprocessing_chain",
    "preprocessing_transforms",
    "window_padding",
]


@dataclass(frozen=True)
class HUWindowPreset:
    """A display window: ``level`` (centre) and ``width``, both in Hounsfield units."""

    level: float
    width: float

    @property
    def lower(self) -> float:
        return self.level - self.width / 2

    @property
    def upper(self) -> float:
        return self.level + self.width / 2


# Common clinical display windows (level, width). head_neck is the neck soft-tissue window; bone and air still
# stay apart in it (they saturate to b_max and b_min), which is what organ-at-risk segmentation needs.
HU_WINDOW_PRESETS: Mapping[str, HUWindowPreset] = {
    "head_neck": HUWindowPreset(level=40.0, width=350.0),  # -135 .. 215
    "soft_tissue": HUWindowPreset(level=40.0, width=400.0),  # -160 .. 240
    "abdomen": HUWindowPreset(level=50.0, width=350.0),  # -125 .. 225
    "lung": HUWindowPreset(level=-600.0, width=1500.0),  # -1350 .. 150
    "bone": HUWindowPreset(level=400.0, width=1800.0),  # -500 .. 1300
}


def hu_window_range(window: str | Sequence[float]) -> tuple[float, float]:
    """The HU range ``(lower, upper)`` of a preset name or of an explicit ``[lower, upper]`` pair.

    Raises:
        MedsegError: unknown preset name, or a pair that is not two increasing finite numbers.
    """
    if isinstance(window, str):
        preset = HU_WINDOW_PRESETS.get(window)
        if preset is None:
            raise MedsegError(None, f"unknown HU window {window!r}; presets: {', '.join(sorted(HU_WINDOW_PRESETS))}")
        return preset.lower, preset.upper
    values = [float(v) for v in window]
    if len(values) != 2 or not all(np.isfinite(values)) or values[0] >= values[1]:
        raise MedsegError(None, f"HU window {list(window)!r} must be [lower, upper] with lower < upper")
    return values[0], values[1]


class HUWindow(ScaleIntensityRange):
    """Map the HU range of ``window`` onto ``[b_min, b_max]`` (linear), clipping outside values by default.

    Args:
        window: a preset name (:data:`HU_WINDOW_PRESETS`) or ``[lower, upper]`` in HU.
        b_min, b_max: the output range.
        clip: clip to ``[b_min, b_max]`` (values outside the window saturate).
        dtype: output data type.

    Shapes: any ``(C, *spatial)`` array or tensor; the output has the same shape.
    """

    def __init__(
        self,
        window: str | Sequence[float] = "soft_tissue",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        dtype: DtypeLike = np.float32,
    ) -> None:
        lower, upper = hu_window_range(window)
        super().__init__(a_min=lower, a_max=upper, b_min=b_min, b_max=b_max, clip=clip, dtype=dtype)
        self.window = window


class HUWindowd(ScaleIntensityRanged):
    """Dictionary twin of :class:`HUWindow` for the entries named by ``keys``."""

    def __init__(
        self,
        keys: KeysCollection,
        window: str | Sequence[float] = "soft_tissue",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        lower, upper = hu_window_range(window)
        super().__init__(
            keys,
            a_min=lower,
            a_max=upper,
            b_min=b_min,
            b_max=b_max,
            clip=clip,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )
        self.window = window


logger = logging.getLogger(__name__)


class BodyMask:
    """``select_fn`` for ``CropForeground(d)``: voxels above ``threshold_hu``, optionally only the largest component.

    Args:
        threshold_hu: voxels strictly above this value count as body (-500 HU separates tissue from air and lung
            parenchyma stays inside the body's outline once the largest component is filled around it).
        largest_component: keep only the largest 3D-connected component of each channel.

    Shapes: ``(C, *spatial)`` in, boolean ``(C, *spatial)`` out (same array type). When no voxel passes the
    threshold the whole image is returned as body, so a crop never removes everything.
    """

    def __init__(self, threshold_hu: float = -500.0, largest_component: bool = True) -> None:
        self.threshold_hu = float(threshold_hu)
        self.largest_component = largest_component

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        above = np.asarray(img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img) > self.threshold_hu
        if not above.any():
            logger.warning("no voxel above %s HU: not cropping to the body", self.threshold_hu)
            mask = np.ones_like(above)
        elif self.largest_component:
            mask = np.stack([get_largest_connected_component_mask(channel) for channel in above])
        else:
            mask = above
        out, *_ = convert_to_dst_type(mask, img, dtype=bool)
        return out

    def __repr__(self) -> str:
        return f"BodyMask(threshold_hu={self.threshold_hu}, largest_component={self.largest_component})"


STACK_MODES = ("edge", "constant")


class StackSliceNeighbours(Transform):
    """Stack each slice with its ``neighbours`` slices on either side along ``slice_axis`` as extra channels.

    Args:
        neighbours: slices taken on each side (0 returns the input unchanged).
        slice_axis: spatial axis along which slices are taken (2 = the last axis, axial after RAS orientation).
        mode: ``"edge"`` repeats the end slices past the volume's ends; ``"constant"`` uses ``fill``.
        fill: value past the ends when ``mode="constant"``.

    Shapes: ``(C, *spatial)`` -> ``(C * (2 * neighbours + 1), *spatial)``; MetaTensor metadata (affine) is kept.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI's convention)

    def __init__(self, neighbours: int = 1, slice_axis: int = 2, mode: str = "edge", fill: float = 0.0) -> None:
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        if mode not in STACK_MODES:
            raise ValueError(f"mode must be one of {STACK_MODES}, got {mode!r}")
        self.neighbours = int(neighbours)
        self.slice_axis = int(slice_axis)
        self.mode = mode
        self.fill = float(fill)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if self.neighbours == 0:
            return img
        data = convert_to_tensor(img, track_meta=False)
        if not 0 <= self.slice_axis < data.ndim - 1:
            raise ValueError(f"slice_axis {self.slice_axis} is not a spatial axis of an image of shape {data.shape}")
        dim = self.slice_axis + 1  # tensor dimension: spatial axis after the channel axis
        depth = data.shape[dim]
        index = torch.arange(depth, device=data.device)
        blocks = []
        for offset in range(-self.neighbours, self.neighbours + 1):
            shifted = index + offset
            block = data.index_select(dim, shifted.clamp(0, depth - 1))
            if self.mode == "constant":
                outside = (shifted < 0) | (shifted >= depth)
                shape = [1] * data.ndim
                shape[dim] = depth
                block = block.masked_fill(outside.view(shape), self.fill)
            blocks.append(block)
        # (offsets, C, *spatial) -> (C, offsets, *spatial) -> (C * offsets, *spatial): channel-major order
        stacked = torch.stack(blocks, dim=1).reshape(data.shape[0] * len(blocks), *data.shape[1:])
        out, *_ = convert_to_dst_type(stacked, img)
        return out


class StackSliceNeighboursd(MapTransform):
    """Dictionary twin of :class:`StackSliceNeighbours` for the entries named by ``keys`` (the image only)."""

    backend = StackSliceNeighbours.backend

    def __init__(
        self,
        keys: KeysCollection,
        neighbours: int = 1,
        slice_axis: int = 2,
        mode: str = "edge",
        fill: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stacker = StackSliceNeighbours(neighbours=neighbours, slice_axis=slice_axis, mode=mode, fill=fill)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.stacker(d[key])
        return d


def preprocessing_transforms(
    spacing: Sequence[float],
    hu_window: str | Sequence[float],
    body_threshold_hu: float = -500.0,
    slice_neighbours: int = 0,
    reader: str = "NibabelReader",
    image_key: str = "image",
    label_key: str | None = None,
    body_crop: bool = True,
) -> list[MapTransform]:
    """Read, channel first, RAS, resample to ``spacing``, crop to the body, HU window, stack slice neighbours.

    Args:
        spacing: target voxel spacing (mm) of ``Spacingd``.
        hu_window: preset name or ``[low, high]`` HU of :class:`~medseg.transforms.HUWindowd`.
        body_threshold_hu: HU above which a voxel is body, for the crop (:class:`~medseg.transforms.BodyMask`).
        slice_neighbours: axial neighbours stacked as channels on each side (2.5D); 0 for 2D and 3D.
        reader: MONAI image reader of ``LoadImaged``.
        image_key: the scan's key.
        label_key: the label map's key, if any: read, oriented, resampled (nearest) and cropped with the scan, and
            allowed to be missing (as the scan then is).
        body_crop: ``False`` leaves out the body crop (to compare with a chain that has none).
    """
    keys = [image_key] if label_key is None else [image_key, label_key]
    modes = ["bilinear", "nearest"][: len(keys)]
    missing = label_key is not None
    transforms: list[MapTransform] = [
        LoadImaged(keys, reader=reader, image_only=True, allow_missing_keys=missing),
        EnsureChannelFirstd(keys, allow_missing_keys=missing),
        Orientationd(keys, axcodes="RAS", allow_missing_keys=missing),
        Spacingd(keys, pixdim=spacing, mode=modes, allow_missing_keys=missing),
    ]
    if body_crop:
        body = BodyMask(threshold_hu=body_threshold_hu, largest_component=True)
        transforms.append(
            CropForegroundd(
                keys, source_key=image_key, select_fn=body, margin=2, allow_smaller=True, allow_missing_keys=missing
            )
        )
    transforms.append(HUWindowd(image_key, window=hu_window))
    transforms.append(StackSliceNeighboursd(image_key, neighbours=slice_neighbours, slice_axis=2))
    return transforms


def window_padding(patch_size: Sequence[int], spatial_dims: int, image_key: str = "image") -> SpatialPadd:
    """Mirror padding of the scan up to the inferer's window (``patch_size``; one slice deep in 2D / 2.5D): torch's
    reflect padding inside the sliding window cannot pad more than the image's own size."""
    window = [int(size) for size in patch_size] + [1] * (3 - int(spatial_dims))
    return SpatialPadd(image_key, spatial_size=window, mode="symmetric")


def preprocessing_chain(
    spacing: Sequence[float],
    hu_window: str | Sequence[float],
    patch_size: Sequence[int],
    spatial_dims: int,
    body_threshold_hu: float = -500.0,
    slice_neighbours: int = 0,
    reader: str = "NibabelReader",
    image_key: str = "image",
    body_crop: bool = True,
) -> Compose:
    """The scan's whole chain for inference: :func:`preprocessing_transforms` of the image, then
    :func:`window_padding`."""
    transforms = preprocessing_transforms(
        spacing, hu_window, body_threshold_hu, slice_neighbours, reader, image_key, body_crop=body_crop
    )
    return Compose([*transforms, window_padding(patch_size, spatial_dims, image_key)])
