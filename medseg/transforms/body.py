"""Which voxels are the patient's body: the ``select_fn`` that lets MONAI ``CropForegroundd`` crop a CT to the body.

Cropping to the body (rather than to "anything above air") drops the air around the patient and, because only the
largest connected component is kept, the couch and other objects that do not touch the patient. The crop itself is
MONAI's ``CropForegroundd``, so it is recorded in the MetaTensor and ``Invertd`` pads the prediction back.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.transforms.utils import get_largest_connected_component_mask
from monai.utils import convert_to_dst_type

logger = logging.getLogger(__name__)


class BodyMask:
    """``select_fn`` for ``CropForeground(d)``: voxels above ``threshold_hu``, optionally only the largest component.

    Args:
        threshold_hu: voxels strictly above this value count as body (-500 HU separates tissue from air and lung
            parenchyma stays inside the body's outline once the largest component is filled around it).
        largest_component: keep only the largest 3D-connected component of each channel.

    Shapes: ``(C, *spatial)`` in, boolean ``(C, *spatial)`` out (same array type). When no voxel passes the
    threshold the whole image is returned as body, so a crop never removes everything.
    """

    def __init__(self, threshold_hu: float = -500.0, largest_component: bool = True) -> None:
        self.threshold_hu = float(threshold_hu)
        self.largest_component = largest_component

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        above = np.asarray(img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img) > self.threshold_hu
        if not above.any():
            logger.warning("no voxel above %s HU: not cropping to the body", self.threshold_hu)
            mask = np.ones_like(above)
        elif self.largest_component:
            mask = np.stack([get_largest_connected_component_mask(channel) for channel in above])
        else:
            mask = above
        out, *_ = convert_to_dst_type(mask, img, dtype=bool)
        return out

    def __repr__(self) -> str:
        return f"BodyMask(threshold_hu={self.threshold_hu}, largest_component={self.largest_component})"
