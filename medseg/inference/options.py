"""How to segment, configured once: :class:`SegmentOptions`, and what to write: the output formats
(:func:`parse_formats`). Light on purpose (no torch): the command line reads it to build its help.

One frozen object holds every choice a segmentation run makes (bundle, weights, device, TTA, postprocessing,
geometry repair, inversion, precision, progress, bundle-config overrides). The CLI builds it from its arguments
(:meth:`SegmentOptions.from_args`), the Python API from keyword arguments; :class:`medseg.inference.Segmenter` takes
it whole, and the options that decide a mask (:meth:`SegmentOptions.recorded`) go into every ``case.json``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from medseg.errors import InputError, MedsegError

Precision = Literal["fp32", "bf16", "auto"]  # what a caller asks for (medseg.networks.factory: what runs)
PRECISIONS: tuple[str, ...] = get_args(Precision)
DEFAULT_MIN_COMPONENT_ML = 0.1  # components smaller than this (ml) are specks (medseg.inference.postprocess)
Inversion = Literal["slabs", "nearest", "invertd"]
INVERSIONS: tuple[str, ...] = get_args(Inversion)
Preprocessing = Literal["streamed", "chain"]
PREPROCESSINGS: tuple[str, ...] = get_args(Preprocessing)


@dataclass(frozen=True)
class SegmentOptions:
    """Every setting of a segmentation run (immutable; make a changed copy with :func:`dataclasses.replace`).

    Attributes:
        bundle: bundle folder; ``None``: the default bundle (:func:`medseg.inference.bundle.resolve_bundle`).
        model_file: weights to load; ``None``: the bundle's ``models/model.pt`` (or its config's ``ckpt_path``).
            The model config beside them (:mod:`medseg.model_spec`) sets the spacing, labels and network.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        tta: average the logits over mirrored copies (never the left-right axis).
        postprocess: per organ, remove components below ``min_component_ml`` and keep the largest component.
        min_component_ml: see ``postprocess``.
        fix_geometry: let the reader repair uneven slices, tilt and header disagreements instead of refusing.
        inversion: ``"slabs"`` (default, bounded memory), ``"nearest"`` or ``"invertd"``
            (see :mod:`medseg.inference.segmenter`).
        precision: ``"fp32"`` (default, exact), ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it, else
            fp32; :mod:`medseg.networks.factory`).
        preprocessing: ``"streamed"`` (default): the chain's orientation and resampling as one slab-wise pass from
            the scan's stored voxels (:func:`medseg.inference.model_grid.streamed_scan_chain`; float32, no
            full-resolution float copy); ``"chain"``: the bundle's chain transform by transform (MONAI's float64
            ``Spacingd``), the reference. ``inversion="invertd"`` always uses the chain (it inverts its trace).
        progress: show the sliding-window progress bar.
        overrides: bundle config values to override, as ``monai.bundle run`` takes them (``{"sw_overlap": 0.5}``);
            model keys given here replace the model config's (they must match the training run's).

    Raises:
        MedsegError: an unknown inversion or preprocessing, or a negative component size (the precision is
            checked against the device when the segmenter loads).
    """

    bundle: Path | None = None
    model_file: Path | None = None
    device: str = "auto"
    tta: bool = False
    postprocess: bool = True
    min_component_ml: float = DEFAULT_MIN_COMPONENT_ML
    fix_geometry: bool = False
    inversion: Inversion = "slabs"
    precision: Precision = "fp32"
    preprocessing: Preprocessing = "streamed"
    progress: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("bundle", "model_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(os.fspath(value)).expanduser())
        object.__setattr__(self, "device", str(self.device))
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides or {})))
        if self.inversion not in INVERSIONS:
            raise MedsegError(None, f"inversion must be one of {', '.join(INVERSIONS)}, got {self.inversion!r}")
        if self.preprocessing not in PREPROCESSINGS:
            raise MedsegError(
                None, f"preprocessing must be one of {', '.join(PREPROCESSINGS)}, got {self.preprocessing!r}"
            )
        minimum = float(self.min_component_ml)
        if not math.isfinite(minimum) or minimum < 0:
            raise MedsegError(None, f"min_component_ml must be a number >= 0, got {self.min_component_ml!r}")
        object.__setattr__(self, "min_component_ml", minimum)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SegmentOptions:
        """The options of a parsed ``medseg segment`` command line (attributes it lacks keep their defaults;
        ``--model`` is ``model_file``)."""
        values = {spec.name: getattr(args, spec.name) for spec in fields(cls) if hasattr(args, spec.name)}
        if getattr(args, "model", None) is not None:
            values["model_file"] = args.model
        return cls(**values)

    def recorded(self) -> dict[str, Any]:
        """The options that decide the mask, as ``case.json`` records them (a case made with other values is
        redone on resume). The device and progress bars do not change a mask; the bundle and weights are recorded
        by content (the segmenter's ``config_sha256`` and ``model_sha256``), not by path."""
        return {
            "tta": self.tta,
            "postprocess": self.postprocess,
            "min_component_ml": self.min_component_ml if self.postprocess else None,
            "fix_geometry": self.fix_geometry,
            "inversion": self.inversion,
            "precision": self.precision,
            "preprocessing": self.preprocessing,
        }


FORMATS: tuple[str, ...] = ("nifti", "seg.nrrd", "ctbl", "dicom-seg", "rtstruct", "png")
DICOM_FORMATS = frozenset({"dicom-seg", "rtstruct"})


def parse_formats(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Formats from a comma list (``"nifti,seg.nrrd"``) or a sequence; ``None``/``"all"``: every format (DICOM
    ones apply to DICOM input only). Order follows :data:`FORMATS`.

    Raises:
        InputError: an unknown format name, or an empty list.
    """
    if text is None:
        return FORMATS
    items = [item.strip().lower() for item in (text.split(",") if isinstance(text, str) else text)]
    items = [item for item in items if item]
    if items == ["all"]:
        return FORMATS
    unknown = sorted(set(items) - set(FORMATS))
    if unknown:
        raise InputError(None, f"unknown output format(s) {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    if not items:
        raise InputError(None, "--formats lists no format")
    return tuple(fmt for fmt in FORMATS if fmt in items)


def means_all(text: str | Sequence[str] | None) -> bool:
    """True when ``text`` asks for every format where it applies (``None`` or ``"all"``): the DICOM formats are
    then expected of DICOM input only. A list naming formats asks for each of them, whatever the input."""
    if text is None:
        return True
    items = [item.strip().lower() for item in (text.split(",") if isinstance(text, str) else text)]
    return [item for item in items if item] == ["all"]
