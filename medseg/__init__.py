"""medseg: 3D-aware CT segmentation on MONAI.

The data path, one subpackage per stage:

    io/           find the CT series in a folder, read it with its exact geometry, guard that geometry, write masks
    datasets/     data_manifest.json, its validation, importers that make training-ready NIfTI datasets
    transforms/   the few transforms MONAI lacks (HU window presets, 2.5D slice stacks, body crop)
    networks/     network factory (MONAI UNet / DynUNet, FCN-8s)
    inference/    load a bundle once, segment many scans
    evaluation/   Dice / HD95 / NSD tables and plots
    reporting/    per-case summaries, QA flags, quick-look images, the batch report
    api.py        ``medseg.segment(scan)``: one scan in, its label map and organ volumes out

``segment`` and ``SegmentationResult`` load on first use (PEP 562): ``import medseg`` (and ``medseg --help``) does not
import torch and MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

__version__ = "0.1.0"

if TYPE_CHECKING:
    from medseg.api import SegmentationResult, segment

_EXPORTS = {"medseg.api": ("SegmentationResult", "segment")}
__all__ = ["SegmentationResult", "__version__", "segment"]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
