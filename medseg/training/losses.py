"""The training loss wrapper: deep supervision for networks that stack their heads (DynUNet), always in fp32."""

from __future__ import annotations

import torch
from monai.losses import DeepSupervisionLoss
from torch import nn
from torch.nn.modules.loss import _Loss


class SegmentationLoss(nn.Module):
    """Apply ``loss`` (e.g. MONAI ``DiceFocalLoss``) to plain or deep-supervision outputs, outside autocast.

    DynUNet in training mode returns its main output and its deep-supervision heads stacked on dim 1,
    ``(B, 1 + heads, C, *spatial)``; they are unbound into a list and weighted by MONAI ``DeepSupervisionLoss``
    (``weight_mode="exp"``: 1, 1/2, 1/4, ...), normalised to sum to 1 as nnU-Net does, so loss values compare
    across networks with and without deep supervision. A plain ``(B, C, *spatial)`` output gets ``loss`` unchanged.
    The loss runs in float32 with autocast off, so softmax, log and the Dice ratio stay finite under AMP.

    Args:
        loss: the per-output loss; takes logits ``(B, C, *spatial)`` and labels ``(B, 1, *spatial)``.
        weight_mode: ``DeepSupervisionLoss`` weighting of the heads.
    """

    def __init__(self, loss: _Loss, weight_mode: str = "exp") -> None:
        super().__init__()
        self.supervision = DeepSupervisionLoss(loss, weight_mode=weight_mode)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if logits.ndim == target.ndim + 1:
                heads = list(torch.unbind(logits, dim=1))
                total = self.supervision(heads, target)
                return total / sum(self.supervision.get_weights(len(heads)))
            return self.supervision(logits, target)
