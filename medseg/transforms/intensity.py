"""CT intensity windows by name: a Hounsfield range mapped linearly onto [b_min, b_max] and clipped.

The presets are the usual radiology display windows (level L, width W; the range is L - W/2 .. L + W/2).
Array and dictionary twins subclass MONAI's ``ScaleIntensityRange`` / ``ScaleIntensityRanged``, so they behave
exactly like those (MetaTensor in, MetaTensor out; any channel count) and only add the named range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from monai.config import DtypeLike, KeysCollection
from monai.transforms import ScaleIntensityRange, ScaleIntensityRanged

from medseg.errors import MedsegError


@dataclass(frozen=True)
class HUWindowPreset:
    """A display window: ``level`` (centre) and ``width``, both in Hounsfield units."""

    level: float
    width: float

    @property
    def lower(self) -> float:
        return self.level - self.width / 2

    @property
    def upper(self) -> float:
        return self.level + self.width / 2


# Common clinical display windows (level, width). head_neck is the neck soft-tissue window; bone and air still
# stay apart in it (they saturate to b_max and b_min), which is what organ-at-risk segmentation needs.
HU_WINDOW_PRESETS: Mapping[str, HUWindowPreset] = {
    "head_neck": HUWindowPreset(level=40.0, width=350.0),  # -135 .. 215
    "soft_tissue": HUWindowPreset(level=40.0, width=400.0),  # -160 .. 240
    "abdomen": HUWindowPreset(level=50.0, width=350.0),  # -125 .. 225
    "lung": HUWindowPreset(level=-600.0, width=1500.0),  # -1350 .. 150
    "bone": HUWindowPreset(level=400.0, width=1800.0),  # -500 .. 1300
}


def hu_window_range(window: str | Sequence[float]) -> tuple[float, float]:
    """The HU range ``(lower, upper)`` of a preset name or of an explicit ``[lower, upper]`` pair.

    Raises:
        MedsegError: unknown preset name, or a pair that is not two increasing finite numbers.
    """
    if isinstance(window, str):
        preset = HU_WINDOW_PRESETS.get(window)
        if preset is None:
            raise MedsegError(None, f"unknown HU window {window!r}; presets: {', '.join(sorted(HU_WINDOW_PRESETS))}")
        return preset.lower, preset.upper
    values = [float(v) for v in window]
    if len(values) != 2 or not all(np.isfinite(values)) or values[0] >= values[1]:
        raise MedsegError(None, f"HU window {list(window)!r} must be [lower, upper] with lower < upper")
    return values[0], values[1]


class HUWindow(ScaleIntensityRange):
    """Map the HU range of ``window`` onto ``[b_min, b_max]`` (linear), clipping outside values by default.

    Args:
        window: a preset name (:data:`HU_WINDOW_PRESETS`) or ``[lower, upper]`` in HU.
        b_min, b_max: the output range.
        clip: clip to ``[b_min, b_max]`` (values outside the window saturate).
        dtype: output data type.

    Shapes: any ``(C, *spatial)`` array or tensor; the output has the same shape.
    """

    def __init__(
        self,
        window: str | Sequence[float] = "soft_tissue",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        dtype: DtypeLike = np.float32,
    ) -> None:
        lower, upper = hu_window_range(window)
        super().__init__(a_min=lower, a_max=upper, b_min=b_min, b_max=b_max, clip=clip, dtype=dtype)
        self.window = window


class HUWindowd(ScaleIntensityRanged):
    """Dictionary twin of :class:`HUWindow` for the entries named by ``keys``."""

    def __init__(
        self,
        keys: KeysCollection,
        window: str | Sequence[float] = "soft_tissue",
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = True,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        lower, upper = hu_window_range(window)
        super().__init__(
            keys,
            a_min=lower,
            a_max=upper,
            b_min=b_min,
            b_max=b_max,
            clip=clip,
            dtype=dtype,
            allow_missing_keys=allow_missing_keys,
        )
        self.window = window
