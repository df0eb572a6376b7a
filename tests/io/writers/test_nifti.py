from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medseg.io.writers.nifti import write_label_nifti
from tests.io.writers.conftest import Case, oblique_direction, synthetic_labels

# 3D Slicer loads a volume as a label map when its file name matches this (qSlicerVolumesIOOptionsWidget).
SLICER_LABELMAP_NAME = re.compile(r"(\b|_)(label(s)?|seg)(\b|_)", re.IGNORECASE)


def _assert_same_image(written: sitk.Image, original: sitk.Image) -> None:
    assert written.GetPixelID() == sitk.sitkUInt8
    assert written.GetSize() == original.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(original))
    # NIfTI keeps geometry as float32.
    np.testing.assert_allclose(written.GetSpacing(), original.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), original.GetOrigin(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), original.GetDirection(), atol=1e-6)


def test_oblique_label_map_round_trips(tmp_path: Path) -> None:
    labels = synthetic_labels(oblique_direction())
    path = write_label_nifti(labels, tmp_path / "case 1_seg.nii.gz")
    assert SLICER_LABELMAP_NAME.search(path.name.removesuffix(".nii.gz"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case 1_seg.nii.gz"]  # no temporary left behind
    _assert_same_image(sitk.ReadImage(str(path)), labels)
    header = nib.load(path).header
    assert header.get_data_dtype() == np.uint8
    assert int(header["sform_code"]) > 0 and int(header["qform_code"]) > 0


def test_wrong_inputs_are_refused(tmp_path: Path) -> None:
    labels = synthetic_labels()
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_label_nifti(labels, tmp_path / "case_seg.nrrd")
    with pytest.raises(ValueError, match="uint8"):
        write_label_nifti(sitk.Cast(labels, sitk.sitkFloat32), tmp_path / "case_seg.nii.gz")
    assert not list(tmp_path.iterdir())


@pytest.mark.data
def test_real_mask_round_trips_in_the_ct_geometry(sts019: Case, tmp_path: Path) -> None:
    path = write_label_nifti(sts019.labels, tmp_path / "STS_019_seg.nii.gz")
    written = sitk.ReadImage(str(path))
    _assert_same_image(written, sts019.labels)
    assert int(sitk.GetArrayViewFromImage(written).sum()) == 5564
