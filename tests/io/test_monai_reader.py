from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImage,
    LoadImaged,
    Orientationd,
    SaveImaged,
    Spacingd,
)

from medseg.errors import GeometryError, InputError
from medseg.io.monai_reader import (
    REPAIRED_KEY,
    SERIES_UID_KEY,
    WARNINGS_KEY,
    MedsegReader,
    unwrap_medseg_error,
)
from tests.io.dicom_factory import ramp_volume, rotation, write_series

# LoadImage builds MONAI's default readers too; the GPU DICOM one warns that it has no GPU decoder.
pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")


def load(path: Path | str | list[Path], reader: object) -> MetaTensor:
    return LoadImage(reader=reader, image_only=True)(path)  # type: ignore[no-any-return]


@pytest.mark.data
def test_nifti_array_and_affine_equal_monais_own_readers(data_root: Path) -> None:
    path = data_root / "ibsi_sts" / "nifti" / "STS_019" / "CT_image.nii.gz"
    ours = load(path, MedsegReader)
    theirs = load(path, "NibabelReader")
    assert ours.shape == theirs.shape == (136, 134, 47)
    assert torch.equal(ours, theirs)
    np.testing.assert_array_equal(ours.affine.numpy(), theirs.affine.numpy())
    assert ours.meta[SERIES_UID_KEY] == "" and ours.meta["space"] == "RAS"
    try:
        import itk  # noqa: F401  (ITKReader needs the itk package, which medseg does not depend on)
    except ImportError:
        return
    itk_read = load(path, "ITKReader")
    assert torch.equal(ours, itk_read)
    np.testing.assert_allclose(ours.affine.numpy(), itk_read.affine.numpy(), atol=1e-6)


@pytest.mark.data
def test_dicom_folder_matches_its_nifti_twin_and_monais_pydicom_reader(data_root: Path) -> None:
    patient = data_root / "ibsi_sts" / "dicom" / "STS_019"
    ours = load(patient, MedsegReader)
    twin = load(data_root / "ibsi_sts" / "nifti" / "STS_019" / "CT_image.nii.gz", "NibabelReader")
    assert torch.equal(ours, twin)
    np.testing.assert_allclose(ours.affine.numpy(), twin.affine.numpy(), rtol=0, atol=1e-4)
    pydicom_read = load(patient / "CT" / "image", "PydicomReader")
    assert torch.equal(ours, pydicom_read)
    np.testing.assert_allclose(ours.affine.numpy(), pydicom_read.affine.numpy(), rtol=0, atol=1e-6)
    assert ours.meta[SERIES_UID_KEY].startswith("1.3.6.1.4.1.14519")


def test_oblique_dicom_affine_is_the_ras_affine_of_its_geometry(tmp_path: Path) -> None:
    direction = rotation(z_degrees=20)
    write_series(tmp_path, ramp_volume((5, 6, 7)), direction=direction, step=2.0, pixel_spacing=(0.7, 0.8))
    image = load(tmp_path, MedsegReader)
    expected = np.eye(4)
    expected[:3, :3] = direction @ np.diag([0.8, 0.7, 2.0])
    expected[:3, 3] = (-10.0, -20.0, 30.0)
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ expected  # LPS to RAS
    np.testing.assert_allclose(image.affine.numpy(), expected, atol=1e-6)
    assert image.shape == (7, 6, 5)  # (x, y, z) = (columns, rows, slices)
    assert torch.equal(image, torch.as_tensor(ramp_volume((5, 6, 7)).T, dtype=torch.float32))


def test_orientation_spacing_invert_and_save_work_unchanged(tmp_path: Path) -> None:
    write_series(tmp_path / "dicom", ramp_volume((6, 8, 10)), direction=rotation(z_degrees=15), step=1.5)
    load_transforms = Compose(
        [
            LoadImaged(keys="image", reader=MedsegReader, image_only=False),
            EnsureChannelFirstd(keys="image"),
        ]
    )
    spatial = Compose(
        [
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=(2.0, 2.0, 2.0), mode="bilinear"),
        ]
    )
    loaded = load_transforms({"image": str(tmp_path / "dicom")})
    original_affine = loaded["image"].affine.clone()
    original_shape = loaded["image"].shape
    resampled = spatial(dict(loaded))
    assert resampled["image"].pixdim.tolist() == pytest.approx([2.0, 2.0, 2.0])
    inverted = Invertd(keys="image", transform=spatial, orig_keys="image", nearest_interp=False)(resampled)
    assert inverted["image"].shape == original_shape
    np.testing.assert_allclose(inverted["image"].affine.numpy(), original_affine.numpy(), atol=1e-5)
    SaveImaged(keys="image", output_dir=tmp_path / "out", output_postfix="back", separate_folder=False)(inverted)
    saved = nib.load(next((tmp_path / "out").glob("*.nii.gz")))
    assert saved.shape == original_shape[1:]
    np.testing.assert_allclose(saved.affine, original_affine.numpy(), atol=1e-4)


