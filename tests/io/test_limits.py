"""Header-declared sizes and resampled grids refused before allocation; special files refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medseg.errors import InputError
from medseg.io.limits import (
    Limits,
    check_declared_data,
    check_regular_file,
    check_resampled_grid,
    check_spacing,
    check_voxels,
    data_file_inside,
    resampled_shape,
)


def test_limits_from_env_overrides_and_validates() -> None:
    limits = Limits.from_env({"MEDSEG_MAX_VOXELS": "1e6", "MEDSEG_MAX_SPACING_MM": "20"})
    assert limits.max_voxels == 1_000_000 and isinstance(limits.max_voxels, int)
    assert limits.max_spacing_mm == 20.0
    with pytest.raises(InputError, match="MEDSEG_MAX_VOXELS"):
        Limits.from_env({"MEDSEG_MAX_VOXELS": "lots"})
    with pytest.raises(InputError, match="positive"):
        Limits.from_env({"MEDSEG_MIN_SPACING_MM": "-1"})


def test_resampled_grid_names_file_size_and_limit() -> None:
    assert check_resampled_grid("ok.nii", (128, 128, 100), (1.0, 1.0, 2.5), (4.688, 4.688, 2.5)) == (28, 28, 100)
    with pytest.raises(InputError) as caught:
        check_resampled_grid("big.nii", (64, 64, 64), (40.0, 40.0, 40.0), (1.5, 1.5, 1.5))
    message = str(caught.value)
    assert message.startswith("big.nii: resampling 64x64x64") and "MEDSEG_MAX_RESAMPLED_VOXELS" in message
    assert "\n" not in message


def test_resampled_shape_keeps_axes_without_target() -> None:
    assert resampled_shape((10, 10, 10), (1, 1, 1), (0.5, None, 0)) == (20, 10, 10)


@pytest.mark.parametrize(
    "spacing", [(-1.0, 1.0, 1.0), (0.0, 1.0, 1.0), (float("nan"), 1, 1), (1, 1, 500.0), (1e-5, 1, 1)]
)
def test_bad_spacing_refused(spacing: tuple[float, float, float]) -> None:
    with pytest.raises(InputError, match="voxel spacing"):
        check_spacing("x.nrrd", spacing)


def test_voxel_limit_and_declared_data() -> None:
    check_voxels("x", (512, 512, 2000))
    with pytest.raises(InputError, match="2048x1024x1024 = 2,147,483,648 voxels"):
        check_voxels("x", (2048, 1024, 1024))
    with pytest.raises(InputError, match="cannot hold"):
        check_declared_data("x.nii.gz", 2**32, 93, compressed=True)
    with pytest.raises(InputError, match="truncated"):
        check_declared_data("x.nii", 1000, 999, compressed=False)
    check_declared_data("x.nii.gz", 1000 * 93, 93, compressed=True)


def test_special_files_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="FIFO"):
        check_regular_file(fifo)
    with pytest.raises(InputError, match="character device"):
        check_regular_file("/dev/zero")
    regular = tmp_path / "file"
    regular.write_bytes(b"x")
    check_regular_file(regular)


def test_detached_data_must_stay_in_the_scan_folder(tmp_path: Path) -> None:
    header = tmp_path / "scan.nhdr"
    data_file_inside(header, Path("scan.raw"))
    with pytest.raises(InputError, match="outside the scan's own folder"):
        data_file_inside(header, Path("/dev/zero"))
    with pytest.raises(InputError, match="outside"):
        data_file_inside(header, Path("../other/scan.raw"))
