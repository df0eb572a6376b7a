"""Networks for the ``ct_unet`` bundle: a factory over MONAI UNet / DynUNet and our FCN-8s baseline, a
mirroring test-time-augmentation wrapper, and the inferer that runs 2D networks over volumes."""

from medseg.networks.factory import NETWORKS, build_network, dynunet_plan
from medseg.networks.fcn import FCN8s
from medseg.networks.inferers import AxialSliceInferer
from medseg.networks.tta import FlipEnsemble

__all__ = ["NETWORKS", "AxialSliceInferer", "FCN8s", "FlipEnsemble", "build_network", "dynunet_plan"]
