"""Stage 4: segment scans with a trained bundle.

commands.py   ``medseg segment``
options.py    SegmentOptions: how to segment, set once; the output formats
batch.py      segment_folder: resume, per-case isolation, summaries, torchrun sharding
cases.py      what INPUT holds: a sorted list of cases with safe ids
segmenter.py  Segmenter: the bundle's transforms, inferer and network, loaded once, predicting many scans
bundle.py     find the bundle, its configs, label names and weights
model_grid.py scan grid -> model grid (streamed from the stored voxels) and back (slab by slab, argmax into uint8)
postprocess.py  per organ: drop specks, keep the largest connected component
outputs.py    the files of a case and the case.json manifest that marks it complete

The names below load on first use (PEP 562), so that importing one submodule does not import torch and MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.inference.batch import BatchResult, Shard, segment_folder
    from medseg.inference.cases import Case, discover_cases
    from medseg.inference.options import FORMATS, parse_formats
    from medseg.inference.segmenter import Segmentation, Segmenter

_EXPORTS = {
    "medseg.inference.batch": ("BatchResult", "Shard", "segment_folder"),
    "medseg.inference.cases": ("Case", "discover_cases"),
    "medseg.inference.options": ("FORMATS", "parse_formats"),
    "medseg.inference.segmenter": ("Segmentation", "Segmenter"),
}
__all__ = [
    "FORMATS",
    "BatchResult",
    "Case",
    "Segmentation",
    "Segmenter",
    "Shard",
    "discover_cases",
    "parse_formats",
    "segment_folder",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
