from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, CropForegroundd

from medseg.transforms import BodyMask


def _scan() -> MetaTensor:
    """Air with a body block (soft tissue and a lung-like hole) and a separate "couch" strip."""
    hu = torch.full((1, 20, 16, 12), -1000.0)
    hu[0, 4:14, 3:12, 2:10] = 30.0  # body
    hu[0, 7:10, 5:8, 4:7] = -800.0  # lung inside the body (below threshold, still inside the body's box)
    hu[0, 17:19, 1:15, 0:12] = 200.0  # couch: bright but not connected to the body
    return MetaTensor(hu, affine=torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0])))


def test_largest_component_drops_the_couch() -> None:
    mask = BodyMask(threshold_hu=-500)(_scan())
    assert mask.dtype == torch.bool and mask.shape == (1, 20, 16, 12)
    assert mask[0, 5, 4, 3] and not mask[0, 18, 5, 5] and not mask[0, 8, 6, 5]
    assert int(mask.sum()) == 10 * 9 * 8 - 3 * 3 * 3
    every = BodyMask(threshold_hu=-500, largest_component=False)(_scan())
    assert every[0, 18, 5, 5]


def test_no_body_means_no_crop() -> None:
    mask = BodyMask()(np.full((1, 4, 4, 4), -1024.0))
    assert isinstance(mask, np.ndarray) and mask.all()


def test_body_crop_is_exactly_invertible() -> None:
    image = _scan()
    label = MetaTensor(torch.zeros_like(image), affine=image.affine)
    label[0, 6, 6, 6] = 3
    crop = Compose(
        [
            CropForegroundd(
                keys=["image", "label"], source_key="image", select_fn=BodyMask(), margin=1, allow_smaller=True
            )
        ]
    )
    out = crop({"image": image, "label": label})
    assert out["image"].shape == (1, 12, 11, 10)  # body box 10x9x8 plus a 1-voxel margin
    assert torch.allclose(out["image"].affine[:3, 3], torch.tensor([3 * 0.8, 2 * 0.8, 1 * 2.5], dtype=torch.float64))
    restored = crop.inverse(out)
    assert restored["label"].shape == label.shape
    assert torch.equal(restored["label"].as_tensor(), label.as_tensor())
    assert torch.equal(restored["label"].affine, label.affine)
