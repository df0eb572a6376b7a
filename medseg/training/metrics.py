"""Evaluation metrics MONAI's ignite handlers lack: HD95 in millimetres, and a tidy per-case, per-class table.

MONAI's ``HausdorffDistance`` handler calls the metric without a voxel spacing, i.e. in voxels. Here every case
is measured with the spacing of its own prediction (``MetaTensor.pixdim``), so after ``Invertd`` the distance is
in millimetres on the scan's original grid, by :func:`medseg.evaluation.metrics.compare_label_maps`: the bundle's
evaluation and ``medseg evaluate`` share one HD95 and one rule for a missing organ.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric, do_metric_reduction
from monai.utils import MetricReduction

from medseg.evaluation.metrics import compare_label_maps
from medseg.io.files import atomic_path


class _LabelMapHD95(CumulativeIterationMetric):
    """HD95 (mm) of every foreground class of one-hot ``(B, C, *spatial)`` batches, one row per case."""

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.reduction = reduction

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, spacing: Sequence[float] | None = None
    ) -> torch.Tensor:
        rows = []
        for pred, ref in zip(y_pred, y, strict=True):
            spacing_mm = list(spacing) if spacing is not None else [1.0] * (pred.ndim - 1)
            scores = compare_label_maps(
                pred.argmax(0).cpu().numpy(), ref.argmax(0).cpu().numpy(), spacing_mm, label_ids=range(1, len(pred))
            )
            rows.append([score.hd95_mm for score in scores])
        return torch.tensor(rows, dtype=torch.float32)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the metric buffer is not a tensor: nothing was measured")
        value, _ = do_metric_reduction(data, reduction or self.reduction)
        return value


class HausdorffDistanceMM(IgniteMetricHandler):
    """Symmetric 95th-percentile Hausdorff distance (HD95) in mm, per case and foreground class.

    ``output_transform`` must give ``(y_pred, y)`` as lists of one-hot ``(C, *spatial)`` tensors (decollated);
    each prediction's spacing comes from its affine. The values and the rule for an organ missing from either side
    are :func:`medseg.evaluation.metrics.compare_label_maps`': NaN where the class is in neither (ignored by the
    mean), the image diagonal where it is in one only.
    """

    def __init__(
        self,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=_LabelMapHD95(reduction), output_transform=output_transform, save_details=save_details
        )

    def update(self, output: Sequence[Any]) -> None:
        y_pred, y = output
        for pred, ref in zip(y_pred, y, strict=True):
            spacing = pred.pixdim.tolist() if isinstance(pred, MetaTensor) else None
            self.metric_fn(y_pred=pred[None], y=ref[None], spacing=spacing)


class PerCaseMetricsCSV:
    """Evaluator handler writing ``case_id, class_id, class_name, <metric>...`` rows (one per case and class).

    Args:
        csv_path: the output file (written atomically when the evaluation completes).
        metric_names: evaluator metrics whose ``metric_details`` (cases x classes) become columns.
        class_names: foreground class names in channel order (background excluded, as the metrics exclude it).
        case_key: the batch item key holding the case id.
    """

    def __init__(
        self,
        csv_path: str | Path,
        metric_names: Sequence[str],
        class_names: Sequence[str],
        case_key: str = "case_id",
    ) -> None:
        self.csv_path = Path(csv_path)
        self.metric_names = list(metric_names)
        self.class_names = list(class_names)
        self.case_key = case_key
        self._cases: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self._cases = []

    def _collect(self, engine: Engine) -> None:
        batch: Any = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for item in items:
            case = item.get(self.case_key)
            if case is None:
                meta = getattr(item.get("image"), "meta", {})
                case = Path(str(meta.get("filename_or_obj", "?"))).name
            self._cases.append(str(case[0] if isinstance(case, (list, tuple)) else case))

    def _write(self, engine: Engine) -> None:
        details = getattr(engine.state, "metric_details", {})
        tables = {name: torch.as_tensor(details[name]).reshape(len(self._cases), -1) for name in self.metric_names}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["case_id", "class_id", "class_name", *self.metric_names])
        for row, case in enumerate(self._cases):
            for index, name in enumerate(self.class_names):
                values = [float(tables[m][row, index]) for m in self.metric_names]
                writer.writerow([case, index + 1, name, *("" if math.isnan(v) else f"{v:.6f}" for v in values)])
        with atomic_path(self.csv_path) as tmp:
            tmp.write_text(buffer.getvalue())
