"""The deterministic half of the bundle's chain, written once: what a scan goes through before the network.

``LoadImaged -> EnsureChannelFirstd -> Orientationd("RAS") -> Spacingd -> CropForegroundd(BodyMask) -> HUWindowd ->
StackSliceNeighboursd`` (:func:`preprocessing_transforms`), then mirror padding up to the inferer's window
(:func:`window_padding`). ``configs/train.json`` calls both for the image and its label (the label resampled
nearest), ``configs/inference.json`` calls :func:`preprocessing_chain` for the image alone. Every step is a stock
MONAI transform or one of :mod:`medseg.transforms`, so the segmenter, ``Invertd`` and
:func:`medseg.inference.model_grid.streamed_preprocessing` see (and invert) them as MONAI transforms.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    Orientationd,
    Spacingd,
    SpatialPadd,
)

from medseg.transforms.body import BodyMask
from medseg.transforms.intensity import HUWindowd
from medseg.transforms.slices import StackSliceNeighboursd

__all__ = ["preprocessing_chain", "preprocessing_transforms", "window_padding"]


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