def test_input_errors_surface_as_medseg_errors_not_as_fallback_readers(tmp_path: Path) -> None:
    values = np.full((4, 5, 6), -100.0, np.float32)
    values[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / "nan.nii.gz")
    # MONAI's NibabelReader would read this file: the error must not be swallowed by a fallback to it.
    with pytest.raises(InputError, match="NaN"):
        LoadImaged(keys="image", reader=MedsegReader)({"image": str(tmp_path / "nan.nii.gz")})
    write_series(tmp_path / "gap", ramp_volume((4, 4, 4)), positions=[(0, 0, 0), (0, 0, 2), (0, 0, 4), (0, 0, 8)])
    with pytest.raises(GeometryError, match="missing slices"):
        load(tmp_path / "gap", MedsegReader())


def test_the_error_inside_composes_wrapper_is_found_again(tmp_path: Path) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b not a nifti")
    chain = Compose([LoadImaged(keys="image", reader=MedsegReader), EnsureChannelFirstd(keys="image")])
    with pytest.raises(RuntimeError, match="applying transform") as caught:
        chain({"image": str(broken)})
    unwrapped = unwrap_medseg_error(caught.value)
    assert isinstance(unwrapped, InputError) and "broken.nii.gz" in str(unwrapped)
    # a MedsegError is its own answer; an error without one in its chain comes back as it is
    assert unwrap_medseg_error(unwrapped) is unwrapped
    plain = RuntimeError("applying transform")
    plain.__cause__ = ValueError("not medseg")
    assert unwrap_medseg_error(plain) is plain
    looped = RuntimeError("a")  # chains with cycles end
    looped.__context__ = KeyError("b")
    looped.__context__.__context__ = looped
    assert unwrap_medseg_error(looped) is looped


def test_fix_geometry_passes_through_and_meta_collates(tmp_path: Path) -> None:
    write_series(tmp_path / "gap", ramp_volume((4, 4, 4)), positions=[(0, 0, 0), (0, 0, 2), (0, 0, 4), (0, 0, 8)])
    write_series(tmp_path / "clean", ramp_volume((5, 4, 4)))
    loader = LoadImaged(keys="image", reader=MedsegReader, fix_geometry=True)
    repaired = loader({"image": str(tmp_path / "gap")})
    clean = loader({"image": str(tmp_path / "clean")})
    assert repaired["image"].shape == (4, 4, 5) and repaired["image"].meta[REPAIRED_KEY] is True
    assert "missing slices" in repaired["image"].meta[WARNINGS_KEY]
    assert clean["image"].meta[WARNINGS_KEY] == "" and clean["image"].meta[REPAIRED_KEY] is False
    batch = list_data_collate([{"image": repaired["image"]}, {"image": clean["image"]}])
    assert batch["image"].shape == (2, 4, 4, 5)
    assert batch["image"].meta[REPAIRED_KEY].tolist() == [True, False]


def test_several_files_stack_as_channels(tmp_path: Path) -> None:
    write_series(tmp_path / "a", ramp_volume((3, 4, 5), seed=1))
    write_series(tmp_path / "b", ramp_volume((3, 4, 5), seed=2))
    both = load([tmp_path / "a", tmp_path / "b"], MedsegReader)
    assert both.shape == (2, 5, 4, 3)
    write_series(tmp_path / "c", ramp_volume((3, 4, 5)), step=3.0)
    with pytest.raises(GeometryError, match="grid differs"):
        load([tmp_path / "a", tmp_path / "c"], MedsegReader)


def test_verify_suffix(tmp_path: Path) -> None:
    reader = MedsegReader()
    paths = write_series(tmp_path / "s", ramp_volume((2, 4, 4)))
    (tmp_path / "notes.txt").write_text("x")
    assert reader.verify_suffix(tmp_path / "s") and reader.verify_suffix(paths[0])
    assert reader.verify_suffix("scan.nii.gz") and reader.verify_suffix(["a.nrrd", "b.mha"])
    assert not reader.verify_suffix(tmp_path / "notes.txt")


def test_a_transform_failure_names_the_file_the_transform_and_the_cause(tmp_path: Path) -> None:
    """Not "applying transform <...Spacingd object at 0x...>": the file, which transform, and why."""
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(ramp_volume((4, 5, 6)).astype(np.float32), np.eye(4)), path)

    class Exhausting(Spacingd):
        def __call__(self, data, lazy=None):  # type: ignore[no-untyped-def, override]
            raise MemoryError("Unable to allocate 30.0 GiB for an array with shape (2000, 2000, 2000)")

    chain = Compose([LoadImaged(keys="image", reader=MedsegReader), Exhausting(keys="image", pixdim=(1, 1, 1))])
    with pytest.raises(RuntimeError, match="applying transform") as caught:
        chain({"image": str(path)})
    error = unwrap_medseg_error(caught.value, path)
    assert isinstance(error, InputError)
    cause = "MemoryError: Unable to allocate 30.0 GiB for an array with shape (2000, 2000, 2000)"
    assert str(error) == f"{path}: Exhausting failed: {cause}"
    assert unwrap_medseg_error(caught.value) is caught.value  # without a path: as before
