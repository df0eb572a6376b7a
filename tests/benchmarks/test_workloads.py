"""Benchmark inputs: the synthetic phantom and the 1 mm lung CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks.workloads import lung1_1mm, phantom, synthetic_ct


def test_phantom_is_ct_like() -> None:
    volume = phantom((40, 30, 8))
    assert volume.shape == (8, 30, 40) and volume.dtype == np.int16
    assert volume[0, 0, 0] == -1000  # air in the corner
    assert abs(int(volume[0, 15, 20]) - 40) <= 100  # soft tissue in the middle of an end slice
    assert (volume[4] == -800).any() and not (volume[0] == -800).any()  # lungs in the middle slices only
    assert (volume[0] == 300).sum() > 0  # the couch


def test_synthetic_ct_is_built_once() -> None:
    path = synthetic_ct((32, 24, 8))
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (32, 24, 8) and image.GetSpacing() == (1.0, 1.0, 1.0)
    assert image.GetPixelID() == sitk.sitkInt16
    stamp = path.stat().st_mtime_ns
    assert synthetic_ct((32, 24, 8)) == path and path.stat().st_mtime_ns == stamp


@pytest.mark.data
def test_lung1_resampled_to_1mm_keeps_the_geometry(data_root: Path) -> None:
    source = sitk.ReadImage(str(data_root / "pyradiomics" / "lung1_image.nrrd"))
    image = sitk.ReadImage(str(lung1_1mm()))
    assert image.GetSize() == (512, 512, 236)  # 47 source steps of 5 mm -> 235 mm -> 236 slices
    assert image.GetSpacing()[2] == pytest.approx(1.0)
    assert image.GetSpacing()[:2] == pytest.approx(source.GetSpacing()[:2], abs=1e-6)
    assert image.GetOrigin() == pytest.approx(source.GetOrigin(), abs=1e-3)
    assert image.GetDirection() == pytest.approx(source.GetDirection(), abs=1e-6)
    # Every fifth 1 mm slice lies on a source slice: same voxels there.
    assert np.array_equal(sitk.GetArrayViewFromImage(image)[5], sitk.GetArrayViewFromImage(source)[1])


def test_stacked_ct_repeats_the_slices_on_the_same_grid(tmp_path: Path) -> None:
    from benchmarks.workloads import stacked_ct

    source = synthetic_ct((32, 24, 8))
    path = stacked_ct(source, 20)
    image, original = sitk.ReadImage(str(path)), sitk.ReadImage(str(source))
    assert image.GetSize() == (32, 24, 20) and image.GetPixelID() == sitk.sitkInt16
    assert image.GetSpacing() == original.GetSpacing() and image.GetOrigin() == original.GetOrigin()
    voxels, first = sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(original)
    assert np.array_equal(voxels[:8], first) and np.array_equal(voxels[8:16], first[::-1])
    assert np.array_equal(voxels[16:], first[:4])
