"""The training loss: Dice + focal (or cross-entropy) that learns from partially contoured cases.

Real radiotherapy data are partially contoured: a team draws the organs its plan needs. An organ that was not
contoured in a case is *unknown* there, not background, so :class:`PartialLabelLoss` uses the marginal approach
of Shi et al. (MedIA 2021, "Marginal loss and exclusion loss for partially supervised multi-organ
segmentation"): per case, the softmax probabilities of the uncontoured organs are added to background before the
Dice and the focal / cross-entropy terms, and the Dice is averaged only over the organs that at least one case
of the batch has contoured. A case whose every organ is contoured gets exactly the plain softmax Dice + focal /
cross-entropy of MONAI (``DiceLoss`` + ``FocalLoss(use_softmax=True)`` / ``CrossEntropyLoss``).

Which organs a case carries travels as ``label.meta["contoured"]``: a ``(B, C)`` 0/1 tensor put there by
:func:`medseg.training.prepare_batch` from the datalist's ``"contoured"`` key. Without it every organ counts as
contoured.

:class:`SegmentationLoss` wraps the per-output loss for networks with deep-supervision heads (DynUNet), always in
float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.losses import DiceLoss, FocalLoss
from monai.networks import one_hot
from torch import nn

from medseg.errors import MedsegError

LOSSES = ("dicefocal", "dicece")
# log-probability given to an uncontoured organ after it is merged into background: exp(-1e4) is exactly 0 in
# float32, so it adds nothing to Dice or focal, yet stays finite (0 * -inf would be NaN).
_LOG_ZERO = -1.0e4


def merged_log_probs(logits: torch.Tensor, contoured: torch.Tensor | None) -> torch.Tensor:
    """Log-probabilities ``(B, C, *spatial)`` with each case's uncontoured organs merged into background.

    Args:
        logits: network output ``(B, C, *spatial)``; channel 0 is background.
        contoured: ``(B, C)`` 0/1 (or bool) tensor, 1 where channel c was contoured in case b; ``None``: all.

    Returns:
        ``log p'`` where ``p'_0 = p_0 + sum(p_c, c uncontoured)``, ``p'_c = p_c`` for contoured organs and
        ``log p'_c = -1e4`` (probability 0) for uncontoured ones. Rows sum to 1 in probability space, so softmax of
        the result gives ``p'`` back and log-softmax leaves it unchanged.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    if contoured is None:
        return log_p
    known = contoured.to(device=logits.device, dtype=torch.bool).clone()
    if known.shape != logits.shape[:2]:
        raise MedsegError(None, f"contoured mask has shape {tuple(known.shape)}, expected {tuple(logits.shape[:2])}")
    known[:, 0] = True  # background is always known
    if bool(known.all()):
        return log_p
    view = (*known.shape, *([1] * (logits.ndim - 2)))
    into_background = (~known).clone()
    into_background[:, 0] = True
    group = torch.where(into_background.view(view), log_p, torch.full_like(log_p, float("-inf")))
    log_background = torch.logsumexp(group, dim=1, keepdim=True)
    merged = torch.where(known.view(view), log_p, torch.full_like(log_p, _LOG_ZERO))
    return torch.cat([log_background, merged[:, 1:]], dim=1)


