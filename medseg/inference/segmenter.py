"""Load a bundle once, segment many scans: :class:`Segmenter`.

One scan's way to its mask, in this order (:meth:`Segmenter.segment`, readable top to bottom; the shape of nnU-Net's
``predict_from_raw_data`` -> ``run_case`` -> ``export_prediction``, with the scan and its properties passed along
explicitly):

1. **read**: :func:`medseg.io.readers.read_scan` returns the :class:`~medseg.io.readers.Scan` (SimpleITK image in HU
   with its exact geometry, the chosen DICOM series, the reader's warnings); the size of the model grid it will be
   resampled to is checked against the limits (:func:`medseg.io.limits.check_resampled_grid`) before anything is
   allocated for it;
2. **preprocess**: the bundle's own transform chain (``preprocessing`` of ``configs/inference.json``: channel
   first, RAS, target spacing, body crop, HU window, mirror padding up to the window) runs on the scan already
   read; the chain's ``LoadImaged`` is not run, so nothing reads files behind the segmenter's back. By default
   (``preprocessing="streamed"``) its channel-first, RAS and spacing steps are one slab-wise pass from the scan's
   stored (int16) voxels onto the model grid (:func:`medseg.inference.model_grid.streamed_scan_chain`: the same
   trilinear samples in float32, no full-resolution float copy), then the rest of the chain;
   ``preprocessing="chain"`` (and ``inversion="invertd"``, which inverts the chain's trace) runs every transform
   on the scan's voxels and RAS affine as a MONAI ``MetaTensor`` (:func:`scan_tensor`);
3. **network**: the bundle's ``inferer`` (sliding window, Gaussian blending) with the network, softmax on the
   model grid;
4. **back to the scan's grid**: :func:`medseg.inference.model_grid.labels_on_grid` resamples the probabilities slab
   by slab in bounded memory and takes the argmax (``inversion="invertd"``: MONAI's ``Invertd`` of the
   probabilities, reference, small scans; ``"nearest"``: argmax on the model grid, labels resampled; fastest,
   blockier edges). Before the first two, the chain's trailing padding (``SpatialPadd`` up to the window) is undone
   with ``Invertd``, so predictions on the mirrored border never reach the scan;
5. **postprocess**: per organ, specks dropped and the largest component kept; the result is a uint8 label map on
   exactly the scan's grid (:class:`Segmentation`), which the writers (:mod:`medseg.inference.outputs`) turn into
   files.

How to segment is set once, in :class:`medseg.inference.options.SegmentOptions`. What defines the model (spacing,
labels, HU window, network options) comes from the model config beside the weights
(:mod:`medseg.model_spec`: ``model_config.json`` or the run's ``run_config.json``), never from the dataset. That file
is untrusted data: it is checked key by key, its values are set into the bundle's (trusted) config as plain values,
and the network is built by a Python call (:meth:`medseg.model_spec.ModelSpec.build_network`), so nothing in a model
folder ever reaches MONAI's config parser as an expression or a component.

The network's path is chosen once, at load, from the device's features
(:func:`medseg.networks.factory.choose_network_path`): on a CPU, fp32 in channels-last order with one window per
thread (exact: the same float32 arithmetic in another order); ``precision="bf16"`` (opt-in, or ``"auto"`` where the
CPU or GPU has bfloat16 hardware) runs it under bfloat16 autocast; the logits are float32 again before the window
blending, so everything after the network is the same float32 code.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    Invertd,
    InvertibleTransform,
    LoadImaged,
    Orientationd,
    Padd,
    Spacingd,
)
from monai.transforms.io.array import switch_endianness
from monai.utils import ImageMetaKey, TraceKeys, convert_to_dst_type
from torch import nn

from medseg.errors import InputError, MedsegError
from medseg.inference.bundle import (
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
from medseg.inference.model_grid import StreamedScanChain, class_argmax, labels_on_grid, streamed_scan_chain
from medseg.inference.options import INVERSIONS, Inversion, SegmentOptions
from medseg.inference.postprocess import clean_label_map
from medseg.io.geometry import ras_affine
from medseg.io.limits import check_resampled_grid
from medseg.io.monai_reader import MedsegReader, unwrap_medseg_error
from medseg.io.readers import Scan, read_scan
from medseg.model_spec import MODEL_KEYS, ModelSpec, find_model_config, model_config_path, read_model_spec
from medseg.networks.factory import PrecisionPredictor, choose_network_path, prepare_network, resolve_device
from medseg.networks.tta import FlipEnsemble
from medseg.reporting.summary import StageClock

if TYPE_CHECKING:
    from medseg.reporting.qa import ExpectedVolume

logger = logging.getLogger(__name__)

__all__ = ["INVERSIONS", "Inversion", "SegmentOptions", "Segmentation", "Segmenter", "scan_tensor"]


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


def _split_loader(chain: Compose, bundle_dir: Path) -> tuple[LoadImaged, Compose]:
    """The chain's first transform, its ``LoadImaged`` (which says how a loaded image looks: dtype, metadata), and
    the rest of the chain, which the segmenter runs on the scan it read itself.

    Raises:
        InputError: the chain does not start with ``LoadImaged``.
    """
    transforms = list(chain.flatten().transforms)
    if not transforms or not isinstance(transforms[0], LoadImaged):
        raise InputError(bundle_dir / INFERENCE_CONFIG, "its 'preprocessing' chain must start with LoadImaged")
    rest = Compose(
        transforms[1:],
        map_items=chain.map_items,
        unpack_items=chain.unpack_items,
        log_stats=chain.log_stats,
        lazy=chain.lazy,
    )
    return transforms[0], rest


def scan_tensor(scan: Scan, loader: LoadImaged | None = None) -> MetaTensor:
    """The scan as MONAI's ``loader`` (``LoadImaged(reader=MedsegReader)``) would load it from its path: the
    (x, y, z) voxels in the loader's dtype (float32 by default) and the metadata of
    :meth:`medseg.io.monai_reader.MedsegReader.get_data` (RAS ``affine`` and ``original_affine``, spatial shape,
    series UID...), without reading the file again."""
    load = (loader or LoadImaged(keys="image", image_only=True))._loader
    array, meta = MedsegReader().get_data(scan)
    array = convert_to_dst_type(array, dst=array, dtype=load.dtype)[0]
    meta = switch_endianness(meta, "<")
    meta[ImageMetaKey.FILENAME_OR_OBJ] = str(scan.path)
    image = MetaTensor.ensure_torch_and_prune_meta(array, meta, load.simple_keys, pattern=load.pattern, sep=load.sep)
    if load.ensure_channel_first:
        image = EnsureChannelFirst()(image, meta_dict=meta)
    return image


def _chain_axes(scan: Scan, chain: Compose) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The scan's size and spacing in the axis order the chain resamples in: RAS after an ``Orientationd``
    (axes permuted as nibabel's ``io_orientation`` of the affine permutes them), else the scan's own."""
    size = tuple(int(n) for n in scan.image.GetSize())
    spacing = tuple(float(s) for s in scan.image.GetSpacing())
    if not any(isinstance(t, Orientationd) for t in chain.flatten().transforms):
        return size, spacing
    order = [int(axis) for axis in nib.orientations.io_orientation(scan.affine)[:, 0]]
    ras_size, ras_spacing = [0] * len(size), [0.0] * len(size)
    for axis, target in enumerate(order):
        ras_size[target], ras_spacing[target] = size[axis], spacing[axis]
    return tuple(ras_size), tuple(ras_spacing)


