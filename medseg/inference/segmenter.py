"""Load a bundle once, segment many scans: :class:`Segmenter`.

What runs is the bundle's own ``configs/inference.json``, parsed with MONAI's ``ConfigParser``: its
``preprocessing`` (the one transform chain: load, channel first, RAS, target spacing, body crop, HU window, mirror
padding up to the window), its ``inferer`` (sliding window, Gaussian blending) and its ``network_def``. What defines
the model (spacing, labels, HU window, network options...) comes from the model config beside the weights
(``model_config.json`` or the run's ``run_config.json``, :func:`medseg.training.model_config.find_model_config`),
never from the dataset. The ``image_reader`` key is overridden with :class:`medseg.io.monai_reader.MedsegReader`,
so DICOM folders, series choice and the geometry guard work and the scan is read once. The bundle's postprocessing
(``Invertd`` of the argmax, or of every class's probabilities at full resolution) is replaced by
:func:`medseg.inference.inversion.labels_on_grid`, which resamples the probabilities slab by slab in bounded memory
and takes the argmax; ``inversion="invertd"`` runs MONAI's ``Invertd`` of the probabilities instead (reference,
small scans) and ``inversion="nearest"`` takes the argmax on the model grid and resamples the labels (fastest,
blockier edges). Before either of the first two, the chain's trailing padding (``SpatialPadd`` up to the window,
which lets the sliding window run on scans smaller than it) is undone with ``Invertd``, so predictions on the
mirrored border never reach the scan.

``precision="bf16"`` (opt-in, :mod:`medseg.inference.precision`) runs the network in channels-last memory order
under bfloat16 autocast where the CPU or GPU has bfloat16 hardware; the logits are float32 again before the
window blending, so everything after the network is the same float32 code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, InvertibleTransform, Padd
from monai.utils import TraceKeys
from torch import nn

from medseg.errors import InputError, MedsegError
from medseg.inference.bundle import (
    DEFAULT_BUNDLE,
    INFERENCE_CONFIG,
    METADATA,
    MODEL_FILE,
    inference_config_files,
    label_names_from_metadata,
    load_weights,
    missing_model_message,
    read_metadata,
    resolve_bundle,
)
from medseg.inference.inversion import labels_on_grid
from medseg.inference.model_grid import streamed_preprocessing
from medseg.inference.postprocess import DEFAULT_MIN_COMPONENT_ML, clean_label_map
from medseg.inference.precision import Precision, PrecisionPredictor, check_precision, prepare_network
from medseg.io.geometry import ras_affine
from medseg.io.monai_reader import MedsegReader, unwrap_medseg_error
from medseg.io.readers import Scan
from medseg.io.writers.labels import LabelInfo, label_table
from medseg.networks.tta import FlipEnsemble
from medseg.reporting.timing import StageClock
from medseg.training.model_config import MODEL_KEYS, find_model_config, load_model_config, read_model_config
from medseg.training.options import resolve_device

logger = logging.getLogger(__name__)

Inversion = Literal["slabs", "nearest", "invertd"]
INVERSIONS: tuple[str, ...] = ("slabs", "nearest", "invertd")


def _sha256_of(files: Sequence[Path], overrides: Mapping[str, Any] | None) -> str:
    """One digest of the config files' bytes (those that exist) and the overrides: what the transforms, inferer and
    network are made from."""
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(dict(overrides or {}), sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _trailing_padding(preprocessing: Compose) -> Compose | None:
    """The padding transforms (``SpatialPadd``, ``BorderPadd``...) after the chain's last other invertible
    transform: the padding up to the inferer's window, to be undone on the network's output."""
    pads: list[Padd] = []
    for transform in reversed(preprocessing.flatten().transforms):
        if isinstance(transform, Padd):
            pads.append(transform)
        elif isinstance(transform, InvertibleTransform):
            break
    return Compose(pads[::-1]) if pads else None


class _ScanKeepingReader(MedsegReader):
    """:class:`MedsegReader` that also hands the :class:`Scan` it read (exact SimpleITK geometry, the DICOM
    series) to the segmenter, so the scan is read once for the network and the output files alike."""

    def __init__(self, fix_geometry: bool = False) -> None:
        super().__init__(fix_geometry=fix_geometry)
        self.last_scan: Scan | None = None
        self.last_seconds = 0.0

    def read(self, data: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = super().read(data, **kwargs)
        self.last_seconds = time.perf_counter() - start
        self.last_scan = result if isinstance(result, Scan) else None
        return result

    def take_scan(self) -> tuple[Scan, float]:
        scan, self.last_scan = self.last_scan, None
        if scan is None:
            raise RuntimeError("the bundle's preprocessing did not read the scan through image_reader")
        return scan, self.last_seconds


@dataclass
class Segmentation:
    """One segmented scan.

    Attributes:
        scan: the scan as read (SimpleITK image in HU, exact geometry, chosen DICOM series, reader warnings).
        labels: uint8 label map on exactly the scan's grid (same size, spacing, origin, direction).
        model_shape: spatial shape (x, y, z) the network saw (after resampling, body crop and padding up to the
            window).
        removed_voxels: voxels postprocessing removed, per label value.
        seconds: wall seconds per stage so far on the clock passed to :meth:`Segmenter.segment` (read,
            preprocess, inference, invert, postprocess).
    """

    scan: Scan
    labels: sitk.Image
    model_shape: tuple[int, ...]
    removed_voxels: dict[int, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A bundle's network, transforms and inferer, loaded once; :meth:`segment` predicts one scan.

    Args:
        bundle: bundle folder (see :func:`medseg.inference.bundle.resolve_bundle`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        tta: average the logits over mirrored copies (:class:`medseg.networks.tta.FlipEnsemble`; never the
            left-right axis, which would swap lateralised organs).
        postprocess: per organ, remove components below ``min_component_ml`` and keep the largest component.
        fix_geometry: let the reader repair uneven slices, tilt and header disagreements instead of refusing.
        inversion: ``"slabs"`` (default, bounded memory), ``"nearest"`` or ``"invertd"`` (see the module notes).
        model_file: weights to load; default ``models/model.pt`` in the bundle (or the config's ``ckpt_path``).
            Its model config (``model_config.json`` or ``run_config.json`` beside it or in the folder above) sets
            the spacing, labels and network options.
        overrides: config values to override, as ``monai.bundle run`` takes them (``{"sw_overlap": 0.5}``);
            applied after the model config, so network options given here must match the training run's.
        progress: show the sliding-window progress bar.
        min_component_ml: see ``postprocess``.
        precision: ``"fp32"`` (default, exact) or ``"bf16"`` (channels-last + bfloat16 autocast, about 2x faster
            on CPUs with ``avx512_bf16``/``amx_bf16``; a few boundary voxels differ), see
            :mod:`medseg.inference.precision`.

    Raises:
        MedsegError: the bundle, its metadata, its weights or their model config are missing or do not fit together,
            or ``precision`` is unknown or not supported by the device.
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] = DEFAULT_BUNDLE,
        device: str | torch.device = "auto",
        tta: bool = False,
        postprocess: bool = True,
        fix_geometry: bool = False,
        inversion: Inversion = "slabs",
        model_file: str | os.PathLike[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        progress: bool = False,
        min_component_ml: float = DEFAULT_MIN_COMPONENT_ML,
        precision: Precision = "fp32",
    ) -> None:
        if inversion not in INVERSIONS:
            raise MedsegError(None, f"inversion must be one of {', '.join(INVERSIONS)}, got {inversion!r}")
        self.bundle_dir = resolve_bundle(bundle)
        self.device = resolve_device(device)
        self.precision: Precision = check_precision(precision, self.device)
        self.tta = tta
        self.postprocess = postprocess
        self.fix_geometry = fix_geometry
        self.inversion: Inversion = inversion
        self.min_component_ml = float(min_component_ml)

        self._reader = _ScanKeepingReader(fix_geometry=fix_geometry)
        config_files = inference_config_files(self.bundle_dir)
        parser = ConfigParser()
        parser.read_config([str(path) for path in config_files])
        parser["bundle_root"] = str(self.bundle_dir)
        if "device" in parser:
            parser["device"] = str(self.device)
        if "tta" in parser:
            parser["tta"] = tta
        for key, value in (overrides or {}).items():
            parser[key] = value
        if model_file is None:
            model_file = parser.get_parsed_content("ckpt_path") if "ckpt_path" in parser else None
        self.model_file = Path(model_file) if model_file else self.bundle_dir / MODEL_FILE
        if not self.model_file.is_file():  # before its model config: say how to get weights
            raise MedsegError(self.model_file, missing_model_message(self.model_file, self.bundle_dir))
        if "ckpt_path" in parser:
            parser["ckpt_path"] = str(self.model_file)  # the config's own model_config entry reads the same file
        self.model_config_file = self._apply_model_config(parser, overrides)
        self.config_sha256 = _sha256_of(
            [*config_files, self.bundle_dir / METADATA, *([self.model_config_file] if self.model_config_file else [])],
            overrides,
        )
        if "image_reader" not in parser:
            raise InputError(self.bundle_dir / INFERENCE_CONFIG, "has no 'image_reader' key to point at MedsegReader")
        parser["image_reader"] = self._reader
        self.config = parser
        self.label_names: dict[int, str] = self._label_names()
        self.label_table: dict[int, LabelInfo] = label_table(self.label_names)
        self.preprocessing: Compose = streamed_preprocessing(self._parsed("preprocessing"), inversion != "invertd")
        self._padding = _trailing_padding(self.preprocessing)
        self.inferer: Callable[..., Any] = self._parsed("inferer")
        if hasattr(self.inferer, "progress"):
            self.inferer.progress = progress
        network: nn.Module = self._parsed("network_def")
        self.model_sha256 = load_weights(network, self.model_file, self.bundle_dir)
        # In place: the config's inference_network wraps this same object.
        self.network = prepare_network(network.to(self.device).eval(), self.precision, self._spatial_dims())
        self._predictor: nn.Module = self._inference_network()
        if self.precision != "fp32":
            self._predictor = PrecisionPredictor(self._predictor, self.device, self.precision).eval()

    def _apply_model_config(self, parser: ConfigParser, overrides: Mapping[str, Any] | None) -> Path | None:
        """Set the :data:`~medseg.training.model_config.MODEL_KEYS` of the model config beside the weights as
        overrides (the caller's ``overrides`` still win); return the file, or ``None`` for a bundle that defines
        its model in its configs and has no ``model_config`` entry.

        Raises:
            MedsegError: no model config beside the weights of a bundle that needs one, or an invalid one.
        """
        path = find_model_config(self.model_file)
        if path is None:
            if "model_config" in parser:
                load_model_config(self.model_file)  # the bundle needs one: raises, saying where it looked
            return None
        model_config = read_model_config(path)
        for key in MODEL_KEYS:
            if key in model_config and key not in (overrides or {}):
                parser[key] = model_config[key]
        return path

    def _label_names(self) -> dict[int, str]:
        """``{label value: organ name}`` without background: the model config's ``labels`` (what the network was
        trained to predict), else the bundle metadata's channel definition."""
        if self.model_config_file is not None and "labels" in self.config:
            labels = self.config.get_parsed_content("labels")
            return {int(index): str(name) for name, index in labels.items() if int(index) > 0}
        return label_names_from_metadata(read_metadata(self.bundle_dir), self.bundle_dir / METADATA)

    def _inference_network(self) -> nn.Module:
        """The bundle's ``inference_network`` (the network, wrapped for TTA when ``tta`` is set), else the same
        built here: spatial axis 0 is left-right after the chain's ``Orientationd("RAS")``, and mirroring it would
        swap the RightParotid / LeftParotid predictions, so only the other axes are mirrored."""
        if "inference_network" in self.config:
            predictor: nn.Module = self.config.get_parsed_content("inference_network")
            return predictor.to(self.device).eval()
        if not self.tta:
            return self.network
        return FlipEnsemble(self.network, spatial_axes=range(1, self._spatial_dims())).eval()

    def _spatial_dims(self) -> int:
        return int(self.config.get_parsed_content("spatial_dims")) if "spatial_dims" in self.config else 3

    def _parsed(self, key: str) -> Any:
        if key not in self.config:
            raise InputError(self.bundle_dir / INFERENCE_CONFIG, f"has no {key!r} entry")
        return self.config.get_parsed_content(key)

    def settings(self) -> dict[str, Any]:
        """What decides the output for a given scan (config and weights by content, not by path): a case made with
        other settings is redone on resume."""
        return {
            "config_sha256": self.config_sha256,
            "model_sha256": self.model_sha256,
            "tta": self.tta,
            "postprocess": self.postprocess,
            "min_component_ml": self.min_component_ml if self.postprocess else None,
            "fix_geometry": self.fix_geometry,
            "inversion": self.inversion,
            "precision": self.precision,
        }

    def segment(self, path: str | os.PathLike[str], clock: StageClock | None = None) -> Segmentation:
        """Segment the scan at ``path`` (image file, DICOM file, series or study folder).

        Stages timed on ``clock`` (a new one if ``None``): ``read``, ``preprocess``, ``inference``, ``invert``,
        ``postprocess``.

        Raises:
            MedsegError: the scan cannot be read or its geometry is unsafe (see
                :func:`medseg.io.readers.read_scan`).
        """
        clock = clock or StageClock()
        start = time.perf_counter()
        try:
            data = self.preprocessing({"image": str(path)})
        except Exception as err:
            # MONAI's Compose wraps a transform's exception in "applying transform ...": hand on the reader's
            # MedsegError (file and problem named) rather than the wrapper.
            unwrapped = unwrap_medseg_error(err)
            if unwrapped is err:
                raise
            raise unwrapped from err
        scan, read_seconds = self._reader.take_scan()
        clock.seconds["read"] = clock.seconds.get("read", 0.0) + read_seconds
        clock.seconds["preprocess"] = clock.seconds.get("preprocess", 0.0) + time.perf_counter() - start - read_seconds
        image: MetaTensor = data["image"]
        model_shape = tuple(int(n) for n in image.shape[1:])
        with clock.stage("inference"):
            scores = self._scores(image)
        grid_size = scan.image.GetSize()
        with clock.stage("invert"):
            if self.inversion != "invertd":
                scores, model_affine = self._unpadded(scores, image)
            if self.inversion == "slabs":
                labels = labels_on_grid(scores, model_affine, ras_affine(scan.image), grid_size)
            elif self.inversion == "nearest":
                model_labels = scores.argmax(dim=0, keepdim=True).to(torch.float32)
                del scores
                labels = labels_on_grid(
                    model_labels, model_affine, ras_affine(scan.image), grid_size, interpolation="nearest"
                )
            else:
                labels = self._invertd(scores, data)
        removed: dict[int, int] = {}
        if self.postprocess:
            with clock.stage("postprocess"):
                spacing_zyx = scan.image.GetSpacing()[::-1]
                removed = clean_label_map(labels, self.label_names, spacing_zyx, min_component_ml=self.min_component_ml)
        label_image = sitk.GetImageFromArray(labels)
        label_image.CopyInformation(scan.image)
        return Segmentation(
            scan=scan, labels=label_image, model_shape=model_shape, removed_voxels=removed, seconds=dict(clock.seconds)
        )

    def _scores(self, image: MetaTensor) -> torch.Tensor:
        """Softmax probabilities ``(C, X', Y', Z')`` on the model grid (padded as the chain padded it), float32 on
        the CPU (with ``bf16`` the predictor hands float32 logits to the inferer, :class:`PrecisionPredictor`)."""
        with torch.inference_mode():
            logits = self.inferer(image.as_tensor()[None].to(self.device), self._predictor)
        if isinstance(logits, (tuple, list)):  # deep-supervision networks return the main head first
            logits = logits[0]
        logits = torch.as_tensor(logits)[0].float()
        if logits.shape[0] != len(self.label_names) + 1:
            source = self.model_config_file or self.bundle_dir / METADATA
            raise MedsegError(
                source,
                f"the network predicts {logits.shape[0]} classes but the labels here name {len(self.label_names) + 1}",
            )
        return torch.softmax(logits, dim=0).cpu()

    def _unpadded(self, scores: torch.Tensor, image: MetaTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``scores`` (C, X', Y', Z') without the chain's trailing padding (MONAI ``Invertd`` of those transforms
        alone: a crop), and the affine of the grid they are then on."""
        if self._padding is None:
            return scores, image.affine
        # The size before the first trailing pad: when it is the size now, nothing was padded (a scan at least
        # as large as the window), and the probabilities are used as they are, without a copy.
        first_pad = image.applied_operations[-len(self._padding.transforms)]
        if tuple(int(n) for n in first_pad[TraceKeys.ORIG_SIZE]) == tuple(scores.shape[1:]):
            return scores, image.affine
        data: dict[Hashable, Any] = {"image": image, "pred": MetaTensor(scores)}
        unpadded = Invertd(keys="pred", transform=self._padding, orig_keys="image", nearest_interp=False)(data)["pred"]
        return unpadded.as_tensor(), unpadded.affine

    def _invertd(self, scores: torch.Tensor, data: dict[Hashable, Any]) -> np.ndarray:
        """MONAI's own inversion: ``Invertd`` of every class's probabilities, then the argmax (full memory)."""
        image: MetaTensor = data["image"]
        prediction = MetaTensor(scores, meta=dict(image.meta))  # the meta holds the model grid's affine
        prediction.applied_operations = list(image.applied_operations)
        data = {**data, "pred": prediction}
        inverted = Invertd(keys="pred", transform=self.preprocessing, orig_keys="image", nearest_interp=False)(data)
        labels_xyz = torch.as_tensor(inverted["pred"]).argmax(dim=0).to(torch.uint8)
        return np.ascontiguousarray(labels_xyz.permute(2, 1, 0).numpy())
