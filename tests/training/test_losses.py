from __future__ import annotations

import math

import pytest
import torch
from monai.data import MetaTensor
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss, FocalLoss

from medseg.errors import MedsegError
from medseg.training.losses import (
    PartialLabelLoss,
    build_loss,
    merged_log_probs,
    prepare_batch,
)


def _monai_dicefocal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(target[:, 0].long(), logits.shape[1]).movedim(-1, 1).float()
    dice = DiceLoss(softmax=True, batch=True)(logits, onehot)
    return dice + FocalLoss(use_softmax=True, gamma=2.0)(logits, onehot)


def test_fully_contoured_equals_monai_softmax_dice_focal() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 6, 6, 6), torch.randint(0, 4, (2, 1, 6, 6, 6))
    expected = _monai_dicefocal(logits, target)
    assert torch.allclose(PartialLabelLoss("dicefocal")(logits, target), expected, atol=1e-6)
    all_ones = torch.ones(2, 4)
    assert torch.allclose(PartialLabelLoss("dicefocal")(logits, target, all_ones), expected, atol=1e-6)


def test_fully_contoured_equals_monai_dice_ce() -> None:
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 5, 5, 5), torch.randint(0, 3, (2, 1, 5, 5, 5))
    expected = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)(logits, target)
    assert torch.allclose(PartialLabelLoss("dicece")(logits, target, torch.ones(2, 3)), expected, atol=1e-6)


def test_merged_probabilities_by_hand() -> None:
    # one voxel, classes bg/A/B with probabilities 0.5/0.3/0.2; B not contoured -> bg 0.7, A 0.3, B 0
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).view(1, 3, 1)
    merged = merged_log_probs(logits, torch.tensor([[1, 1, 0]])).exp().view(-1)
    assert torch.allclose(merged, torch.tensor([0.7, 0.3, 0.0]), atol=1e-6)


def test_cross_entropy_of_an_uncontoured_organ_voxel_is_minus_log_background_plus_organ() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).view(1, 3, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)  # labelled background: could be B, which is uncontoured
    loss = PartialLabelLoss("dicece", lambda_dice=0.0)(logits, target, torch.tensor([[1, 1, 0]]))
    assert loss.item() == pytest.approx(-math.log(0.7), abs=1e-6)
    plain = PartialLabelLoss("dicece", lambda_dice=0.0)(logits, target)
    assert plain.item() == pytest.approx(-math.log(0.5), abs=1e-6)


def test_dice_only_over_contoured_organs() -> None:
    # organ 2 is never contoured in the batch: predicting it confidently costs nothing
    torch.manual_seed(2)
    target = torch.randint(0, 2, (2, 1, 4, 4, 4))
    logits = torch.randn(2, 3, 4, 4, 4)
    contoured = torch.tensor([[1, 1, 0], [1, 1, 0]])
    loss = PartialLabelLoss("dicefocal")
    louder = logits.clone()
    louder[:, 2] += 5.0  # push organ 2 up everywhere
    a, b = loss(logits, target, contoured), loss(louder, target, contoured)
    # the organ-2 probability mass goes to background, which is right for label-0 voxels and wrong for label-1
    # voxels: the loss changes, but it stays finite and organ 2 itself is no Dice term (3 channels would be 1/3)
    assert torch.isfinite(a) and torch.isfinite(b)
    dice_only = PartialLabelLoss("dicefocal", lambda_focal=0.0)
    per_channel = DiceLoss(softmax=True, batch=True, reduction="none")(
        merged_log_probs(logits, contoured),
        torch.nn.functional.one_hot(target[:, 0], 3).movedim(-1, 1).float(),
    ).reshape(-1)
    assert torch.allclose(dice_only(logits, target, contoured), per_channel[:2].mean(), atol=1e-6)


def test_uncontoured_organ_gets_no_gradient_towards_background() -> None:
    # a voxel labelled 0 in a case where organ 1 was not contoured: the loss must not push organ 1 down there
    logits = torch.tensor([0.0, 2.0]).view(1, 2, 1).requires_grad_(True)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    PartialLabelLoss("dicece", lambda_dice=0.0)(logits, target, torch.tensor([[1, 0]])).backward()
    assert logits.grad is not None and torch.allclose(logits.grad, torch.zeros_like(logits.grad), atol=1e-6)


def test_numerically_safe_for_extreme_logits_and_all_uncontoured() -> None:
    logits = torch.full((1, 3, 4, 4, 4), -1e4)
    logits[:, 2] = 1e4
    logits.requires_grad_(True)
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    value = PartialLabelLoss("dicefocal")(logits, target, torch.tensor([[1, 0, 0]]))
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None and torch.isfinite(logits.grad).all()


def test_unknown_loss_and_bad_mask_shape_are_refused() -> None:
    with pytest.raises(MedsegError, match="--loss"):
        PartialLabelLoss("dice")
    with pytest.raises(MedsegError, match="contoured mask"):
        merged_log_probs(torch.randn(1, 3, 2), torch.ones(1, 2))


def _plain(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return PartialLabelLoss("dicefocal")(logits, target)


def test_plain_output_gets_the_plain_loss() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8))
    assert torch.allclose(build_loss()(logits, target), _plain(logits, target))


def test_stacked_deep_supervision_heads_weighted_like_monai_exp_mode_normalised() -> None:
    torch.manual_seed(1)
    heads = torch.randn(2, 3, 4, 8, 8, 8)  # (B, 1 + 2 heads, C, *spatial) as DynUNet returns it
    target = torch.randint(0, 4, (2, 1, 8, 8, 8))
    expected = sum(w * _plain(heads[:, i], target) for i, w in enumerate((1.0, 0.5, 0.25))) / 1.75
    got = build_loss()(heads, target)
    assert torch.allclose(got, expected, atol=1e-6)
    monai_ds = DeepSupervisionLoss(lambda x, y: PartialLabelLoss("dicefocal")(x, y))  # type: ignore[arg-type]
    assert torch.allclose(got * 1.75, monai_ds(list(heads.unbind(1)), target), atol=1e-6)


def test_contoured_mask_reaches_the_loss_through_prepare_batch() -> None:
    torch.manual_seed(3)
    batch = {
        "image": torch.randn(2, 1, 4, 4, 4),
        "label": MetaTensor(torch.randint(0, 2, (2, 1, 4, 4, 4))),
        "contoured": [torch.tensor([1, 1]), torch.tensor([1, 1]), torch.tensor([0, 1])],  # collated per class
    }
    image, label = prepare_batch(batch, "cpu")
    assert torch.equal(label.meta["contoured"], torch.tensor([[1, 1, 0], [1, 1, 1]]))
    logits = torch.randn(2, 3, 4, 4, 4)
    expected = PartialLabelLoss("dicefocal")(logits, label.as_tensor(), torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert torch.allclose(build_loss()(logits, label), expected)
    assert image.shape == (2, 1, 4, 4, 4)


def test_loss_runs_in_float32_and_stays_finite_for_extreme_logits() -> None:
    logits = torch.full((1, 3, 4, 4, 4), -1e4, dtype=torch.bfloat16)
    logits[:, 0] = 1e4  # all background, confidently; the target says organ 2 everywhere
    target = torch.full((1, 1, 4, 4, 4), 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = build_loss()(logits, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
