from __future__ import annotations

import random

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.errors import GeometryError
from medseg.io.writers.geometry import check_label_image, ijk_to_lps, label_array, source_slice_indices
from tests.io.writers.conftest import Case, ct_series, oblique_direction, synthetic_labels


def test_ijk_to_lps_agrees_with_itk_on_an_oblique_grid() -> None:
    image = synthetic_labels(oblique_direction())
    matrix = ijk_to_lps(image)
    for index in [(0, 0, 0), (19, 15, 5), (3, 7, 2)]:
        expected = image.TransformContinuousIndexToPhysicalPoint([float(i) for i in index])
        np.testing.assert_allclose(matrix @ np.r_[index, 1.0], np.r_[expected, 1.0], atol=1e-12)


def test_label_images_must_be_3d_uint8() -> None:
    labels = synthetic_labels()
    assert label_array(labels).shape == (6, 16, 20)
    with pytest.raises(ValueError, match="uint8"):
        check_label_image(sitk.Cast(labels, sitk.sitkUInt16))
    with pytest.raises(ValueError, match="3D"):
        check_label_image(sitk.Image(4, 4, sitk.sitkUInt8))


def test_source_slices_are_found_in_any_order(oblique_case: Case) -> None:
    order = list(range(len(oblique_case.sources)))
    random.Random(0).shuffle(order)
    shuffled = [oblique_case.sources[n] for n in order]
    assert source_slice_indices(oblique_case.labels, shuffled) == order


def test_source_series_that_do_not_fit_are_refused(oblique_case: Case) -> None:
    labels, sources = oblique_case.labels, oblique_case.sources
    with pytest.raises(GeometryError, match="planes with none: \\[5\\]"):
        source_slice_indices(labels, sources[:-1])
    with pytest.raises(GeometryError, match="ImageOrientationPatient"):
        source_slice_indices(labels, ct_series(synthetic_labels()))
    shifted = ct_series(labels)
    shifted[2].ImagePositionPatient = [float(v) + 0.5 for v in shifted[2].ImagePositionPatient]
    with pytest.raises(GeometryError, match="not on a plane"):
        source_slice_indices(labels, shifted)
    flipped = sitk.Flip(labels, [False, False, True])  # same planes, z reversed: still one source per plane
    assert source_slice_indices(flipped, sources) == list(range(5, -1, -1))
    small = ct_series(sitk.RegionOfInterest(labels, [10, 16, 6], [0, 0, 0]))
    with pytest.raises(GeometryError, match="10x16 pixels"):
        source_slice_indices(labels, small)
