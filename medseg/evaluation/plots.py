"""Box plots of Dice, NSD and HD95 per organ (one box per organ, one dot per case), drawn with Agg."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medseg.evaluation.metrics import LabelMetrics
from medseg.io.files import atomic_path

HD95_TICKS_MM = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def plot_metric_boxes(
    results: Mapping[str, Sequence[LabelMetrics]],
    label_names: Mapping[int, str],
    path: str | Path,
    tolerance_mm: float,
) -> Path:
    """Write a PNG with three panels (Dice, NSD at ``tolerance_mm``, HD95 in mm), organs as rows.

    Organs scored in no case (``both_empty`` everywhere) are left out; missing organs show at Dice 0 and at the
    worst-case HD95. The HD95 axis is symmetric-log (linear below 1 mm) so that 0 mm and a worst-case diagonal
    of several hundred mm both stay readable.

    Returns:
        ``path``.
    """
    path = Path(path)
    by_label: dict[int, list[LabelMetrics]] = {}
    for case_metrics in results.values():
        for metrics in case_metrics:
            if not math.isnan(metrics.dice):
                by_label.setdefault(metrics.label_id, []).append(metrics)
    label_ids = sorted(by_label)
    names = [label_names.get(label_id, f"label_{label_id}") for label_id in label_ids]
    n_cases = len(results)

    height = max(3.0, 0.3 * len(label_ids) + 1.6)
    figure = Figure(figsize=(15, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3, sharey=True)
    panels = (
        ("dice", "Dice", (-0.02, 1.02)),
        ("nsd", f"NSD @ {tolerance_mm:g} mm", (-0.02, 1.02)),
        ("hd95_mm", "HD95 (mm; one side empty = image diagonal)", None),
    )
    positions = np.arange(len(label_ids))[::-1]  # first label at the top
    jitter = np.random.default_rng(0)
    for axis, (attribute, title, limits) in zip(axes, panels, strict=True):
        data = [[getattr(m, attribute) for m in by_label[label_id]] for label_id in label_ids]
        if data:
            axis.boxplot(data, positions=positions, orientation="horizontal", widths=0.6, showfliers=False)
            for row, values in zip(positions, data, strict=True):
                offsets = jitter.uniform(-0.18, 0.18, size=len(values))
                axis.scatter(values, row + offsets, s=9, alpha=0.6, color="tab:blue", zorder=3)
        axis.set_title(title)
        axis.grid(axis="x", alpha=0.3)
        if limits is not None:
            axis.set_xlim(*limits)
        else:
            largest = max((max(values) for values in data), default=1.0)
            right = max(largest, 1.0) * 1.4  # headroom so the largest box is not drawn on the frame
            axis.set_xscale("symlog", linthresh=1.0)
            axis.set_xlim(0, right)
            ticks = [tick for tick in HD95_TICKS_MM if tick <= right]
            axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            axis.minorticks_off()
    axes[0].set_yticks(positions, names)
    axes[0].set_ylim(-0.7, len(label_ids) - 0.3)
    figure.suptitle(f"{n_cases} case(s), {len(label_ids)} organ(s)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    return path
