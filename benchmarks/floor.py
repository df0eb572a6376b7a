"""The physical floor of a case: read the scan, write a uint8 mask of its grid, nothing else.

A module of its own, importing neither torch nor MONAI, so the process :func:`floor_task` runs in holds only what
reading and writing need (its peak memory is the floor's too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.harness import start_measuring


def floor_task(image: str, output_dir: str) -> dict[str, Any]:
    """Harness task: read the scan and write an all-background uint8 mask on its grid, timed after the imports."""
    import numpy as np
    import SimpleITK as sitk

    from medseg.io.readers import read_scan

    start = start_measuring()
    scan = read_scan(image)
    read_seconds = time.perf_counter() - start
    mask = sitk.GetImageFromArray(np.zeros(sitk.GetArrayViewFromImage(scan.image).shape, dtype=np.uint8))
    mask.CopyInformation(scan.image)
    target = Path(output_dir) / "floor_seg.nii.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(mask, str(target), useCompression=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "stages": {"read": read_seconds, "write": seconds - read_seconds}}
