"""The inversion: medseg's default ``labels_on_grid`` (model grid -> scan grid, interpolating only where the 8
surrounding model voxels disagree: ``uniform_cells``) against ``labels_on_grid_resampled`` (every class's
probability interpolated at every scan voxel, MONAI ``SpatialResample`` slab by slab: the previous default and the
reference, ``resampled``) and medseg's ``inversion="nearest"`` (argmax on the model grid, nearest-neighbour labels:
blockier), on the same network output.

Each method runs in a fresh process per repetition (A B C A B C ...): set-up (read, preprocess, sliding window,
softmax) untimed, then the inversion timed and its labels saved; the labels of each method are compared with the
reference (``resampled``) labels: identical voxel fraction and per-label Dice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.agreement import dice_per_label
from benchmarks.harness import log, median_of, outcome, run_fresh, start_measuring, summarize

METHODS = ("resampled", "uniform_cells", "nearest")


def inversion_task(image: str, model_file: str, bundle: str, method: str, labels_out: str) -> dict[str, Any]:
    """Harness task: network output of ``image`` (untimed), then one timed inversion with ``method``."""
    import torch
    from monai.transforms import Padd

    from benchmarks.network import pad_to_window
    from medseg.inference import Segmenter
    from medseg.inference.model_grid import labels_on_grid, labels_on_grid_resampled
    from medseg.io.geometry import ras_affine
    from medseg.io.readers import read_scan

    segmenter = Segmenter(bundle, device="cpu", model_file=model_file, progress=False)
    scan = read_scan(image)
    from medseg.inference.segmenter import scan_tensor

    data: Any = {"image": scan_tensor(scan, segmenter.loader)}  # the segmenter's explicit read, then its chain
    for transform in segmenter.preprocessing.transforms:
        if not isinstance(transform, Padd):  # the window padding is pad_to_window's, undone on the output
            data = transform(data)
    volume = data["image"]
    roi = [int(n) for n in getattr(segmenter.inferer, "roi_size")]  # noqa: B009 (a Callable to mypy)
    padded, keep = pad_to_window(volume.as_tensor()[None].float(), roi)
    with torch.inference_mode():
        logits = segmenter.inferer(padded, segmenter.network)[0][(slice(None), *keep)]
    scores = torch.softmax(logits.float(), dim=0)
    grid_affine, grid_size = ras_affine(scan.image), scan.image.GetSize()
    model_affine = volume.affine
    start = start_measuring()
    if method == "resampled":
        labels = labels_on_grid_resampled(scores, model_affine, grid_affine, grid_size)
    elif method == "uniform_cells":
        labels = labels_on_grid(scores, model_affine, grid_affine, grid_size)
    elif method == "nearest":
        model_labels = scores.argmax(dim=0, keepdim=True).to(torch.float32)
        labels = labels_on_grid(model_labels, model_affine, grid_affine, grid_size, interpolation="nearest")
    else:
        raise ValueError(f"unknown inversion method {method!r}")
    seconds = time.perf_counter() - start
    np.save(labels_out, labels)
    return {
        "seconds": seconds,
        "model_shape": list(scores.shape[1:]),
        "scan_size": list(grid_size),
        "classes": int(scores.shape[0]),
    }


def run_inversion(image: str, model_file: str, bundle: str, work_dir: Path, repetitions: int) -> dict[str, Any]:
    """All methods interleaved on ``image``; medians, speedups over ``resampled`` and label agreement with it."""
    folder = work_dir / "inversion"
    folder.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
    for repetition in range(repetitions):
        for method in METHODS:
            kwargs = {
                "image": image,
                "model_file": model_file,
                "bundle": bundle,
                "method": method,
                "labels_out": str(folder / f"{method}.npy"),
            }
            result = run_fresh(inversion_task, kwargs)
            runs[method].append(result)
            log(f"inversion {method} #{repetition + 1}/{repetitions}: {outcome(result)}")
    current = median_of(runs["resampled"], "seconds")
    results: dict[str, Any] = {"input": image, "methods": {}}
    reference_path = folder / "resampled.npy"
    reference = np.load(reference_path) if reference_path.is_file() else None
    for method in METHODS:
        summary = summarize(runs[method], ("seconds", "peak_rss_mib"))
        seconds = median_of(runs[method], "seconds")
        summary["speedup_vs_resampled"] = None if not (seconds and current) else current / seconds
        path = folder / f"{method}.npy"
        if reference is not None and path.is_file():
            labels = np.load(path)
            classes = next((run["classes"] for run in runs[method] if run.get("ok")), 1)
            dice = dice_per_label(labels, reference, range(1, classes))
            scored = [value for value in dice.values() if value is not None]
            summary["identical_fraction"] = float(np.mean(labels == reference))
            summary["min_label_dice"] = min(scored) if scored else None
        first = next((run for run in runs[method] if run.get("ok")), None)
        if first:
            results["model_shape"], results["scan_size"] = first["model_shape"], first["scan_size"]
        results["methods"][method] = summary
    return results
