"""``medseg.segment`` with the shipped model on a real OpenKBP scan: the label map lies exactly on the input's grid
and holds the voxels ``medseg segment`` writes for the same scan, whether the scan comes as a path, an in-memory
SimpleITK image or a nibabel image; the model is loaded once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import medseg
from medseg import api
from medseg.cli import main
from medseg.config import REPO_ROOT
from medseg.errors import InputError
from medseg.io.readers import read_scan

GEOMETRY = ("GetSize", "GetSpacing", "GetOrigin", "GetDirection")


def _assert_same_grid(labels: sitk.Image, image: sitk.Image) -> None:
    for getter in GEOMETRY:
        assert getattr(labels, getter)() == getattr(image, getter)(), getter  # exact, not approximately


def _voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def openkbp_scan(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medseg.datasets import prepare_dataset

    folder = Path(prepare_dataset("openkbp", tmp_path_factory.mktemp("openkbp"), max_cases=1))
    return sorted((folder / "imagesTr").glob("*.nii.gz"))[0]


@pytest.fixture(scope="module")
def from_path(openkbp_scan: Path) -> api.SegmentationResult:
    return medseg.segment(openkbp_scan, device="cpu")


def test_package_exports_segment_without_importing_torch() -> None:
    code = "import sys, medseg; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
    assert medseg.segment is api.segment
    assert medseg.SegmentationResult is api.SegmentationResult


@pytest.mark.data
def test_path_gives_the_cli_voxels_on_the_exact_grid(
    openkbp_scan: Path, from_path: api.SegmentationResult, tmp_path: Path
) -> None:
    _assert_same_grid(from_path.labels, read_scan(openkbp_scan).image)
    assert from_path.labels.GetPixelID() == sitk.sitkUInt8
    assert from_path.image.GetSize() == from_path.labels.GetSize()

    code = main(["segment", str(openkbp_scan), str(tmp_path), "--device", "cpu", "--formats", "nifti", "--no-progress"])
    assert code == 0
    case_id = openkbp_scan.name.removesuffix(".nii.gz")
    written = sitk.ReadImage(str(tmp_path / case_id / f"{case_id}_seg.nii.gz"))
    np.testing.assert_array_equal(_voxels(from_path.labels), _voxels(written))

    # The volumes are the summary's (which rounds to 3 decimals), every organ of the model present.
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))["cases"][0]
    assert list(from_path.volumes_ml) == list(from_path.label_names.values()) == list(summary["volumes_ml"])
    for organ, volume in from_path.volumes_ml.items():
        assert volume == pytest.approx(summary["volumes_ml"][organ], abs=1e-3)
        assert volume > 0, organ
    voxel_ml = math.prod(from_path.labels.GetSpacing()) / 1000.0
    assert from_path.volumes_ml["Brainstem"] == pytest.approx(
        np.count_nonzero(_voxels(from_path.labels) == 1) * voxel_ml
    )


@pytest.mark.data
def test_in_memory_simpleitk_image(openkbp_scan: Path, from_path: api.SegmentationResult) -> None:
    image = sitk.ReadImage(str(openkbp_scan))
    result = medseg.segment(image, device="cpu")
    _assert_same_grid(result.labels, image)
    np.testing.assert_array_equal(_voxels(result.labels), _voxels(from_path.labels))
    assert result.volumes_ml == from_path.volumes_ml

    # An oblique grid with digits no float32 header keeps: the label map still has the image's geometry to the bit
    # (a 64^3 crop: one sliding window).
    oblique = image[32:96, 32:96, 32:96]
    angle = 0.3
    oblique.SetDirection((math.cos(angle), -math.sin(angle), 0.0, math.sin(angle), math.cos(angle), 0.0, 0.0, 0.0, 1.0))
    oblique.SetOrigin((-123.456789012345678, 98.7654321098765, -1e-7))
    oblique.SetSpacing((5.421999931335449 + 1e-12, 5.421999931335449, 3.0000000001))
    _assert_same_grid(medseg.segment(oblique, device="cpu").labels, oblique)


@pytest.mark.data
def test_in_memory_nibabel_image(openkbp_scan: Path, from_path: api.SegmentationResult) -> None:
    nifti = nib.load(openkbp_scan)
    result = medseg.segment(nifti, device="cpu")
    np.testing.assert_array_equal(_voxels(result.labels), _voxels(from_path.labels))
    _assert_same_grid(result.labels, from_path.labels)
    back = result.to_nifti()
    assert back.shape == nifti.shape
    np.testing.assert_array_equal(back.affine, nifti.affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj), _voxels(from_path.labels).T)


@pytest.mark.data
def test_dicom_study_folder(data_root: Path) -> None:
    study = data_root / "ibsi_sts" / "dicom" / "STS_019"  # CT series + RTSTRUCT: the CT series is chosen
    result = medseg.segment(study, device="cpu")
    _assert_same_grid(result.labels, read_scan(study).image)
    assert result.image.GetSize() == (136, 134, 47)
    assert set(result.volumes_ml) == set(result.label_names.values())


@pytest.mark.data
def test_readme_example_runs(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### From Python") :]
    example = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(example.replace("../shared/data", str(data_root)), "README.md", "exec"), namespace)
    _assert_same_grid(namespace["labels"], read_scan(data_root / "ibsi_sts" / "dicom" / "STS_019").image)  # type: ignore[arg-type]
    assert sitk.ReadImage(str(tmp_path / "STS_019_seg.nii.gz")).GetSize() == (136, 134, 47)
    _assert_same_grid(namespace["result"].labels, namespace["image"])  # type: ignore[attr-defined]


@pytest.mark.data
def test_model_is_loaded_once(from_path: api.SegmentationResult) -> None:
    before = api._loaded.cache_info()
    assert api.get_segmenter(device="cpu") is api.get_segmenter(bundle="bundles/ct_unet", device="cpu")
    after = api._loaded.cache_info()
    assert after.misses == before.misses and after.hits == before.hits + 2


@pytest.mark.data
def test_bad_inputs_name_what_is_wrong(from_path: api.SegmentationResult, tmp_path: Path) -> None:
    flat = sitk.Image(32, 32, sitk.sitkInt16)
    with pytest.raises(InputError, match=r"^<in-memory SimpleITK image>: is a 2D image"):
        medseg.segment(flat, device="cpu")
    with pytest.raises(TypeError, match="a bare array has no geometry"):
        medseg.segment(np.zeros((8, 8, 8)), device="cpu")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="does not exist"):
        medseg.segment(tmp_path / "nothing.nii.gz", device="cpu")
