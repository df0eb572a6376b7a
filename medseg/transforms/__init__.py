"""Transforms MONAI lacks, as array + dictionary twins: named HU windows, the body ``select_fn`` for
``CropForegroundd``, and 2.5D slice-neighbour stacking. The chain itself is spelled out once, in
``bundles/ct_unet/configs/train.json``."""

from medseg.transforms.body import BodyMask
from medseg.transforms.intensity import HU_WINDOW_PRESETS, HUWindow, HUWindowd, HUWindowPreset, hu_window_range
from medseg.transforms.slices import StackSliceNeighbours, StackSliceNeighboursd

__all__ = [
    "HU_WINDOW_PRESETS",
    "BodyMask",
    "HUWindow",
    "HUWindowPreset",
    "HUWindowd",
    "StackSliceNeighbours",
    "StackSliceNeighboursd",
    "hu_window_range",
]
