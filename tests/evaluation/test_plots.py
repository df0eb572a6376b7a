from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image

from medseg.evaluation.metrics import STATUS_BOTH_EMPTY, STATUS_OK, LabelMetrics
from medseg.evaluation.plots import plot_metric_boxes


def _case(dice: float) -> list[LabelMetrics]:
    return [LabelMetrics(label_id, STATUS_OK, dice, 3.0 * label_id, dice, 1.0, 1.0) for label_id in range(1, 13)] + [
        LabelMetrics(99, STATUS_BOTH_EMPTY, math.nan, math.nan, math.nan, 0.0, 0.0)
    ]


def test_png_grows_with_the_number_of_organs(tmp_path: Path) -> None:
    results = {"a": _case(0.9), "b": _case(0.7), "c": _case(0.8)}
    many = plot_metric_boxes(results, {1: "liver"}, tmp_path / "many.png", tolerance_mm=2.0)
    few = plot_metric_boxes(
        {case: metrics[:2] for case, metrics in results.items()}, {}, tmp_path / "few.png", tolerance_mm=2.0
    )
    many_pixels, few_pixels = matplotlib.image.imread(many), matplotlib.image.imread(few)
    assert many_pixels.shape[1] == few_pixels.shape[1] == 1500  # 15 in at 100 dpi
    assert many_pixels.shape[0] > few_pixels.shape[0]
    assert many_pixels.std() > 0.05  # drawn, not blank
    assert not list(tmp_path.glob(".medseg-tmp-*"))