class PartialLabelLoss(nn.Module):
    """Softmax Dice + focal (``"dicefocal"``) or Dice + cross-entropy (``"dicece"``) with uncontoured organs
    marginalised into background (module docstring). Batch Dice (``batch=True``), as nnU-Net does.

    Args:
        loss: ``"dicefocal"`` or ``"dicece"``.
        include_background: include channel 0 in the Dice and focal terms.
        gamma: focal exponent; ``alpha``: focal balance (``None``: off).
        lambda_dice, lambda_focal, lambda_ce: weights of the terms.
        smooth_nr, smooth_dr: Dice smoothing.
    """

    def __init__(
        self,
        loss: str = "dicefocal",
        include_background: bool = True,
        gamma: float = 2.0,
        alpha: float | None = None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        lambda_ce: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise MedsegError(None, f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if min(lambda_dice, lambda_focal, lambda_ce) < 0:
            raise MedsegError(None, "--lambda_dice, --lambda_focal and --lambda_ce must not be negative")
        self.kind = loss
        self.include_background = include_background
        self.dice = DiceLoss(
            include_background=include_background,
            softmax=True,
            batch=True,
            reduction="none",
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )
        self.focal = FocalLoss(
            include_background=include_background, gamma=gamma, alpha=alpha, use_softmax=True, reduction="mean"
        )
        self.lambda_dice = lambda_dice
        self.lambda_other = lambda_focal if loss == "dicefocal" else lambda_ce

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, contoured: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of ``logits`` ``(B, C, *spatial)`` against integer labels ``target`` ``(B, 1, *spatial)``."""
        log_p = merged_log_probs(logits, contoured)
        onehot = one_hot(target, num_classes=logits.shape[1])
        per_channel = self.dice(log_p, onehot).reshape(-1)
        present = _contoured_channels(contoured, logits.shape[:2], logits.device)
        if not self.include_background:
            present = present[1:]
        dice = per_channel[present].mean() if bool(present.any()) else per_channel.sum() * 0.0
        focal = self.kind == "dicefocal"
        other = self.focal(log_p, onehot) if focal else F.nll_loss(log_p, target[:, 0].long())
        return self.lambda_dice * dice + self.lambda_other * other


def _contoured_channels(contoured: torch.Tensor | None, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Channels contoured in at least one case of the batch (background always)."""
    if contoured is None:
        return torch.ones(shape[1], dtype=torch.bool, device=device)
    present = contoured.to(device=device, dtype=torch.bool).any(dim=0)
    present[0] = True
    return present


def contoured_of(target: torch.Tensor) -> torch.Tensor | None:
    """The ``(B, C)`` contoured mask that :func:`medseg.training.prepare_batch` stored in ``target.meta``."""
    if isinstance(target, MetaTensor):
        value = target.meta.get("contoured")
        if isinstance(value, torch.Tensor):
            return value
    return None


class SegmentationLoss(nn.Module):
    """Apply ``loss`` to plain or deep-supervision outputs, in float32 with autocast off.

    DynUNet in training mode returns its main output and its deep-supervision heads stacked on dim 1,
    ``(B, 1 + heads, C, *spatial)``; each head is compared with the labels resized to it (nearest) and weighted
    1, 1/2, 1/4, ... down to 1/16 (MONAI ``DeepSupervisionLoss``'s ``"exp"`` mode), normalised to sum to 1 as nnU-Net
    does, so loss values compare across networks with and without deep supervision. A plain ``(B, C, *spatial)``
    output gets ``loss`` unchanged. The contoured mask travels in ``target.meta`` (:func:`contoured_of`).

    Args:
        loss: a :class:`PartialLabelLoss` (or any module taking ``(logits, target, contoured)``).
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        contoured = contoured_of(target)
        labels = target.as_tensor() if isinstance(target, MetaTensor) else target
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if logits.ndim != labels.ndim + 1:
                return self.loss(logits, labels, contoured)  # type: ignore[no-any-return]
            heads = torch.unbind(logits, dim=1)
            weights = [max(0.5**index, 0.0625) for index in range(len(heads))]  # DeepSupervisionLoss "exp"
            total = logits.new_zeros(())
            for weight, head in zip(weights, heads, strict=True):
                resized = labels if head.shape[2:] == labels.shape[2:] else _resize_labels(labels, head.shape[2:])
                total = total + weight * self.loss(head, resized, contoured)
            return total / sum(weights)


def _resize_labels(labels: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(labels.float(), size=tuple(size), mode="nearest").to(labels.dtype)


def build_loss(
    loss: str = "dicefocal",
    focal_gamma: float = 2.0,
    focal_alpha: float | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    lambda_ce: float = 1.0,
) -> SegmentationLoss:
    """The bundle's loss from its options (``--loss dicefocal|dicece``, gamma, alpha, term weights)."""
    return SegmentationLoss(
        PartialLabelLoss(
            loss,
            gamma=float(focal_gamma),
            alpha=None if focal_alpha is None else float(focal_alpha),
            lambda_dice=float(lambda_dice),
            lambda_focal=float(lambda_focal),
            lambda_ce=float(lambda_ce),
        )
    )


def prepare_batch(
    batchdata: dict[str, Any], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """MONAI ``prepare_batch`` that also carries the datalist's ``"contoured"`` key to the loss.

    Returns ``(image, label)`` on ``device`` like MONAI's ``default_prepare_batch``; ``label`` is a MetaTensor
    whose ``meta["contoured"]`` is the ``(B, C)`` contoured mask when the batch has one.
    """
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    label = batchdata["label"].to(device=device, non_blocking=non_blocking, **kwargs)
    contoured = batchdata.get("contoured")
    if contoured is not None:
        if isinstance(contoured, (list, tuple)):  # default collation turns a list per case into a list per class
            contoured = torch.stack([torch.as_tensor(column) for column in contoured], dim=1)
        if not isinstance(label, MetaTensor):
            label = MetaTensor(label)
        label.meta["contoured"] = torch.as_tensor(contoured).to(device=label.device)
    return image, label
