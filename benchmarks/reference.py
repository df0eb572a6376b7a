"""The reference side: the bundle's network in a chain built only from stock MONAI, the way the model-zoo
``spleen_ct_segmentation`` bundle's ``inference.json`` does it:

``LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> Spacingd(bilinear) -> ScaleIntensityRanged(clip)
-> EnsureTyped -> SlidingWindowInferer(roi, sw_batch_size 4, overlap 0.5) -> Activationsd(softmax)
-> Invertd(nearest_interp=False) -> AsDiscreted(argmax) -> SaveImaged(float32 .nii.gz, postfix "trans")``

Only what the *model* dictates comes from our bundle: the network and its weights, the target spacing, the HU window
and the window size (a network trained at 4.7 mm on a head-and-neck window must be fed that). The spleen bundle
runs this in an ignite ``SupervisedEvaluator`` over a ``DataLoader``; :class:`ReferencePipeline` runs the same
transforms, collation and decollation in a plain loop so each stage can be timed, with ``num_workers=0`` (worker
processes would hide their memory from the measured process) and fp32 (the spleen bundle's ``amp`` is CUDA-only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import decollate_batch, list_data_collate
from monai.inferers import SlidingWindowInferer
from monai.transforms import (
    Activationsd,
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    LoadImaged,
    Orientationd,
    SaveImaged,
    ScaleIntensityRanged,
    Spacingd,
)
from torch import nn

from benchmarks.harness import start_measuring

SPLEEN_SW_BATCH_SIZE = 4
SPLEEN_OVERLAP = 0.5


def bundle_parser(bundle: str | Path, model_file: str | Path | None = None) -> ConfigParser:
    """The bundle's configuration, parsed lazily: with ``model_file``, the inference configuration
    (``train.json`` + ``inference.json`` overlay) reading the model's settings (spacing, HU window, window size,
    network options) from the ``model_config.json`` beside those weights, as ``medseg segment`` does; without,
    ``train.json`` alone (the training defaults)."""
    from medseg.inference.bundle import BASE_CONFIG, inference_config_files, resolve_bundle

    bundle_dir = resolve_bundle(bundle)
    parser = ConfigParser()
    files = inference_config_files(bundle_dir) if model_file is not None else [bundle_dir / BASE_CONFIG]
    parser.read_config([str(path) for path in files])
    parser["bundle_root"] = str(bundle_dir)
    if model_file is not None:
        parser["ckpt_path"] = str(model_file)
    return parser


def bundle_model_settings(parser: ConfigParser) -> dict[str, Any]:
    """What the model dictates: target spacing (mm, RAS x y z), HU window, window size, number of classes, and the
    bundle's own sliding-window settings (for the record)."""
    from medseg.transforms import hu_window_range

    lower, upper = hu_window_range(parser.get_parsed_content("hu_window"))
    return {
        "spacing": [float(s) for s in parser.get_parsed_content("spacing")],
        "hu_window": [lower, upper],
        "roi_size": [int(n) for n in parser.get_parsed_content("patch_size")],
        "num_classes": int(parser.get_parsed_content("num_classes")),
        "bundle_sw_batch_size": int(parser.get_parsed_content("sw_batch_size")),
        "bundle_sw_overlap": float(parser.get_parsed_content("sw_overlap")),
    }


def bundle_network(parser: ConfigParser, model_file: str | Path) -> nn.Module:
    """The bundle's ``network_def`` with the weights of ``model_file`` (a state dict, or one under ``"model"``),
    in eval mode on the CPU."""
    network: nn.Module = parser.get_parsed_content("network_def", instantiate=True)
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    network.load_state_dict(state)
    return network.eval()


class ReferencePipeline:
    """The stock-MONAI chain of the module docstring around ``network``.

    Args:
        network: maps ``(B, 1, *roi)`` to ``(B, C, *roi)`` logits.
        spacing: target voxel size (mm) along RAS x, y, z.
        hu_window: ``(a_min, a_max)`` of ``ScaleIntensityRanged`` (mapped to 0..1, clipped).
        roi_size: sliding-window size (voxels).
        output_dir: where ``SaveImaged`` writes ``<name>/<name>_trans.nii.gz``.
    """

    def __init__(
        self,
        network: nn.Module,
        spacing: list[float],
        hu_window: list[float],
        roi_size: list[int],
        output_dir: str | Path,
        sw_batch_size: int = SPLEEN_SW_BATCH_SIZE,
        overlap: float = SPLEEN_OVERLAP,
    ) -> None:
        self.network = network
        self.preprocessing = Compose(
            [
                LoadImaged(keys="image"),
                EnsureChannelFirstd(keys="image"),
                Orientationd(keys="image", axcodes="RAS"),
                Spacingd(keys="image", pixdim=spacing, mode="bilinear"),
                ScaleIntensityRanged(
                    keys="image", a_min=hu_window[0], a_max=hu_window[1], b_min=0.0, b_max=1.0, clip=True
                ),
                EnsureTyped(keys="image"),
            ]
        )
        self.inferer = SlidingWindowInferer(roi_size=roi_size, sw_batch_size=sw_batch_size, overlap=overlap)
        self.postprocessing = [
            ("softmax", Activationsd(keys="pred", softmax=True)),
            (
                "invertd",
                Invertd(
                    keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True
                ),
            ),
            ("argmax", AsDiscreted(keys="pred", argmax=True)),
            (
                "save",
                SaveImaged(
                    keys="pred",
                    output_dir=str(output_dir),
                    output_ext=".nii.gz",
                    output_dtype=np.float32,
                    output_postfix="trans",
                    separate_folder=True,
                    print_log=False,
                ),
            ),
        ]

    def __call__(self, image_path: str | Path) -> dict[str, float]:
        """Segment one scan; returns the seconds of each stage."""
        seconds: dict[str, float] = {}
        tick = time.perf_counter()
        batch = list_data_collate([self.preprocessing({"image": str(image_path)})])
        seconds["preprocess"] = time.perf_counter() - tick
        tick = time.perf_counter()
        with torch.no_grad():
            batch["pred"] = self.inferer(batch["image"], self.network)
        seconds["inference"] = time.perf_counter() - tick
        item = decollate_batch(batch)[0]
        for name, transform in self.postprocessing:
            tick = time.perf_counter()
            item = transform(item)
            seconds[name] = time.perf_counter() - tick
        return seconds


def reference_output(output_dir: str | Path, image_path: str | Path) -> Path:
    """Where :class:`ReferencePipeline` saved the mask of ``image_path``."""
    found = sorted(Path(output_dir).rglob("*_trans.nii.gz"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one *_trans.nii.gz for {image_path} under {output_dir}, found {found}")
    return found[0]


def reference_task(
    image: str, output_dir: str, model_file: str, bundle: str, sw_batch_size: int = 4, overlap: float = 0.5
) -> dict[str, Any]:
    """Harness task: set up the reference (network, weights, transforms), then time one scan end to end."""
    tick = time.perf_counter()
    parser = bundle_parser(bundle, model_file)
    settings = bundle_model_settings(parser)
    network = bundle_network(parser, model_file)
    pipeline = ReferencePipeline(
        network,
        settings["spacing"],
        settings["hu_window"],
        settings["roi_size"],
        output_dir,
        sw_batch_size=sw_batch_size,
        overlap=overlap,
    )
    setup_seconds = time.perf_counter() - tick
    start = start_measuring()
    stages = pipeline(image)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "setup_seconds": setup_seconds,
        "stages": stages,
        "mask": str(reference_output(output_dir, image)),
    }
