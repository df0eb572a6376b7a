"""The streamed load-and-resample gives the bundle chain's model-grid image (MONAI's LoadImaged, EnsureChannelFirstd,
Orientationd, Spacingd) to float32 rounding, on the same grid, for axis-aligned, permuted and oblique scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from medseg.errors import MedsegError
from medseg.inference.model_grid import resample_stored, streamed_preprocessing, streamed_scan_chain
from medseg.io.monai_reader import MedsegReader
from medseg.transforms import BodyMask
from tests.inference.helpers import body_phantom

DIRECTIONS = {
    "axial": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "lps_flipped": (-1, 0, 0, 0, -1, 0, 0, 0, -1),
    "sagittal": (0, 0, -1, 1, 0, 0, 0, -1, 0),
    "oblique": tuple(sitk.VersorTransform((0.2, -0.4, 0.9), 0.3).GetMatrix()),
}


def _chain(pixdim: tuple[float, ...] = (2.3, 1.7, 3.1)) -> Compose:
    return Compose(
        [
            LoadImaged(("image", "label"), reader=MedsegReader(), image_only=True, allow_missing_keys=True),
            EnsureChannelFirstd(("image", "label"), allow_missing_keys=True),
            Orientationd(("image", "label"), axcodes="RAS", allow_missing_keys=True),
            Spacingd(("image", "label"), pixdim=pixdim, mode=("bilinear", "nearest"), allow_missing_keys=True),
            CropForegroundd("image", source_key="image", select_fn=BodyMask(), margin=2, allow_smaller=True),
        ]
    )


def _noisy_phantom(direction: tuple[float, ...]) -> sitk.Image:
    """The body phantom with int16 noise that varies along every axis, so every interpolation axis matters."""
    image = body_phantom(size_xyz=(45, 38, 21), spacing=(0.9, 0.8, 2.5), direction=direction)
    voxels = sitk.GetArrayFromImage(image)
    voxels += np.random.default_rng(5).integers(-200, 200, size=voxels.shape).astype(np.int16)
    noisy = sitk.GetImageFromArray(voxels)
    noisy.CopyInformation(image)
    return noisy


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_same_image_and_grid_as_the_bundle_chain(tmp_path: Path, direction: str) -> None:
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(_noisy_phantom(DIRECTIONS[direction]), str(path))
    chain = _chain()
    streamed = streamed_preprocessing(chain)
    assert type(streamed.transforms[0]).__name__ == "_StreamedLoadResampled"
    assert streamed.transforms[1:] == chain.transforms[4:]  # the rest: the same objects
    expected = chain({"image": str(path)})["image"]
    result = streamed({"image": str(path)})["image"]
    assert result.shape == expected.shape and result.dtype == torch.float32
    np.testing.assert_allclose(result.affine.numpy(), expected.affine.numpy(), atol=1e-9)
    # float32 samples against MONAI's float64 resampling: HU to well under a thousandth.
    assert float((result.as_tensor() - expected.as_tensor()).abs().max()) < 1e-3


def test_labels_and_disabled_chains_take_the_stock_path(tmp_path: Path) -> None:
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(_noisy_phantom(DIRECTIONS["axial"]), str(path))
    chain = _chain()
    assert streamed_preprocessing(chain, enabled=False) is chain
    nearest = Compose([*chain.transforms[:3], Spacingd("image", pixdim=(2.0, 2.0, 2.0), mode="nearest")])
    assert streamed_preprocessing(nearest) is nearest  # not what this module reproduces
    with_label = streamed_preprocessing(chain)({"image": str(path), "label": str(path)})
    expected = chain({"image": str(path), "label": str(path)})
    for key in ("image", "label"):
        assert torch.equal(with_label[key].as_tensor(), expected[key].as_tensor())


def test_a_bad_file_raises_the_readers_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(Exception) as raised:
        streamed_preprocessing(_chain())({"image": str(bad)})
    chain_of_errors = [raised.value, raised.value.__cause__]
    assert any(isinstance(err, MedsegError) and "broken.nii.gz" in str(err) for err in chain_of_errors)


def test_resample_stored_reaches_no_further_than_it_reads() -> None:
    """A target grid overhanging the stored one: border padding (the edge voxel's value), as Spacingd pads."""
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(6, 5, 4))
    target = np.diag([0.5, 0.5, 0.5, 1.0])
    target[:3, 3] = [-1.0, -1.0, -1.0]
    values = resample_stored(image, np.eye(4), target, (12, 14, 16), block_budget_bytes=64)
    stored = sitk.GetArrayViewFromImage(image)
    assert values[0, 0, 0] == stored[0, 0, 0] and values[-1, -1, -1] == stored[-1, -1, -1]
    assert values[4, 4, 4] == stored[1, 1, 1]  # index 4 * 0.5 - 1 = 1: a stored voxel centre
    # x index 3 -> 0.5: half-way between stored x 0 and 1 (y, z index 2 -> 0).
    assert abs(float(values[3, 2, 2]) - (float(stored[0, 0, 0]) + float(stored[0, 0, 1])) / 2) < 1e-4


