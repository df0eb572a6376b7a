"""Turn the bundle's command-line overrides into checked values.

``python -m monai.bundle run`` parses ``--key value`` with python-fire: ``--amp`` alone is ``True`` but
``--augment false`` arrives as the string ``"false"``, and ``--device cuda`` is a string. These helpers accept
what fire produces and raise :class:`medseg.errors.MedsegError` naming the option and quoting the bad value.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from medseg.errors import MedsegError

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", "none", "null", ""}
LOSSES = ("dicefocal", "dicece")
OPTIMIZERS = ("adamw", "sgd")
CROPS = ("posneg", "classes")  # RandCropByPosNegLabeld, or RandCropByLabelClassesd (every organ sampled alike)


def as_bool(value: Any, name: str = "option") -> bool:
    """``True``/``False`` from a bool, a 0/1 number or a string such as ``"true"``, ``"no"``, ``"off"``."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise MedsegError(None, f"--{name} must be true or false, got {value!r}")


def amp_enabled(amp: Any, device: torch.device) -> bool:
    """Whether to train with mixed precision: asked for (``--amp``) and on CUDA; on CPU it is ignored with a note."""
    wanted = as_bool(amp, "amp")
    if wanted and device.type != "cuda":
        logger.warning("--amp is ignored on %s: mixed precision is used on CUDA only", device)
        return False
    return wanted


def training_precision(precision: Any, device: torch.device, amp: bool = False) -> str:
    """The precision the training step's network runs at: ``"fp32"``, or ``"bf16"`` (bfloat16 autocast with
    channels-last weights; the loss and the optimiser stay float32).

    ``"auto"`` picks ``bf16`` on a CPU with bfloat16 instructions (``avx512_bf16`` / ``amx_bf16``: 1.47x the fp32
    training loop's patches per second on the project's Zen 4 CPU, ``python -m benchmarks.run --only training``) and
    ``fp32`` elsewhere: emulated bfloat16 is slower than fp32, and on CUDA ``--amp`` (float16 with a gradient scaler)
    is the mixed-precision path. ``"bf16"`` on hardware without bfloat16 is refused.

    Raises:
        MedsegError: an unknown value, or ``bf16`` asked for where the device lacks bfloat16.
    """
    from medseg.networks.factory import check_precision

    text = "auto" if precision is None else str(precision).strip().lower()
    if text == "bf16" and amp:
        raise MedsegError(None, "--precision bf16 and --amp both ask for mixed precision: choose one")
    # auto off the CPU, or beside --amp, stays fp32: there the mixed-precision path is --amp
    chosen = "fp32" if text == "auto" and (device.type != "cpu" or amp) else check_precision(text, device)
    logger.info("training step precision: %s (--precision %s on %s)", chosen, text, device)
    return chosen


def check_options(
    network: str,
    spatial_dims: int,
    slice_neighbours: int,
    patch_size: Sequence[int],
    loss: str,
    optimizer: str,
    networks: Sequence[str] | None = None,
    crop: str = "posneg",
) -> None:
    """Reject combinations that cannot work, before any data is loaded.

    Raises:
        MedsegError: naming the offending option and value.
    """
    if networks is None:
        from medseg.networks import NETWORKS

        networks = tuple(NETWORKS)
    if network not in networks:
        raise MedsegError(None, f"--network must be one of {', '.join(networks)}, got {network!r}")
    if spatial_dims not in (2, 3):
        raise MedsegError(None, f"--spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if not isinstance(slice_neighbours, int) or slice_neighbours < 0:
        raise MedsegError(None, f"--slice_neighbours must be a whole number >= 0, got {slice_neighbours!r}")
    if slice_neighbours and spatial_dims != 2:
        raise MedsegError(None, f"--slice_neighbours {slice_neighbours} needs --spatial_dims 2 (2.5D)")
    if len(patch_size) != spatial_dims or any(int(s) < 1 for s in patch_size):
        raise MedsegError(None, f"--patch_size {list(patch_size)!r} must list {spatial_dims} positive sizes")
    if loss not in LOSSES:
        raise MedsegError(None, f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if optimizer not in OPTIMIZERS:
        raise MedsegError(None, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if crop not in CROPS:
        raise MedsegError(None, f"--crop must be one of {', '.join(CROPS)}, got {crop!r}")
