"""Network efficiency: achieved GFLOP/s of the bundle's network inside medseg's sliding-window loop, against this
CPU's fp32 peak, and the measured effect of each lever.

One fresh process (:func:`network_task`) loads the Segmenter (bundle network + weights), preprocesses one scan with
the bundle's chain (the model-grid volume medseg's inferer sees), measures an SGEMM rate (the practical peak), counts
the FLOPs of one window with ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add; convolutions and
transposed convolutions: elementwise ops such as InstanceNorm and PReLU are not counted) and then times every lever
round-robin for ``repetitions`` rounds (each round starting one lever later), reporting medians.

* ``seconds``: the whole ``SlidingWindowInferer`` call (window extraction, network, Gaussian blending).
* ``network_seconds``: the network calls alone; ``network GFLOP/s = windows x FLOPs per window / network_seconds``,
  and ``loop GFLOP/s`` the same over ``seconds``.
* masks: the argmax of each lever's logits against the current inference's argmax (identical voxel fraction and
  the lowest per-class Dice): a lever is kept only if it is faster and keeps the masks.

Levers: ``no_grad`` instead of ``inference_mode``; ``channels_last_3d``; bf16 autocast (where the CPU has
``avx512_bf16``); TorchScript freeze + ``optimize_for_inference`` (oneDNN weight prepacking, conv fusion);
``torch.compile`` (inductor; compile time reported apart); ``sw_batch_size`` 1/2/8; overlap 0.25; no body crop
(the bundle already crops to the body's bounding box: this row measures what that crop saves). Norm folding: the
bundle's network uses InstanceNorm without affine parameters, whose statistics come from each input, so there is
nothing to fold into the convolutions; the profile row shows what the norms cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.transforms import CropForegroundd, Padd
from torch import nn

from benchmarks.agreement import dice_per_label
from benchmarks.harness import start_measuring
from benchmarks.machine import sgemm_task
from medseg.networks.factory import autocast_context, prepare_network, supports_bf16, to_channels_last

# A lever is kept when it is at least this much faster and its mask matches the current one this closely.
MIN_SPEEDUP = 1.05
MIN_CLASS_DICE = 0.99
MIN_CLASS_VOXELS = 50  # model-grid voxels (about 2.7 mL at 4.7 x 4.7 x 2.5 mm)


class CountingPredictor(nn.Module):
    """Wraps a predictor: counts the windows it is given and the seconds spent in it (``(B, 1, *roi)`` in,
    ``(B, C, *roi)`` float32 out)."""

    def __init__(self, predictor: Callable[[torch.Tensor], torch.Tensor], prepare: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.predictor = predictor
        self.prepare = prepare
        self.windows = 0
        self.seconds = 0.0

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        tick = time.perf_counter()
        output = self.predictor(self.prepare(windows))
        if isinstance(output, (tuple, list)):
            output = output[0]
        output = output.float()
        self.seconds += time.perf_counter() - tick
        self.windows += int(windows.shape[0])
        return output


@dataclass
class Lever:
    """One way of running the sliding window; ``predictor`` maps a window batch to logits."""

    name: str
    description: str
    predictor: Callable[[torch.Tensor], torch.Tensor]
    inferer: SlidingWindowInferer
    volume: torch.Tensor
    grad_mode: Callable[[], AbstractContextManager[Any]] = torch.inference_mode
    prepare: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    autocast: bool = False
    keep: tuple[slice, ...] | None = None  # the scan's voxels in ``volume`` (without the window padding)
    crop: tuple[slice, ...] | None = None  # the region shared with the current volume, in the unpadded ``volume``
    current_crop: tuple[slice, ...] | None = None  # the same region in the current volume
    judged: bool = True  # False for a row that undoes something medseg already does (it shows what that saves)
    runs: list[dict[str, float]] = field(default_factory=list)
    warmup_seconds: float | None = None
    error: str | None = None


def _inferer(roi: list[int], sw_batch_size: int, overlap: float) -> SlidingWindowInferer:
    return SlidingWindowInferer(
        roi_size=roi, sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian", padding_mode="reflect"
    )


def _run(lever: Lever) -> tuple[dict[str, float], torch.Tensor]:
    counter = CountingPredictor(lever.predictor, lever.prepare)
    autocast = autocast_context("cpu", "bf16" if lever.autocast else "fp32")
    tick = time.perf_counter()
    with lever.grad_mode(), autocast:
        logits = lever.inferer(lever.volume, counter)
    seconds = time.perf_counter() - tick
    assert isinstance(logits, torch.Tensor)
    return {"seconds": seconds, "network_seconds": counter.seconds, "windows": float(counter.windows)}, logits


def _mask_check(labels: np.ndarray, current: np.ndarray, classes: int) -> dict[str, float | None]:
    """Identical voxels, the lowest per-class Dice, and the lowest over classes of at least
    :data:`MIN_CLASS_VOXELS` voxels in the current mask (a 5-voxel speck flipping one voxel is not a lost organ)."""
    dice = dice_per_label(labels, current, range(classes))
    counts = np.bincount(current.ravel(), minlength=classes)
    scored = [value for value in dice.values() if value is not None]
    sizable = [value for label, value in dice.items() if value is not None and counts[label] >= MIN_CLASS_VOXELS]
    return {
        "identical_fraction": float(np.mean(labels == current)),
        "min_class_dice": min(scored) if scored else None,
        "min_sizable_class_dice": min(sizable) if sizable else None,
    }


def pad_to_window(volume: torch.Tensor, roi: list[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Mirror-pad ``volume`` (1, 1, X, Y, Z) up to the window where it is smaller, as the Segmenter does, and the
    index of the original voxels in the padded volume."""
    from monai.transforms.croppad.functional import pad_nd

    spatial = volume.shape[2:]
    pads = [((w - n) // 2, w - n - (w - n) // 2) if n < w else (0, 0) for n, w in zip(spatial, roi, strict=True)]
    keep = tuple(slice(low, low + n) for (low, _), n in zip(pads, spatial, strict=True))
    if not any(low or high for low, high in pads):
        return volume, keep
    return torch.as_tensor(pad_nd(volume[0], [(0, 0), *pads], mode="symmetric"))[None], keep


def _model_grid_volumes(
    segmenter: Any, image: str
) -> tuple[torch.Tensor, torch.Tensor, tuple[slice, ...], tuple[slice, ...]]:
    """The bundle chain's model-grid volume of ``image`` (1, 1, X, Y, Z), the same without the body crop, and the
    region they share: its index in the uncropped volume and in the cropped one (the crop's margin may reach past
    the image, where ``CropForegroundd(allow_smaller=True)`` pads)."""
    transforms = list(segmenter.preprocessing.transforms)
    crop_at = next(i for i, t in enumerate(transforms) if isinstance(t, CropForegroundd))
    from medseg.inference.segmenter import scan_tensor
    from medseg.io.readers import read_scan

    data: Any = {"image": scan_tensor(read_scan(image), segmenter.loader)}  # the segmenter's explicit read
    for transform in transforms[:crop_at]:
        data = transform(data)
    uncropped = dict(data)
    cropper: CropForegroundd = transforms[crop_at]
    start, end = cropper.cropper.compute_bounding_box(data["image"])
    spatial = data["image"].shape[1:]
    inner = [(max(int(s), 0), min(int(e), int(n))) for s, e, n in zip(start, end, spatial, strict=True)]
    in_full = tuple(slice(a, b) for a, b in inner)
    in_cropped = tuple(slice(a - int(s), b - int(s)) for (a, b), s in zip(inner, start, strict=True))
    data = cropper(data)
    # The chain's trailing window padding (SpatialPadd, mirrored) is left to pad_to_window, which pads the same way
    # and knows where the scan's voxels are.
    for transform in transforms[crop_at + 1 :]:
        if isinstance(transform, Padd):
            continue
        data = transform(data)
        uncropped = transform(uncropped)
    cropped_volume = torch.as_tensor(data["image"]).float()[None]
    full_volume = torch.as_tensor(uncropped["image"]).float()[None]
    if not torch.equal(full_volume[0, 0][in_full], cropped_volume[0, 0][in_cropped]):
        raise RuntimeError("the body-cropped volume does not match the uncropped one where they overlap")
    return cropped_volume, full_volume, in_full, in_cropped


def _levers(
    segmenter: Any, volume: torch.Tensor, full_volume: torch.Tensor, box: tuple[slice, ...], quick: bool
) -> list[Lever]:
    network: nn.Module = segmenter.network.eval()
    inferer = segmenter.inferer
    roi = [int(n) for n in inferer.roi_size]
    sw_batch, overlap = int(inferer.sw_batch_size), float(inferer.overlap)
    current = _inferer(roi, sw_batch, overlap)
    levers = [
        Lever(
            "current",
            f"plain fp32 (the bundle's settings): eager, contiguous, inference_mode, sw_batch {sw_batch}, "
            f"overlap {overlap}",
            network,
            current,
            volume,
        ),
        Lever("no_grad", "torch.no_grad instead of inference_mode", network, current, volume, grad_mode=torch.no_grad),
    ]
    channels_last = _channels_last_copy(network)
    levers.append(
        Lever(
            "channels_last_3d",
            "model and windows in channels_last_3d",
            channels_last,
            current,
            volume,
            prepare=to_channels_last,
        )
    )
    path = segmenter.network_path  # what medseg runs by default on this machine (fp32 levers only)
    default_batch = path.sw_batch_size or sw_batch
    levers.append(
        Lever(
            "medseg_cpu_default",
            f"medseg's fp32 default here: {path.why.split(': ', 1)[-1].replace('bf16', 'fp32')}",
            channels_last if path.channels_last else network,
            _inferer(roi, default_batch, overlap),
            volume,
            prepare=to_channels_last if path.channels_last else _unchanged,
        )
    )
    if torch.backends.mkldnn.is_available() and supports_bf16("cpu"):
        levers.append(Lever("bf16", "torch.autocast(cpu, bfloat16)", network, current, volume, autocast=True))
        levers.append(
            Lever(
                "channels_last_3d+bf16", "both", channels_last, current, volume, prepare=to_channels_last, autocast=True
            )
        )
    levers.append(_jit_lever(network, roi, sw_batch, current, volume))
    if not quick:
        levers.append(_compile_lever(channels_last, current, volume, to_channels_last))
    for batch in (1, 2, 8):
        if batch != sw_batch:
            levers.append(
                Lever(
                    f"sw_batch_size={batch}",
                    f"sliding-window batch {batch}",
                    network,
                    _inferer(roi, batch, overlap),
                    volume,
                )
            )
    if overlap != 0.25:
        levers.append(Lever("overlap=0.25", "window overlap 0.25", network, _inferer(roi, sw_batch, 0.25), volume))
    levers.append(
        Lever(
            "no_body_crop",
            "whole model grid, no crop to the body's bounding box",
            network,
            current,
            full_volume,
            crop=box,
            judged=False,
        )
    )
    return levers


def _unchanged(windows: torch.Tensor) -> torch.Tensor:
    return windows


def _channels_last_copy(network: nn.Module) -> nn.Module:
    """A copy of ``network`` in channels_last_3d memory order: what ``medseg segment --precision bf16`` runs
    (:func:`medseg.networks.factory.prepare_network`; its weights stay float32)."""
    import copy

    return prepare_network(copy.deepcopy(network), "bf16").eval()


def _jit_lever(
    network: nn.Module, roi: list[int], sw_batch: int, inferer: SlidingWindowInferer, volume: torch.Tensor
) -> Lever:
    lever = Lever(
        "torchscript_frozen", "torch.jit.trace + freeze + optimize_for_inference (oneDNN)", network, inferer, volume
    )
    try:
        with torch.no_grad():
            traced = torch.jit.trace(network, torch.zeros(sw_batch, 1, *roi), check_trace=False)
            lever.predictor = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        lever.grad_mode = torch.no_grad  # TorchScript under inference_mode is fine too; no_grad is its documented use
    except Exception as err:  # report the lever as failed, keep the others
        lever.error = f"{type(err).__name__}: {err}"
    return lever


def _compile_lever(
    network: nn.Module,
    inferer: SlidingWindowInferer,
    volume: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
) -> Lever:
    lever = Lever(
        "torch.compile+channels_last_3d",
        "torch.compile (inductor) of the channels_last_3d model",
        network,
        inferer,
        volume,
        prepare=prepare,
    )
    try:
        lever.predictor = torch.compile(network, dynamic=False)
    except Exception as err:
        lever.error = f"{type(err).__name__}: {err}"
    return lever


def _profile_share(network: nn.Module, roi: list[int], sw_batch: int) -> dict[str, float]:
    """Share of CPU time per operator family in one window batch of the current inference."""
    from torch.profiler import ProfilerActivity, profile

    windows = torch.randn(sw_batch, 1, *roi)
    with torch.inference_mode():
        network(windows)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            network(windows)
    families = {
        "convolution": 0.0,
        "transposed convolution": 0.0,
        "instance norm": 0.0,
        "activation": 0.0,
        "other": 0.0,
    }
    total = 0.0
    for event in prof.key_averages():
        name = event.key
        self_time = float(event.self_cpu_time_total)
        total += self_time
        if "convolution_backward" in name:
            family = "other"
        elif "transpose" in name and "conv" in name:
            family = "transposed convolution"
        elif "conv" in name or "mkldnn_convolution" in name:
            family = "convolution"
        elif "norm" in name or "var_mean" in name:
            family = "instance norm"
        elif "prelu" in name or "relu" in name:
            family = "activation"
        else:
            family = "other"
        families[family] += self_time
    return {family: round(value / total, 3) for family, value in families.items()} if total else families


def network_task(image: str, model_file: str, bundle: str, repetitions: int, quick: bool = False) -> dict[str, Any]:
    """Harness task: the efficiency table of the module docstring for ``image``'s model-grid volume."""
    from torch.utils.flop_counter import FlopCounterMode

    from medseg.inference import Segmenter

    segmenter = Segmenter(bundle, device="cpu", model_file=model_file, progress=False)
    # Every lever against the plain fp32 network with the bundle's window batch; medseg's own CPU default
    # (precision.choose_network_path: channels-last, one window per thread) is the lever "medseg_cpu_default".
    segmenter.network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    inferer: Any = segmenter.inferer  # the bundle's SlidingWindowInferer
    inferer.sw_batch_size = int(segmenter.config.get_parsed_content("sw_batch_size"))
    volume, full_volume, box, box_in_current = _model_grid_volumes(segmenter, image)
    network: nn.Module = segmenter.network.eval()
    roi = [int(n) for n in inferer.roi_size]
    sw_batch = int(inferer.sw_batch_size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, 1, *roi))
    flops_per_window = float(counter.get_total_flops())
    sgemm = sgemm_task()
    volume, keep = pad_to_window(volume, roi)
    full_volume, full_keep = pad_to_window(full_volume, roi)
    levers = _levers(segmenter, volume, full_volume, box, quick)
    for lever in levers:
        lever.keep = full_keep if lever.crop is not None else keep
        if lever.crop is not None:
            lever.current_crop = box_in_current
    start = start_measuring()
    current_labels: np.ndarray | None = None
    masks: dict[str, dict[str, float | None]] = {}
    classes = len(segmenter.label_names) + 1
    for lever in levers:  # warm-up pass: oneDNN primitive caches, TorchScript profiling, torch.compile
        if lever.error:
            continue
        try:
            tick = time.perf_counter()
            _, logits = _run(lever)
            lever.warmup_seconds = time.perf_counter() - tick
        except Exception as err:
            lever.error = f"{type(err).__name__}: {err}"
            continue
        labels = logits[0].argmax(dim=0).to(torch.uint8).numpy()
        if lever.keep is not None:
            labels = labels[lever.keep]
        if lever.crop is not None:
            labels = labels[lever.crop]
        if current_labels is None:
            current_labels = labels
        reference = current_labels if lever.current_crop is None else current_labels[lever.current_crop]
        masks[lever.name] = _mask_check(labels, reference, classes)
    for repetition in range(repetitions):
        # Each round starts one lever later, so no lever always runs first (or right after the biggest one).
        shift = repetition % len(levers)
        for lever in levers[shift:] + levers[:shift]:
            if lever.error is None:
                lever.runs.append(_run(lever)[0])
    rows = _rows(levers, masks, flops_per_window)
    return {
        "seconds": time.perf_counter() - start,
        "model_grid_shape": [s.stop - s.start for s in keep],
        "uncropped_shape": [s.stop - s.start for s in full_keep],
        "roi_size": roi,
        "flops_per_window": flops_per_window,
        "sgemm_gflops": sgemm["gflops_best"],
        "torch_config": sgemm["torch_config"],
        "threads": torch.get_num_threads(),
        "profile_share": _profile_share(network, roi, sw_batch),
        "levers": rows,
    }


def _rows(
    levers: list[Lever], masks: dict[str, dict[str, float | None]], flops_per_window: float
) -> list[dict[str, Any]]:
    rows = []
    current_seconds = None
    for lever in levers:
        row: dict[str, Any] = {"lever": lever.name, "description": lever.description, "judged": lever.judged}
        if lever.error or not lever.runs:
            row["error"] = lever.error or "not run"
            rows.append(row)
            continue
        seconds = statistics.median(run["seconds"] for run in lever.runs)
        network_seconds = statistics.median(run["network_seconds"] for run in lever.runs)
        windows = int(lever.runs[0]["windows"])
        current_seconds = current_seconds or seconds
        mask = masks.get(lever.name, {})
        speedup = current_seconds / seconds
        keeps_masks = (mask.get("min_sizable_class_dice") or 0.0) >= MIN_CLASS_DICE
        row.update(
            {
                "seconds": seconds,
                "seconds_values": [run["seconds"] for run in lever.runs],
                "network_seconds": network_seconds,
                "windows": windows,
                "network_gflops": windows * flops_per_window / network_seconds / 1e9,
                "loop_gflops": windows * flops_per_window / seconds / 1e9,
                "speedup_vs_current": speedup,
                "warmup_seconds": lever.warmup_seconds,
                **mask,
                "wins": (lever.name != "current" and speedup >= MIN_SPEEDUP and keeps_masks) if lever.judged else None,
            }
        )
        rows.append(row)
    return rows
