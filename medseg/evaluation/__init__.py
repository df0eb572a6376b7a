"""Evaluation: Dice / HD95 / NSD / volume tables and plots of predicted label maps against references.

Pairing (:mod:`~medseg.evaluation.pairing`) -> reading and grid check (:mod:`~medseg.evaluation.label_maps`) ->
per-label MONAI metrics in mm (:mod:`~medseg.evaluation.metrics`) -> per-organ summary with bootstrap CIs
(:mod:`~medseg.evaluation.summary`) -> box plots (:mod:`~medseg.evaluation.plots`); :func:`evaluate` runs them all
and writes the files, ``medseg evaluate`` (:mod:`~medseg.evaluation.commands`) is the command line.

The re-exports below load on first use, so importing the command module does not import torch, MONAI or matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.evaluation.evaluator import EvaluationReport, evaluate
    from medseg.evaluation.metrics import LabelMetrics, compare_label_maps

_EXPORTS = {
    "medseg.evaluation.evaluator": ("EvaluationReport", "evaluate"),
    "medseg.evaluation.metrics": ("LabelMetrics", "compare_label_maps"),
}
__all__ = ["EvaluationReport", "LabelMetrics", "compare_label_maps", "evaluate"]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
