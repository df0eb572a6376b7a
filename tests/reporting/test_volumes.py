from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.reporting.volumes import image_volumes_ml, label_volumes_ml


def test_volumes_by_hand() -> None:
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[0, 0, :3] = 1  # 3 voxels
    labels[1:3, 1:3, 1:3] = 2  # 8 voxels
    volumes = label_volumes_ml(labels, (2.0, 0.5, 1.5), [2, 1, 7])
    assert list(volumes) == [2, 1, 7]
    assert volumes == pytest.approx({2: 8 * 1.5 / 1000, 1: 3 * 1.5 / 1000, 7: 0.0})
    assert label_volumes_ml(labels, (1, 1, 1), []) == {}


def test_image_volumes_use_the_image_spacing_whatever_the_direction() -> None:
    image = sitk.Image(10, 10, 10, sitk.sitkUInt8)
    image[2:6, 3:5, 0:10] = 1  # 4 * 2 * 10 = 80 voxels
    image.SetSpacing((0.5, 2.0, 3.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    assert image_volumes_ml(image, [1, 2]) == pytest.approx({1: 80 * 3.0 / 1000, 2: 0.0})
