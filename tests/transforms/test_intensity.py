from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg.errors import MedsegError
from medseg.transforms import HU_WINDOW_PRESETS, HUWindow, HUWindowd, hu_window_range


@pytest.mark.parametrize(
    ("name", "lower", "upper"),
    [
        ("head_neck", -135.0, 215.0),
        ("soft_tissue", -160.0, 240.0),
        ("abdomen", -125.0, 225.0),
        ("lung", -1350.0, 150.0),
        ("bone", -500.0, 1300.0),
    ],
)
def test_presets_are_level_plus_minus_half_width(name: str, lower: float, upper: float) -> None:
    assert hu_window_range(name) == (lower, upper)
    assert set(HU_WINDOW_PRESETS) == {"head_neck", "soft_tissue", "abdomen", "lung", "bone"}


def test_head_neck_window_maps_hand_checked_values() -> None:
    # -135 -> 0, 40 (level) -> 0.5, 215 -> 1; air and bone saturate
    hu = torch.tensor([[-1024.0, -135.0, 40.0, 127.5, 215.0, 1500.0]])
    out = HUWindow("head_neck")(hu)
    np.testing.assert_allclose(np.asarray(out), [[0.0, 0.0, 0.5, 0.75, 1.0, 1.0]], atol=1e-6)


def test_explicit_range_and_output_range_without_clip() -> None:
    out = HUWindow([-1000, 1000], b_min=-1.0, b_max=1.0, clip=False)(np.array([[-2000.0, 0.0, 500.0]]))
    np.testing.assert_allclose(out, [[-2.0, 0.0, 0.5]])


def test_dict_twin_keeps_metatensor_geometry_and_leaves_other_keys() -> None:
    affine = torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0]))
    image = MetaTensor(torch.full((1, 2, 2, 2), 240.0), affine=affine)
    label = torch.ones(1, 2, 2, 2)
    out = HUWindowd(keys="image", window="soft_tissue")({"image": image, "label": label})
    assert isinstance(out["image"], MetaTensor)
    assert torch.equal(out["image"].affine, affine.double())
    assert torch.all(out["image"] == 1.0) and out["image"].dtype == torch.float32
    assert out["label"] is label


@pytest.mark.parametrize("window", ["brain_stroke", [100, 100], [1, 2, 3], [float("nan"), 5]])
def test_bad_windows_are_user_errors(window: object) -> None:
    with pytest.raises(MedsegError, match="window"):
        HUWindow(window)  # type: ignore[arg-type]
