from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss, DiceFocalLoss

from medseg.training import SegmentationLoss


def _loss() -> DiceFocalLoss:
    return DiceFocalLoss(include_background=True, to_onehot_y=True, softmax=True, batch=True)


def test_plain_output_gets_the_plain_loss() -> None:
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8))
    assert torch.allclose(SegmentationLoss(_loss())(logits, target), _loss()(logits, target))


def test_stacked_deep_supervision_heads_weighted_1_half_quarter_normalised() -> None:
    torch.manual_seed(1)
    heads = torch.randn(2, 3, 4, 8, 8, 8)  # (B, 1 + 2 heads, C, *spatial) as DynUNet returns it
    target = torch.randint(0, 4, (2, 1, 8, 8, 8))
    expected = sum(w * _loss()(heads[:, i], target) for i, w in enumerate((1.0, 0.5, 0.25))) / 1.75
    got = SegmentationLoss(_loss())(heads, target)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got * 1.75, DeepSupervisionLoss(_loss())(list(heads.unbind(1)), target))


def test_loss_runs_in_float32_and_stays_finite_for_extreme_logits() -> None:
    logits = torch.full((1, 3, 4, 4, 4), -1e4, dtype=torch.bfloat16)
    logits[:, 0] = 1e4  # all background, confidently; the target says organ 2 everywhere
    target = torch.full((1, 1, 4, 4, 4), 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = SegmentationLoss(_loss())(logits, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
