"""Scaling: time and peak memory of medseg's segmentation (the batch job's per-case path, as in
:mod:`benchmarks.end_to_end`) against the size of the scan, on synthetic int16 CT-like volumes at 1 mm
(:func:`benchmarks.workloads.synthetic_ct`), each size in a fresh process.

The growth is summarised by least-squares slopes on log-log axes: ``time ~ voxels^a`` (a = 1 is linear) and
``(peak - baseline) ~ voxels^b`` for the memory the case itself needs above the loaded process. The plot shows both
against voxels with a linear guide through the largest size.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.end_to_end import medseg_task
from benchmarks.harness import log, run_fresh


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); ``None`` with fewer than two usable points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    spread = sum((p[0] - mean_x) ** 2 for p in points)
    if spread == 0:
        return None
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / spread


def run_scaling(
    volumes: dict[str, Path], model_file: str, work_dir: Path, bundle: str, timeout_s: float = 900.0
) -> dict[str, Any]:
    """medseg on every volume (``{"XxYxZ": path}``), one fresh process each; rows, slopes and MiB per Mvoxel."""
    rows = []
    for name, image in volumes.items():
        size = [int(n) for n in name.split("x")]
        output = work_dir / "scaling" / name
        result = run_fresh(
            medseg_task,
            {"image": str(image), "output_dir": str(output), "model_file": model_file, "bundle": bundle},
            timeout_s,
        )
        shutil.rmtree(output, ignore_errors=True)
        row: dict[str, Any] = {"size": size, "voxels": math.prod(size), "ok": result["ok"]}
        if result["ok"]:
            row.update(
                {
                    "seconds": result["seconds"],
                    "peak_rss_mib": result["peak_rss_mib"],
                    "baseline_rss_mib": result["baseline_rss_mib"],
                    "stages": result["stages"],
                }
            )
            log(f"scaling {name}: {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB")
        else:
            row["error"] = result["error"]
            log(f"scaling {name}: FAILED {result['error']}")
        rows.append(row)
    done = [row for row in rows if row["ok"]]
    voxels = [row["voxels"] for row in done]
    above = [row["peak_rss_mib"] - row["baseline_rss_mib"] for row in done]
    largest = max(done, key=lambda row: row["voxels"]) if done else None
    largest_three = sorted(done, key=lambda row: row["voxels"])[-3:]
    return {
        "spacing_mm": [1.0, 1.0, 1.0],
        "rows": rows,
        "time_exponent": loglog_slope(voxels, [row["seconds"] for row in done]),
        "memory_exponent": loglog_slope(voxels, above),
        # Fixed costs (the network's windows on a small grid, imports) flatten the small sizes: the slope over the
        # three largest sizes says how the cost grows where it matters.
        "time_exponent_largest3": loglog_slope(
            [row["voxels"] for row in largest_three], [row["seconds"] for row in largest_three]
        ),
        "memory_exponent_largest3": loglog_slope(
            [row["voxels"] for row in largest_three],
            [row["peak_rss_mib"] - row["baseline_rss_mib"] for row in largest_three],
        ),
        "mib_per_megavoxel_at_largest": (
            None
            if largest is None
            else (largest["peak_rss_mib"] - largest["baseline_rss_mib"]) / (largest["voxels"] / 1e6)
        ),
    }


def plot_scaling(scaling: dict[str, Any], path: Path) -> Path | None:
    """Log-log time and peak memory against voxels (PNG); ``None`` when fewer than two sizes succeeded."""
    done = [row for row in scaling["rows"] if row["ok"]]
    if len(done) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medseg.io.files import atomic_path

    voxels = [row["voxels"] for row in done]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    series = (
        (time_axis, [row["seconds"] for row in done], "wall time per case (s)", scaling.get("time_exponent")),
        (memory_axis, [row["peak_rss_mib"] for row in done], "peak RSS (MiB)", None),
    )
    for axis, values, label, exponent in series:
        axis.loglog(voxels, values, "o-", label="medseg segment")
        guide = [values[-1] * v / voxels[-1] for v in voxels]
        axis.loglog(voxels, guide, "--", color="grey", label="linear in voxels")
        for row, value in zip(done, values, strict=True):
            axis.annotate("x".join(str(n) for n in row["size"]), (row["voxels"], value), fontsize=7)
        axis.set_xlabel("voxels")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
        if exponent is not None:
            axis.set_title(f"slope {exponent:.2f}", fontsize=9)
    memory_exponent = scaling.get("memory_exponent")
    if memory_exponent is not None:
        memory_axis.set_title(f"memory above baseline: slope {memory_exponent:.2f}", fontsize=9)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
    return path
