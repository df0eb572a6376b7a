"""The streamed load-and-resample gives the bundle chain's model-grid image (MONAI's LoadImaged, EnsureChannelFirstd,
Orientationd, Spacingd) to float32 rounding, on the same grid, for axis-aligned, permuted and oblique scans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import (
    AsDiscreted,
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from medseg.errors import MedsegError
from medseg.inference.model_grid import (
    MIXED,
    class_argmax,
    covered_box,
    labels_on_grid,
    labels_on_grid_resampled,
    resample_stored,
    streamed_preprocessing,
    streamed_scan_chain,
    uniform_cells,
)
from medseg.inference.segmenter import Segmenter
from medseg.io.geometry import ras_affine
from medseg.io.monai_reader import MedsegReader
from medseg.io.readers import read_scan
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


def _oblique_direction() -> tuple[float, ...]:
    return tuple(sitk.VersorTransform((0.2, -0.4, 0.9), 0.3).GetMatrix())


INVERSION_DIRECTIONS = {
    "axial_flipped": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
    "sagittal": (0, 0, -1, 1, 0, 0, 0, -1, 0),  # scan axes permuted against RAS
}


@pytest.fixture(scope="module", params=["axial_flipped", "sagittal", "oblique"])
def preprocessed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(chain, data after the chain, smooth class probabilities on the model grid, scan image)."""
    direction = INVERSION_DIRECTIONS.get(request.param) or _oblique_direction()
    scan = body_phantom(size_xyz=(50, 42, 22), spacing=(0.9, 0.8, 2.5), direction=direction)
    path = tmp_path_factory.mktemp("inversion") / "scan.nii.gz"
    sitk.WriteImage(scan, str(path))
    chain = Compose(
        [
            LoadImaged("image", reader=MedsegReader(), image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS"),
            Spacingd("image", pixdim=(2.0, 2.2, 3.0), mode="bilinear"),
            CropForegroundd("image", source_key="image", select_fn=BodyMask(), margin=2, allow_smaller=True),
        ]
    )
    data = chain({"image": str(path)})
    shape = data["image"].shape[1:]
    generator = torch.Generator().manual_seed(3)
    coarse = torch.randn(1, 4, *(max(2, n // 3) for n in shape), generator=generator)
    logits = torch.nn.functional.interpolate(coarse, size=tuple(shape), mode="trilinear")[0] * 4
    return chain, data, torch.softmax(logits, dim=0), sitk.ReadImage(str(path))


def _invertd(chain: Compose, data: dict, scores: torch.Tensor, nearest: bool) -> np.ndarray:
    prediction = MetaTensor(scores, meta=dict(data["image"].meta))
    prediction.applied_operations = list(data["image"].applied_operations)
    out = dict(data, pred=prediction)
    if nearest:
        out = AsDiscreted("pred", argmax=True)(out)
    inverted = Invertd("pred", transform=chain, orig_keys="image", nearest_interp=nearest)(out)["pred"]
    labels = inverted[0] if nearest else inverted.argmax(dim=0)
    return np.asarray(labels).astype(np.uint8).transpose(2, 1, 0)


def test_slabs_equal_invertd_of_probabilities(preprocessed: tuple) -> None:
    chain, data, scores, scan = preprocessed
    expected = _invertd(chain, data, scores, nearest=False)
    assert expected.shape == scan.GetSize()[::-1]
    assert len(np.unique(expected)) == 4  # all classes present: the comparison means something
    for slab in (1, 5, None):
        labels = labels_on_grid(scores, data["image"].affine, ras_affine(scan), scan.GetSize(), slab=slab)
        assert labels.dtype == np.uint8 and labels.shape == expected.shape
        # Identical up to float ties at class boundaries.
        assert np.mean(labels == expected) > 0.999


def test_nearest_equals_invertd_of_labels(preprocessed: tuple) -> None:
    chain, data, scores, scan = preprocessed
    expected = _invertd(chain, data, scores, nearest=True)
    model_labels = scores.argmax(dim=0, keepdim=True).float()
    model_affine = data["image"].affine.numpy()
    labels = labels_on_grid(
        model_labels, model_affine, ras_affine(scan), scan.GetSize(), interpolation="nearest", slab=4
    )
    assert np.mean(labels == expected) > 0.9
    # Where they differ, the scan voxel's centre lies half-way between two model voxels: a tie that float
    # rounding settles either way (this phantom's 2.5 mm slices fall on the 3 mm grid's half-steps).
    differing = np.argwhere(labels != expected)[:, ::-1]  # (x, y, z)
    model_index = np.c_[differing, np.ones(len(differing))] @ np.linalg.solve(model_affine, ras_affine(scan)).T
    fraction = np.abs(model_index[:, :3] - np.floor(model_index[:, :3]) - 0.5)
    assert np.all(fraction.min(axis=1) < 1e-4)


def test_outside_the_model_grid_is_background() -> None:
    # A 4-voxel model grid in the middle of a 20-voxel scan grid, same spacing: only those voxels get labels.
    scores = torch.zeros(2, 4, 4, 4)
    scores[1] = 1.0
    grid = np.eye(4)
    model = np.eye(4)
    model[:3, 3] = [8, 8, 8]
    labels = labels_on_grid(scores, model, grid, (20, 20, 20), slab=3)
    assert labels.sum() == 64
    assert labels[8:12, 8:12, 8:12].all()
    assert covered_box(model, (4, 4, 4), grid, (20, 20, 20)) == ((6, 14), (6, 14), (6, 14))


def test_disjoint_grids_give_an_empty_map() -> None:
    model = np.eye(4)
    model[:3, 3] = [500, 0, 0]
    labels = labels_on_grid(torch.ones(3, 4, 4, 4), model, np.eye(4), (10, 10, 10))
    assert labels.shape == (10, 10, 10) and not labels.any()


def test_matches_an_independent_trilinear_resampling_with_sparse_foreground() -> None:
    """scipy's map_coordinates (linear, zero outside, voxel centres at integer indices) on every scan voxel, then the
    argmax: the same labels, although labels_on_grid only resamples around the foreground."""
    from scipy.ndimage import map_coordinates

    generator = torch.Generator().manual_seed(7)
    scores = torch.rand(3, 12, 10, 8, generator=generator) * 0.2
    scores[0] += 0.5  # background wins everywhere...
    scores[1, 2:4, 3:6, 1:3] += 0.6  # ...but in two small blocks
    scores[2, 8:11, 6:9, 5:7] += 0.6
    model = np.diag([3.0, 3.5, 4.0, 1.0])
    model[:3, 3] = [10.0, -20.0, 5.0]
    grid = np.diag([-1.1, 0.9, 1.7, 1.0])  # flipped x, finer, shifted
    grid[:3, 3] = [50.0, -25.0, 2.0]
    size = (40, 48, 24)
    labels = labels_on_grid(scores, model, grid, size, slab=5)
    x, y, z = np.meshgrid(*(np.arange(n) for n in size), indexing="ij")
    voxels = np.stack([x.ravel(), y.ravel(), z.ravel(), np.ones(x.size)])
    coordinates = (np.linalg.solve(model, grid) @ voxels)[:3]
    sampled = np.stack(
        [map_coordinates(channel.numpy(), coordinates, order=1, mode="grid-constant", cval=0.0) for channel in scores]
    )
    expected = sampled.argmax(axis=0).reshape(size).transpose(2, 1, 0)
    assert np.count_nonzero(expected == 1) > 0 and np.count_nonzero(expected == 2) > 0
    np.testing.assert_array_equal(labels, expected)


def _dice_per_label(labels: np.ndarray, reference: np.ndarray, classes: int) -> list[float]:
    scores = []
    for label in range(1, classes):
        a, b = labels == label, reference == label
        total = int(a.sum() + b.sum())
        if total:
            scores.append(2.0 * float(np.logical_and(a, b).sum()) / total)
    return scores


def test_uniform_cells_equal_resampling_every_class(preprocessed: tuple) -> None:
    _, data, scores, scan = preprocessed
    reference = labels_on_grid_resampled(scores, data["image"].affine, ras_affine(scan), scan.GetSize())
    for slab in (1, 3, None):
        labels = labels_on_grid(scores, data["image"].affine, ras_affine(scan), scan.GetSize(), slab=slab)
        assert labels.dtype == np.uint8 and labels.shape == reference.shape
        assert np.count_nonzero(labels != reference) <= 2  # float32 ties at most
        assert min(_dice_per_label(labels, reference, 4)) >= 0.999


def test_uniform_cells_mark_only_cells_whose_corners_agree() -> None:
    model_labels = np.zeros((4, 3, 3), dtype=np.uint8)
    model_labels[2:, :, :] = 1
    cells = uniform_cells(model_labels)
    assert cells.shape == (5, 4, 4)
    # The frame (cells reaching outside the grid) is mixed; inside, x-cells 0 (all 0), 1 (0|1: mixed), 2 (all 1).
    assert (cells[0] == MIXED).all() and (cells[:, 0] == MIXED).all() and (cells[..., -1] == MIXED).all()
    assert (cells[1, 1:-1, 1:-1] == 0).all()
    assert (cells[2, 1:-1, 1:-1] == MIXED).all()
    assert (cells[3, 1:-1, 1:-1] == 1).all()


def test_many_classes_do_not_change_the_result() -> None:
    """40 classes, permuted and flipped axes, a model grid that the scan grid overhangs: still the reference."""
    generator = torch.Generator().manual_seed(11)
    coarse = torch.randn(1, 40, 5, 6, 4, generator=generator)
    scores = torch.softmax(torch.nn.functional.interpolate(coarse, size=(15, 18, 12), mode="trilinear")[0] * 6, 0)
    model = np.array([[0.0, 0.0, 2.5, -10.0], [-1.5, 0.0, 0.0, 30.0], [0.0, 2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
    grid = np.diag([0.7, 0.8, 1.1, 1.0])
    grid[:3, 3] = [-15.1, -5.0, -2.05]  # no scan voxel exactly on a zero-weight edge (a float tie there)
    size = (60, 50, 40)
    labels = labels_on_grid(scores, model, grid, size, slab=7)
    reference = labels_on_grid_resampled(scores, model, grid, size)
    assert len(np.unique(reference)) > 10
    assert np.count_nonzero(labels != reference) <= 2


@pytest.mark.parametrize("angle", [0.0, 17.0])
def test_rotated_and_overhanging_scan_grids(angle: float) -> None:
    """A scan grid rotated against the model grid (per-voxel path) or not (one gather), reaching beyond it on every
    side: the reference's labels, and most voxels never interpolated."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    logits = np.stack([ndimage.gaussian_filter(rng.normal(size=(20, 18, 16)), 2.0) * 40 for _ in range(5)])
    scores = torch.softmax(torch.from_numpy(logits).float(), dim=0)
    model = np.diag([4.7, 4.7, 2.5, 1.0])
    model[:3, 3] = [-40.0, -30.0, 5.0]
    cos, sin = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    grid = np.eye(4)
    grid[:3, :3] = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1.0]]) @ np.diag([-1.3, -1.1, 0.9])
    grid[:3, 3] = [40.0, 45.0, -2.0]
    size = (70, 80, 50)
    reference = labels_on_grid_resampled(scores, model, grid, size)
    labels = labels_on_grid(scores, model, grid, size, slab=9)
    assert len(np.unique(reference)) == 5
    assert np.count_nonzero(labels != reference) <= 2


@pytest.fixture(scope="module")
def shipped_segmenter() -> Segmenter:
    from medseg.config import REPO_ROOT

    return Segmenter(REPO_ROOT / "bundles" / "ct_unet", device="cpu")


@pytest.mark.data
@pytest.mark.parametrize("relative", ["openkbp", "pyradiomics/lung1_image.nrrd"])
def test_real_scans_with_the_shipped_model(
    shipped_segmenter: Segmenter, data_root: Path, openkbp_images: list[Path], relative: str
) -> None:
    """The shipped network's probabilities on a head-and-neck NIfTI (128^3) and a 512 x 512 chest CT (NRRD): the
    default inversion gives the reference's labels voxel for voxel."""
    path = openkbp_images[0] if relative == "openkbp" else data_root / relative
    scan = read_scan(path)
    data = shipped_segmenter._preprocess(scan)
    scores, model_affine = shipped_segmenter._unpadded(shipped_segmenter._scores(data["image"]), data["image"])
    args = (scores, model_affine, ras_affine(scan.image), scan.image.GetSize())
    reference = labels_on_grid_resampled(*args)
    labels = labels_on_grid(*args)
    assert len(np.unique(reference)) >= 4
    assert np.count_nonzero(labels != reference) <= 2
    assert min(_dice_per_label(labels, reference, scores.shape[0])) >= 0.999


def test_class_argmax_is_torch_argmax_with_ties_to_the_lower_class() -> None:
    generator = torch.Generator().manual_seed(3)
    values = torch.rand((8, 17, 9, 11), generator=generator)
    values[5, :4] = values[2, :4]  # exact ties: the lower class wins, as with torch.argmax
    values[:, 0, 0, 0] = 0.5  # every class tied: class 0
    chosen = class_argmax(values)
    assert chosen.dtype == torch.uint8
    assert torch.equal(chosen, values.argmax(dim=0).to(torch.uint8))
    assert int(chosen[0, 0, 0]) == 0
    assert bool((chosen[:4] != 5).all())
    with pytest.raises(ValueError, match="256 classes"):
        class_argmax(torch.zeros((257, 2)))
