"""The physical floor task: read the scan, write a uint8 mask on its grid."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from benchmarks.floor import floor_task
from benchmarks.workloads import synthetic_ct


def test_the_floor_reads_the_scan_and_writes_a_mask_on_its_grid(tmp_path: Path) -> None:
    image = synthetic_ct((32, 24, 8))
    result = floor_task(str(image), str(tmp_path / "out"))
    assert result["seconds"] > 0 and set(result["stages"]) == {"read", "write"}
    mask, scan = sitk.ReadImage(str(tmp_path / "out" / "floor_seg.nii.gz")), sitk.ReadImage(str(image))
    assert mask.GetPixelID() == sitk.sitkUInt8 and mask.GetSize() == scan.GetSize()
    assert mask.GetOrigin() == scan.GetOrigin() and mask.GetSpacing() == scan.GetSpacing()
