from __future__ import annotations

import torch
from monai.data import MetaTensor
from monai.handlers import MeanDice
from monai.metrics import DiceMetric

from medseg.transforms.training import augmentation, patch_sampling, training_transforms


def _case() -> dict[str, MetaTensor]:
    label = torch.zeros(1, 24, 24, 24)
    label[:, 2:6, 2:6, 2:6] = 1  # organ 1 contoured in a corner; organ 2 not contoured in this case
    return {"image": MetaTensor(torch.rand(1, 24, 24, 24)), "label": MetaTensor(label)}


def test_class_crops_centre_on_contoured_organs_and_background_only() -> None:
    crop = patch_sampling(3, [4, 4, 4], crop="classes", num_samples=64, num_classes=3)
    crop[1].set_random_state(0)  # type: ignore[attr-defined]
    data = _case()
    for transform in crop:
        data = transform(data)  # type: ignore[assignment]
    samples = data if isinstance(data, list) else [data]
    labels = [s["label"] for s in samples]
    assert len(labels) == 64
    with_organ = sum(bool((lab == 1).any()) for lab in labels)
    assert 0 < with_organ < 64  # organ 1 and background alike; organ 2 has no voxels, so never a centre


def test_2d_sampling_squeezes_the_slice_axis_and_flips_never_swap_left_right() -> None:
    names = [type(t).__name__ for t in patch_sampling(2, [16, 16], num_samples=3)]
    assert names == ["SpatialPadd", "RandCropByLabelClassesd", "SqueezeDimd"]
    flips = [t.flipper.spatial_axis for t in augmentation(3, [16, 16, 16]) if type(t).__name__ == "RandFlipd"]
    assert flips == [1, 2]
    assert [type(t).__name__ for t in training_transforms(3, [8, 8, 8], augment=False)] == [
        "SpatialPadd",
        "RandCropByLabelClassesd",
    ]


def test_validation_dice_of_an_organ_counts_only_cases_where_it_is_contoured() -> None:
    # the bundle's key metric: MeanDice(include_background=False) with MONAI's default ignore_empty=True; an organ
    # missing from a case's label map (not contoured there) gives NaN for that case and drops out of the mean
    pred = torch.zeros(2, 3, 8, 8, 8)
    label = torch.zeros(2, 3, 8, 8, 8)
    pred[:, 0] = 1
    pred[:, 2, :4], pred[:, 0, :4] = 1, 0  # both cases predict organ 2 in the same place
    label[0, 2, :4] = 1  # case 0: organ 2 contoured, prediction right
    label[1, 0] = 1  # case 1: organ 2 not contoured; the prediction there must not count as a false positive
    label[:, 1, 0, 0, 0], label[:, 0, 0, 0, 0] = 1, 0
    pred[:, 1, 0, 0, 0], pred[:, 0, 0, 0, 0] = 1, 0
    details = DiceMetric(include_background=False, reduction="none")(pred, label)
    assert torch.isnan(details[1, 1]) and details[0, 1] == 1.0
    assert MeanDice(include_background=False).metric_fn.ignore_empty