def _target_spacing(chain: Compose, dims: int) -> list[float | None]:
    """The spacing the chain's ``Spacingd`` resamples to (``None`` per axis it keeps; all ``None`` without one)."""
    for transform in chain.flatten().transforms:
        if isinstance(transform, Spacingd):
            pixdim = np.atleast_1d(np.asarray(transform.spacing_transform.pixdim, dtype=float))
            values = [float(p) for p in pixdim[:dims]]
            values += values[-1:] * (dims - len(values))  # MONAI pads a short pixdim with its last value
            return [value if np.isfinite(value) and value > 0 else None for value in values]
    return [None] * dims


def _release_free_heap() -> None:
    """Hand the heap memory freed so far back to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    The network's threads and the inversion leave freed blocks in glibc's per-thread arenas, which stay resident
    under the label map and the writers that follow: on the 512 x 512 x 1000 CT about 100-150 MiB of the peak.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return
    trim(0)


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
    """A bundle's transforms and inferer and the model's network, loaded once; :meth:`segment` predicts one scan.

    Args:
        options: how to segment (:class:`SegmentOptions`); or, for short, the bundle folder, with the other
            options as keyword arguments (``Segmenter("bundles/ct_unet", device="cpu", tta=True)``).
        **settings: :class:`SegmentOptions` fields, when ``options`` is not a :class:`SegmentOptions`.

    Raises:
        MedsegError: the bundle, its metadata, its weights or their model config are missing, invalid or do not fit
            together, or the precision is not supported by the device.
    """

    def __init__(self, options: SegmentOptions | str | os.PathLike[str] | None = None, **settings: Any) -> None:
        if not isinstance(options, SegmentOptions):
            options = SegmentOptions(bundle=None if options is None else Path(options), **settings)
        elif settings:
            raise TypeError("pass SegmentOptions or keyword settings, not both")
        self.options = options
        self.bundle_dir = resolve_bundle() if options.bundle is None else resolve_bundle(options.bundle)
        self.device = resolve_device(options.device)

        config_files = inference_config_files(self.bundle_dir)
        parser = ConfigParser()  # the bundle's own configs: trusted
        parser.read_config([str(path) for path in config_files])
        parser["bundle_root"] = str(self.bundle_dir)
        model_overrides = {key: value for key, value in options.overrides.items() if key in MODEL_KEYS}
        for key, value in options.overrides.items():
            if key not in MODEL_KEYS:
                parser[key] = value
        model_file = options.model_file
        if model_file is None and "ckpt_path" in parser:
            model_file = Path(parser.get_parsed_content("ckpt_path"))
        self.model_file = model_file if model_file is not None else self.bundle_dir / MODEL_FILE
        if not self.model_file.is_file():  # before its model config: say how to get weights
            raise MedsegError(self.model_file, missing_model_message(self.model_file, self.bundle_dir))
        self.model_config_file = find_model_config(self.model_file)
        if self.model_config_file is None and "model_config" in parser:
            model_config_path(self.model_file)  # the bundle needs one: raises, saying where it looked
        self.model_spec = self._model_spec(model_overrides)
        # The model keys: the model config's checked plain values, else (a bundle that defines its model in its
        # own configs) the caller's overrides.
        model_values = self.model_spec.as_config() if self.model_spec is not None else model_overrides
        for key, value in model_values.items():
            parser[key] = value
        self.config_sha256 = _sha256_of(
            [*config_files, self.bundle_dir / METADATA, *([self.model_config_file] if self.model_config_file else [])],
            options.overrides,
        )
        self.config = parser
        self.label_names: dict[int, str] = self._label_names()
        self.loader, self.preprocessing = _split_loader(self._parsed("preprocessing"), self.bundle_dir)
        self._padding = _trailing_padding(self.preprocessing)
        self._streamed: StreamedScanChain | None = None
        if options.preprocessing == "streamed" and options.inversion != "invertd":
            self._streamed = streamed_scan_chain(self.preprocessing, self.loader._loader.dtype)
        self.inferer: Callable[..., Any] = self._parsed("inferer")
        if hasattr(self.inferer, "progress"):
            self.inferer.progress = options.progress
        # How the network runs here: precision, memory order, window batch (the caller's sw_batch_size stands).
        self.network_path = choose_network_path(
            options.precision,
            self.device,
            self._spatial_dims(),
            bundle_sw_batch_size=getattr(self.inferer, "sw_batch_size", None),
            sw_batch_size_fixed="sw_batch_size" in options.overrides or "inferer#sw_batch_size" in options.overrides,
        )
        self.precision = self.network_path.precision
        if self.network_path.sw_batch_size is not None:
            self.inferer.sw_batch_size = self.network_path.sw_batch_size  # type: ignore[attr-defined]
        logger.info("network path: %s", self.network_path.why)
        network = self.model_spec.build_network() if self.model_spec is not None else self._parsed("network_def")
        self.model_sha256 = load_weights(network, self.model_file, self.bundle_dir)
        channels_last = self.network_path.channels_last
        self.network = prepare_network(
            network.to(self.device).eval(), self.precision, self._spatial_dims(), channels_last=channels_last
        )
        self._predictor: nn.Module = self.network
        if options.tta:
            # Spatial axis 0 is left-right after the chain's Orientationd("RAS"): mirroring it would swap the
            # RightParotid / LeftParotid predictions, so only the other axes are mirrored.
            self._predictor = FlipEnsemble(self.network, spatial_axes=range(1, self._spatial_dims())).eval()
        if self.precision != "fp32" or channels_last:
            self._predictor = PrecisionPredictor(self._predictor, self.device, self.precision, channels_last).eval()

    # The options, as attributes of the segmenter.
    @property
    def tta(self) -> bool:
        return self.options.tta

    @property
    def postprocess(self) -> bool:
        return self.options.postprocess

    @property
    def fix_geometry(self) -> bool:
        return self.options.fix_geometry

    @property
    def inversion(self) -> Inversion:
        return self.options.inversion

    @property
    def min_component_ml(self) -> float:
        return self.options.min_component_ml

    @property
    def expected_volumes(self) -> dict[str, ExpectedVolume]:
        """Reference volume quartiles of the model's organs, for the QA flags (:mod:`medseg.reporting.qa`)."""
        if self.model_spec is not None:
            return self.model_spec.expected_volumes()
        from medseg.reporting.qa import OPENKBP_VOLUMES

        return {name: OPENKBP_VOLUMES[name] for name in self.label_names.values() if name in OPENKBP_VOLUMES}

    def _model_spec(self, model_overrides: Mapping[str, Any]) -> ModelSpec | None:
        """The checked model config beside the weights, with the caller's model-key overrides (checked too);
        ``None`` for a bundle that defines its model in its own configs and has no model config."""
        if self.model_config_file is None:
            return None
        spec = read_model_spec(self.model_config_file)
        if not model_overrides:
            return spec
        return ModelSpec.from_config({**spec.as_config(), **model_overrides}, self.model_config_file)

    def _label_names(self) -> dict[int, str]:
        """``{label value: organ name}`` without background: the model config's labels (what the network was
        trained to predict), else the bundle metadata's channel definition."""
        if self.model_spec is not None:
            return self.model_spec.label_names()
        return label_names_from_metadata(read_metadata(self.bundle_dir), self.bundle_dir / METADATA)

    def _spatial_dims(self) -> int:
        if self.model_spec is not None:
            return self.model_spec.spatial_dims
        return int(self.config.get_parsed_content("spatial_dims")) if "spatial_dims" in self.config else 3

    def _parsed(self, key: str) -> Any:
        if key not in self.config:
            raise InputError(self.bundle_dir / INFERENCE_CONFIG, f"has no {key!r} entry")
        return self.config.get_parsed_content(key)

    def settings(self) -> dict[str, Any]:
        """What decides the output for a given scan (config and weights by content, not by path, and
        :meth:`SegmentOptions.recorded`): recorded in ``case.json``; a case made with other settings is redone on
        resume."""
        # The precision that ran ("auto" resolved): fp32 and bf16 masks differ, whatever was asked for.
        recorded = {**self.options.recorded(), "precision": self.precision}
        return {"config_sha256": self.config_sha256, "model_sha256": self.model_sha256, **recorded}

    def segment(self, path: str | os.PathLike[str], clock: StageClock | None = None) -> Segmentation:
        """Read the scan at ``path`` (image file, DICOM file, series or study folder) and segment it.

        Stages timed on ``clock`` (a new one if ``None``): ``read``, then those of :meth:`segment_scan`.

        Raises:
            MedsegError: the scan cannot be read, its geometry is unsafe (see :func:`medseg.io.readers.read_scan`),
                or its model grid would exceed the limits.
        """
        clock = clock or StageClock()
        with clock.stage("read"):
            scan = read_scan(path, fix_geometry=self.options.fix_geometry)
        return self.segment_scan(scan, clock)

    def segment_scan(self, scan: Scan, clock: StageClock | None = None) -> Segmentation:
        """Segment a scan already read: its grid checked, the bundle's chain, the network, back to the scan's grid,
        postprocessing. Stages timed on ``clock``: ``preprocess``, ``inference``, ``invert``, ``postprocess``.

        Raises:
            MedsegError: the scan's grid resampled to the model spacing would exceed the limits
                (:func:`medseg.io.limits.check_resampled_grid`), or a transform of the chain refuses the scan.
        """
        clock = clock or StageClock()
        self._check_model_grid(scan)
        with clock.stage("preprocess"):
            data = self._preprocess(scan)
        image: MetaTensor = data["image"]
        model_shape = tuple(int(n) for n in image.shape[1:])
        with clock.stage("inference"):
            scores = self._scores(image)
        with clock.stage("invert"):
            labels = self._on_scan_grid(scores, data, scan)
        # The model grid's image and probabilities are done with: not held through postprocessing and the copy
        # into the label image (150 MiB of probabilities for a 512 x 512 x 1000 CT).
        del scores, data, image
        _release_free_heap()
        removed: dict[int, int] = {}
        if self.options.postprocess:
            with clock.stage("postprocess"):
                spacing_zyx = scan.image.GetSpacing()[::-1]
                removed = clean_label_map(
                    labels, self.label_names, spacing_zyx, min_component_ml=self.options.min_component_ml
                )
            _release_free_heap()
        label_image = sitk.GetImageFromArray(labels)
        label_image.CopyInformation(scan.image)
        return Segmentation(
            scan=scan, labels=label_image, model_shape=model_shape, removed_voxels=removed, seconds=dict(clock.seconds)
        )

    def _check_model_grid(self, scan: Scan) -> None:
        """Refuse, before preprocessing allocates it, a scan whose grid resampled to the chain's target spacing
        would be too large (a NIfTI with 500 mm voxels, say)."""
        shape, spacing = _chain_axes(scan, self.preprocessing)
        check_resampled_grid(scan.path, shape, spacing, _target_spacing(self.preprocessing, len(shape)))

    def _preprocess(self, scan: Scan) -> dict[Hashable, Any]:
        """The bundle's chain (without its loader) on the scan: streamed from its stored voxels onto the model grid
        where the chain allows it, else transform by transform on its voxels as float32."""
        try:
            if self._streamed is not None:
                return self._streamed(scan, self._image_keys()[0])
            return self.preprocessing({key: scan_tensor(scan, self.loader) for key in self._image_keys()})
        except Exception as err:
            # MONAI's Compose wraps a transform's exception in "applying transform ...": hand on a MedsegError
            # (file and problem named) rather than the wrapper.
            unwrapped = unwrap_medseg_error(err, scan.path)
            if unwrapped is err:
                raise
            raise unwrapped from err

    def _image_keys(self) -> list[Hashable]:
        """The image key of the chain's loader (``"image"``); its other keys (``"label"``) are for training."""
        return [self.loader.keys[0]]

    def _on_scan_grid(self, scores: torch.Tensor, data: dict[Hashable, Any], scan: Scan) -> np.ndarray:
        """The label map (z, y, x) on the scan's own grid, from the probabilities on the model grid."""
        image: MetaTensor = data["image"]
        grid_size = scan.image.GetSize()
        if self.options.inversion == "invertd":
            return self._invertd(scores, data)
        scores, model_affine = self._unpadded(scores, image)
        if self.options.inversion == "slabs":
            return labels_on_grid(scores, model_affine, ras_affine(scan.image), grid_size)
        model_labels = class_argmax(scores)[None].to(torch.float32)
        del scores
        return labels_on_grid(model_labels, model_affine, ras_affine(scan.image), grid_size, interpolation="nearest")

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