@pytest.mark.data
@pytest.mark.parametrize("relative", ["pyradiomics/lung1_image.nrrd", "ibsi_sts/dicom/STS_019"])
def test_real_scans_match_the_bundle_chain(data_root: Path, relative: str) -> None:
    """A 512 x 512 chest CT (NRRD) and a DICOM series, with the shipped model's spacing."""
    import json

    from medseg.config import REPO_ROOT

    spacing = json.loads((REPO_ROOT / "bundles/ct_unet/models/model_config.json").read_text())["spacing"]
    chain = _chain(tuple(spacing))
    path = str(data_root / relative)
    expected = chain({"image": path})["image"]
    result = streamed_preprocessing(chain)({"image": path})["image"]
    assert result.shape == expected.shape
    np.testing.assert_allclose(result.affine.numpy(), expected.affine.numpy(), atol=1e-9)
    assert float((result.as_tensor() - expected.as_tensor()).abs().max()) < 1e-2  # HU


def _scan_chain(pixdim: tuple[float, ...] = (2.3, 1.7, 3.1)) -> Compose:
    """The bundle chain's shape without its LoadImaged: what the segmenter runs on a scan it read itself."""
    return Compose(list(_chain(pixdim).transforms[1:]))


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_a_scan_in_memory_streams_to_the_chains_result(tmp_path: Path, direction: str) -> None:
    """streamed_scan_chain(chain)(scan) against the chain on the scan's float32 voxels (the segmenter's two ways)."""
    from medseg.inference.segmenter import scan_tensor
    from medseg.io.readers import read_scan

    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(_noisy_phantom(DIRECTIONS[direction]), str(path))
    scan = read_scan(path)
    chain = _scan_chain()
    streamed = streamed_scan_chain(chain)
    assert streamed is not None and streamed.rest.transforms == chain.transforms[3:]
    expected = chain({"image": scan_tensor(scan)})["image"]
    result = streamed(scan, "image")["image"]
    assert result.shape == expected.shape and result.dtype == torch.float32
    np.testing.assert_allclose(result.affine.numpy(), expected.affine.numpy(), atol=1e-9)
    assert float((result.as_tensor() - expected.as_tensor()).abs().max()) < 1e-3
    # The crop after the resampling records its trace as in the chain; the resampling records none.
    assert [op["class"] for op in result.applied_operations] == ["CropForeground"]


def test_chains_the_stream_does_not_reproduce_are_left_alone() -> None:
    assert streamed_scan_chain(_scan_chain(), dtype=np.float64) is None  # a loader giving float64
    chain = _scan_chain()
    nearest = Compose([*chain.transforms[:2], Spacingd("image", pixdim=(2.0, 2.0, 2.0), mode="nearest")])
    assert streamed_scan_chain(nearest) is None
    no_channel = Compose(list(chain.transforms[1:]))
    assert streamed_scan_chain(no_channel) is None
