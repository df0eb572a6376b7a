"""Ingestion: reading a DICOM series through medseg (:func:`medseg.io.readers.read_scan`: series discovery, slice
ordering, geometry guard, HU) against SimpleITK's ``ImageSeriesReader`` alone (``GetGDCMSeriesFileNames`` +
``Execute``), on the same folder.

Each side runs in a fresh process per repetition: the first read (cold imports, GDCM and decoder set-up) is reported
apart, then ``reads`` more reads are timed and their median is the repetition's ``seconds``. Both sides also report
a digest of the voxels and the geometry, so the comparison shows they read the same volume.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness import interleaved, log, median_of, ratio, start_measuring, summarize

TARGET_RATIO = 1.2


def _read_sitk(folder: str) -> Any:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    return reader.Execute()


def _read_medseg(folder: str) -> Any:
    from medseg.io.readers import read_scan

    return read_scan(folder).image


def read_task(side: str, folder: str, reads: int) -> dict[str, Any]:
    """Harness task: read ``folder`` ``1 + reads`` times with ``side`` (``"medseg"`` or ``"simpleitk"``)."""
    import SimpleITK as sitk

    read = _read_medseg if side == "medseg" else _read_sitk
    start = start_measuring()
    image = read(folder)
    first_seconds = time.perf_counter() - start
    times = []
    for _ in range(reads):
        tick = time.perf_counter()
        image = read(folder)
        times.append(time.perf_counter() - tick)
    array = sitk.GetArrayViewFromImage(image)
    return {
        "seconds": statistics.median(times) if times else first_seconds,
        "first_seconds": first_seconds,
        "read_seconds": times,
        "voxels_sha256": hashlib.sha256(array.tobytes()).hexdigest()[:16],
        "pixel_type": image.GetPixelIDTypeAsString(),
        "size": list(image.GetSize()),
        "spacing": [round(s, 6) for s in image.GetSpacing()],
        "origin": [round(o, 4) for o in image.GetOrigin()],
        "direction": [round(d, 6) for d in image.GetDirection()],
    }


def run_ingestion(series: Mapping[str, Path], repetitions: int, reads: int) -> dict[str, Any]:
    """Both readers on every series, interleaved; ``{series: comparison}``."""
    results: dict[str, Any] = {}
    for name, folder in series.items():
        sides = {
            side: (read_task, {"side": side, "folder": str(folder), "reads": reads}) for side in ("medseg", "simpleitk")
        }
        runs = interleaved(sides, repetitions, label=f"ingestion {name}")
        medseg_s, sitk_s = median_of(runs["medseg"], "seconds"), median_of(runs["simpleitk"], "seconds")
        first_ok = {side: next((run for run in runs[side] if run.get("ok")), None) for side in sides}
        same = None
        if first_ok["medseg"] and first_ok["simpleitk"]:
            keys = ("voxels_sha256", "size", "spacing", "origin", "direction")
            same = {key: first_ok["medseg"][key] == first_ok["simpleitk"][key] for key in keys}
            same["pixel_types"] = [first_ok["medseg"]["pixel_type"], first_ok["simpleitk"]["pixel_type"]]
        time_ratio = ratio(medseg_s, sitk_s)
        results[name] = {
            "folder": str(folder),
            "medseg": summarize(runs["medseg"], ("seconds", "first_seconds", "peak_rss_mib")),
            "simpleitk": summarize(runs["simpleitk"], ("seconds", "first_seconds", "peak_rss_mib")),
            "time_ratio": time_ratio,
            "first_read_ratio": ratio(
                median_of(runs["medseg"], "first_seconds"), median_of(runs["simpleitk"], "first_seconds")
            ),
            "same_volume": same,
            "targets_met": {f"time <= {TARGET_RATIO:g}x": None if time_ratio is None else time_ratio <= TARGET_RATIO},
        }
        log(f"ingestion {name}: medseg / SimpleITK = {time_ratio}")
    return results
