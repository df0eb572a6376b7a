"""2.5D input: every axial slice together with its ``n`` neighbours above and below, as channels.

``StackSliceNeighbours`` turns a volume ``(C, H, W, D)`` into ``(C * (2n + 1), H, W, D)``: for every slice index
``k`` the channels hold slices ``k - n .. k + n`` of each input channel (channel-major: all offsets of channel 0,
then channel 1, ...). The volume keeps its geometry, so the same chain serves training (crop ``[h, w, 1]`` and
squeeze to 2D), validation and inference (``SliceInferer`` runs a 2D network slice by slice). Past the first and
last slice the end slice is repeated (``mode="edge"``) or ``fill`` is used (``mode="constant"``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

STACK_MODES = ("edge", "constant")


class StackSliceNeighbours(Transform):
    """Stack each slice with its ``neighbours`` slices on either side along ``slice_axis`` as extra channels.

    Args:
        neighbours: slices taken on each side (0 returns the input unchanged).
        slice_axis: spatial axis along which slices are taken (2 = the last axis, axial after RAS orientation).
        mode: ``"edge"`` repeats the end slices past the volume's ends; ``"constant"`` uses ``fill``.
        fill: value past the ends when ``mode="constant"``.

    Shapes: ``(C, *spatial)`` -> ``(C * (2 * neighbours + 1), *spatial)``; MetaTensor metadata (affine) is kept.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI's convention)

    def __init__(self, neighbours: int = 1, slice_axis: int = 2, mode: str = "edge", fill: float = 0.0) -> None:
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0, got {neighbours}")
        if mode not in STACK_MODES:
            raise ValueError(f"mode must be one of {STACK_MODES}, got {mode!r}")
        self.neighbours = int(neighbours)
        self.slice_axis = int(slice_axis)
        self.mode = mode
        self.fill = float(fill)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if self.neighbours == 0:
            return img
        data = convert_to_tensor(img, track_meta=False)
        if not 0 <= self.slice_axis < data.ndim - 1:
            raise ValueError(f"slice_axis {self.slice_axis} is not a spatial axis of an image of shape {data.shape}")
        dim = self.slice_axis + 1  # tensor dimension: spatial axis after the channel axis
        depth = data.shape[dim]
        index = torch.arange(depth, device=data.device)
        blocks = []
        for offset in range(-self.neighbours, self.neighbours + 1):
            shifted = index + offset
            block = data.index_select(dim, shifted.clamp(0, depth - 1))
            if self.mode == "constant":
                outside = (shifted < 0) | (shifted >= depth)
                shape = [1] * data.ndim
                shape[dim] = depth
                block = block.masked_fill(outside.view(shape), self.fill)
            blocks.append(block)
        # (offsets, C, *spatial) -> (C, offsets, *spatial) -> (C * offsets, *spatial): channel-major order
        stacked = torch.stack(blocks, dim=1).reshape(data.shape[0] * len(blocks), *data.shape[1:])
        out, *_ = convert_to_dst_type(stacked, img)
        return out


class StackSliceNeighboursd(MapTransform):
    """Dictionary twin of :class:`StackSliceNeighbours` for the entries named by ``keys`` (the image only)."""

    backend = StackSliceNeighbours.backend

    def __init__(
        self,
        keys: KeysCollection,
        neighbours: int = 1,
        slice_axis: int = 2,
        mode: str = "edge",
        fill: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stacker = StackSliceNeighbours(neighbours=neighbours, slice_axis=slice_axis, mode=mode, fill=fill)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.stacker(d[key])
        return d
