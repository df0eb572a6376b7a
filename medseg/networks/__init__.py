"""Networks for the ``ct_unet`` bundle: a factory over MONAI UNet / DynUNet and our FCN-8s baseline, a
mirroring test-time-augmentation wrapper, and the inferer that runs 2D networks over volumes.

The names below load on first use (PEP 562), so that importing one submodule does not import torch and MONAI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.networks.factory import NETWORKS, build_network, dynunet_plan
    from medseg.networks.fcn import FCN8s
    from medseg.networks.inferers import AxialSliceInferer, PrecisionInferer, build_inferer
    from medseg.networks.tta import FlipEnsemble

_EXPORTS = {
    "medseg.networks.factory": ("NETWORKS", "build_network", "dynunet_plan"),
    "medseg.networks.fcn": ("FCN8s",),
    "medseg.networks.inferers": ("AxialSliceInferer", "PrecisionInferer", "build_inferer"),
    "medseg.networks.tta": ("FlipEnsemble",),
}
__all__ = [
    "NETWORKS",
    "AxialSliceInferer",
    "FCN8s",
    "FlipEnsemble",
    "PrecisionInferer",
    "build_inferer",
    "build_network",
    "dynunet_plan",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
