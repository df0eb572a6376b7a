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
    from medseg.transforms.preprocessing import (
        HU_WINDOW_PRESETS,
        BodyMask,
        HUWindow,
        HUWindowd,
        HUWindowPreset,
        StackSliceNeighbours,
        StackSliceNeighboursd,
        hu_window_range,
        preprocessing_chain,
        preprocessing_transforms,
        window_padding,
    )
    from medseg.transforms.training import augmentation, patch_sampling, training_transforms

_EXPORTS = {
    "medseg.transforms.preprocessing": (
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
    ),
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
