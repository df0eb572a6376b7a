"""Transforms MONAI lacks, as array + dictionary twins: named HU windows, the body ``select_fn`` for
``CropForegroundd``, and 2.5D slice-neighbour stacking; the bundle's deterministic chain, written once
(:mod:`medseg.transforms.preprocessing`, called by ``configs/train.json`` and ``configs/inference.json``), and its
random half for training (:mod:`medseg.transforms.training`).

Imported eagerly: every transform needs torch and MONAI anyway, and the bundle configs name them through this
package (``$medseg.transforms.preprocessing_chain(...)``).
"""

from __future__ import annotations

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
