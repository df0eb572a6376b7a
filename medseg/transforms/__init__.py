"""Transforms MONAI lacks, as array + dictionary twins: named HU windows, the body ``select_fn`` for
``CropForegroundd``, and 2.5D slice-neighbour stacking; the bundle's deterministic chain, written once
(:mod:`medseg.transforms.preprocessing`, called by ``configs/train.json`` and ``configs/inference.json``), and its
random half for training (:mod:`medseg.transforms.training`).

The names below load on first use (PEP 562), so that importing one submodule does not import torch and MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.transforms.body import BodyMask
    from medseg.transforms.intensity import HU_WINDOW_PRESETS, HUWindow, HUWindowd, HUWindowPreset, hu_window_range
    from medseg.transforms.preprocessing import preprocessing_chain, preprocessing_transforms, window_padding
    from medseg.transforms.slices import StackSliceNeighbours, StackSliceNeighboursd
    from medseg.transforms.training import augmentation, patch_sampling, training_transforms

_EXPORTS = {
    "medseg.transforms.body": ("BodyMask",),
    "medseg.transforms.intensity": ("HU_WINDOW_PRESETS", "HUWindow", "HUWindowd", "HUWindowPreset", "hu_window_range"),
    "medseg.transforms.preprocessing": ("preprocessing_chain", "preprocessing_transforms", "window_padding"),
    "medseg.transforms.slices": ("StackSliceNeighbours", "StackSliceNeighboursd"),
    "medseg.transforms.training": ("augmentation", "patch_sampling", "training_transforms"),
}
__all__ = [
    "HU_WINDOW_PRESETS",
    "BodyMask",
    "HUWindow",
    "HUWindowPreset",
    "HUWindowd",
    "StackSliceNeighbours",
    "StackSliceNeighboursd",
    "augmentation",
    "hu_window_range",
    "patch_sampling",
    "preprocessing_chain",
    "preprocessing_transforms",
    "training_transforms",
    "window_padding",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
