"""What defines a trained model, in one place: :class:`ModelSpec`, read from the file kept next to its weights.

A checkpoint alone does not say how to use it: the voxel spacing and HU window it was trained on, its labels, the
network options. Training writes them to ``run_config.json`` in the run folder
(:func:`medseg.training.run_dir.write_run_config`); shipping a model copies that file beside ``model.pt`` as
``model_config.json`` (``pipelines/ship_model.py``). Training, evaluation (``evaluate.json``) and inference
(``inference.json``, :class:`medseg.inference.Segmenter`) read these values through this module, found with
:func:`find_model_config`, and never recompute them from the dataset, whose fingerprint may have changed since the
model was trained.

A model folder is **untrusted data**, like a scan: it may come from anyone. Its config is therefore read as data,
never as code: only the keys named here are accepted (:data:`MODEL_KEYS` and :data:`RUN_KEYS`), each with a checked
type and range, so a ``$`` expression, an ``@`` reference or a ``_target_`` component in the file is refused with one
line naming the file and the key before anything could reach MONAI's ``ConfigParser``. Inference builds the network
with a plain Python call (:meth:`ModelSpec.build_network`) from these checked values.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import MedsegError
from medseg.io.files import read_json_object

if TYPE_CHECKING:
    from torch import nn

    from medseg.reporting.qa import ExpectedVolume

# Searched in the checkpoint's folder, then in the folder above it (runs/<run>/checkpoints/model_best.pt ->
# runs/<run>/run_config.json), in this order.
MODEL_CONFIG_NAMES = ("model_config.json", "run_config.json")
# The other keys a run's config may hold: the dataset it was trained on (evaluate.json evaluates on its validation
# split unless told otherwise) and the MONAI reader training used.
RUN_KEYS = ("dataset_name", "image_reader")
# Keys computed from others (filled in when an older run_config.json lacks them, checked when present).
DERIVED_KEYS = ("class_names", "num_classes", "in_channels")

NORMS = ("instance", "batch")
# The MONAI reader training used (recorded, not used by inference, which reads with medseg.io).
IMAGE_READERS = (
    "NibabelReader",
    "ITKReader",
    "PydicomReader",
    "NrrdReader",
    "NumpyReader",
    "PILReader",
    "medseg.io.monai_reader.MedsegReader",
)
# Organ and dataset names: letters, digits and a few separators; never a config expression (``$``), reference
# (``@``), macro (``%``) or id separator (``#``, ``::``).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+()-]{0,63}")
_MAX_LABEL = 255  # masks are uint8
_SPACING_MM = (0.01, 50.0)
_HU_LIMIT = 100_000.0
_MAX_PATCH = 1024
_MAX_WIDTH = 4096


@dataclass(frozen=True)
class ModelSpec:
    """The checked definition of a trained model: its field names are :data:`MODEL_KEYS`, the bundle config keys
    that define the network and its transform chain.

    Attributes:
        labels: ``{name: label value}``, background 0 included, in label order.
        class_names: organ names (background left out), in label order.
        num_classes: network output channels (largest label value + 1).
        spacing: voxel spacing (mm) of the model grid, RAS axes.
        hu_window: HU window preset name (:data:`medseg.transforms.HU_WINDOW_PRESETS`) or ``(lower, upper)``.
        body_threshold_hu: HU threshold of the body mask the chain crops to.
        spatial_dims: 3 (volumes) or 2 (axial slices).
        slice_neighbours: 2.5D: neighbouring slices on each side stacked as channels (2D only).
        in_channels: network input channels (``2 * slice_neighbours + 1``).
        patch_size: training patch, and the sliding window at inference.
        network: network name (:data:`medseg.networks.NETWORKS`).
        channels: widths per level.
        num_res_units: residual units per UNet level.
        norm: normalisation layer (:data:`NORMS`).
        dropout: dropout probability.
        deep_supervision: DynUNet's deep-supervision heads.
    """

    labels: dict[str, int]
    class_names: tuple[str, ...]
    num_classes: int
    spacing: tuple[float, float, float]
    hu_window: str | tuple[float, float]
    body_threshold_hu: float
    spatial_dims: int
    slice_neighbours: int
    in_channels: int
    patch_size: tuple[int, ...]
    network: str
    channels: tuple[int, ...]
    num_res_units: int
    norm: str
    dropout: float
    deep_supervision: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> ModelSpec:
        """The spec of a model config's values (derived keys computed, and checked when present).

        Raises:
            MedsegError: naming ``path`` and the key: a key missing, of the wrong type or out of range, or a
                derived key that disagrees with the keys it derives from.
        """
        return _checked_spec(config, Path(path) if path is not None else None)

    def as_config(self) -> dict[str, Any]:
        """The values as JSON-plain config values (lists, not tuples), keyed by :data:`MODEL_KEYS`."""
        values = asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    def label_names(self) -> dict[int, str]:
        """``{label value: organ name}`` without background."""
        return {index: name for name, index in self.labels.items() if index > 0}

    def network_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`medseg.networks.build_network` for this model."""
        return {
            "name": self.network,
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.num_classes,
            "channels": list(self.channels),
            "num_res_units": self.num_res_units,
            "norm": self.norm,
            "dropout": self.dropout,
            "patch_size": list(self.patch_size),
            "spacing": list(self.spacing),
            "deep_supervision": self.deep_supervision,
        }

    def build_network(self) -> nn.Module:
        """The untrained network, built by a Python call from the checked values (no config parser involved)."""
        from medseg.networks.factory import build_network

        return build_network(**self.network_options())

    def expected_volumes(self) -> dict[str, ExpectedVolume]:
        """Reference volume quartiles of this model's organs for the QA flags (organs without reference: none)."""
        from medseg.reporting.qa import OPENKBP_VOLUMES

        return {name: OPENKBP_VOLUMES[name] for name in self.class_names if name in OPENKBP_VOLUMES}


# The 16 keys that define a model, listed once: the fields of ModelSpec.
MODEL_KEYS: tuple[str, ...] = tuple(spec.name for spec in fields(ModelSpec))
# What a model config must hold (the derived keys may be absent and are then computed).
REQUIRED_KEYS: tuple[str, ...] = (RUN_KEYS[0], *(key for key in MODEL_KEYS if key not in DERIVED_KEYS))
KNOWN_KEYS: frozenset[str] = frozenset((*MODEL_KEYS, *RUN_KEYS))


def find_model_config(checkpoint: str | os.PathLike[str]) -> Path | None:
    """The model config of the weights file ``checkpoint``: ``model_config.json`` or ``run_config.json`` in its
    folder, else in the folder above (a run's ``checkpoints/`` sits inside the run folder); ``None`` if none."""
    folder = Path(checkpoint).expanduser().parent
    for directory in (folder, folder.parent):
        for name in MODEL_CONFIG_NAMES:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def read_model_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The :class:`ModelSpec` of a ``model_config.json`` / ``run_config.json`` (see :func:`read_model_config`)."""
    path = Path(path)
    return ModelSpec.from_config(read_model_config(path), path)


def read_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`check_model_config` of the JSON object in a ``model_config.json`` / ``run_config.json``.

    Raises:
        MedsegError: the file is unreadable or not a JSON object, or :func:`check_model_config` refuses it.
    """
    path = Path(path)
    return check_model_config(read_json_object(path, "the model config", MedsegError), path)


def check_model_config(config: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The checked model config as config values: every key of :data:`MODEL_KEYS` (the derived ``class_names``,
    ``num_classes``, ``in_channels`` filled in when absent) and the :data:`RUN_KEYS` it has.

    Raises:
        MedsegError: naming ``path`` and the key: a key that is not a model key, a key of :data:`REQUIRED_KEYS`
            missing, a value of the wrong type or out of range (a ``$`` expression or a ``_target_`` component,
            say), or a derived key that disagrees with the keys it derives from.
    """
    where = Path(path) if path is not None else None
    _check_keys(config, where)
    checked = ModelSpec.from_config(config, where).as_config()
    return {**{key: config[key] for key in RUN_KEYS if key in config}, **checked}


def load_model_config(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`read_model_config` of the config :func:`find_model_config` finds for ``checkpoint``.

    Raises:
        MedsegError: there is none (naming where it was looked for and how to make one), or it is invalid.
    """
    return read_model_config(model_config_path(checkpoint))


def model_config_path(checkpoint: str | os.PathLike[str]) -> Path:
    """:func:`find_model_config`, or an error saying where it looked and how to make one.

    Raises:
        MedsegError: no model config beside ``checkpoint`` or in the folder above.
    """
    path = find_model_config(checkpoint)
    if path is None:
        folder = Path(checkpoint).expanduser().parent
        raise MedsegError(
            Path(checkpoint),
            f"has no {' or '.join(MODEL_CONFIG_NAMES)} in {folder} or {folder.parent}: the spacing, labels and network "
            "options it was trained with are unknown. Ship a training run with `python pipelines/ship_model.py "
            "RUN_DIR`, or copy the run's run_config.json beside the weights",
        )
    return path


def _check_keys(config: Mapping[str, Any], path: Path | None) -> None:
    """Only model keys, all required ones present, the run keys valid."""
    unknown = sorted(str(key) for key in config if key not in KNOWN_KEYS)
    if unknown:
        raise MedsegError(
            path, f"key {_shown(unknown[0])} is not a model config key (a model folder's config is data, not code)"
        )
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise MedsegError(path, f"model config lacks {', '.join(missing)} (a training run's run_config.json has them)")
    dataset_name = config["dataset_name"]
    if not isinstance(dataset_name, str) or not _NAME.fullmatch(dataset_name):
        raise MedsegError(path, f"'dataset_name' must be a dataset name, got {_shown(dataset_name)}")
    if "image_reader" in config and config["image_reader"] not in IMAGE_READERS:
        raise MedsegError(
            path, f"'image_reader' must be one of {', '.join(IMAGE_READERS)}, got {_shown(config['image_reader'])}"
        )


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened to ``limit`` characters: one line in an error message, however long the value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_spec(config: Mapping[str, Any], path: Path | None) -> ModelSpec:
    missing = [key for key in MODEL_KEYS if key not in config and key not in DERIVED_KEYS]
    if missing:
        raise MedsegError(path, f"model config lacks {', '.join(missing)}")
    labels = _labels(config["labels"], path)
    spatial_dims = _integer(config, "spatial_dims", path, 2, 3)
    slice_neighbours = _integer(config, "slice_neighbours", path, 0, 16)
    if slice_neighbours and spatial_dims != 2:
        raise MedsegError(path, f"'slice_neighbours' {slice_neighbours} needs 'spatial_dims' 2 (2.5D)")
    derived: dict[str, Any] = {
        "class_names": [name for name, index in labels.items() if index > 0],
        "num_classes": max(labels.values()) + 1,
        "in_channels": 2 * slice_neighbours + 1,
    }
    for key, expected in derived.items():
        if key in config and config[key] != expected:
            raise MedsegError(
                path, f"{key!r} is {_shown(config[key])} but 'labels' / 'slice_neighbours' give {expected!r}"
            )
    return ModelSpec(
        labels=labels,
        class_names=tuple(derived["class_names"]),
        num_classes=derived["num_classes"],
        spacing=tuple(_numbers(config["spacing"], "spacing", 3, path, *_SPACING_MM)),  # type: ignore[arg-type]
        hu_window=_hu_window(config["hu_window"], path),
        body_threshold_hu=_number(config["body_threshold_hu"], "body_threshold_hu", path, -_HU_LIMIT, _HU_LIMIT),
        spatial_dims=spatial_dims,
        slice_neighbours=slice_neighbours,
        in_channels=derived["in_channels"],
        patch_size=tuple(_numbers(config["patch_size"], "patch_size", spatial_dims, path, 1, _MAX_PATCH, True)),
        network=_choice(config["network"], "network", _network_names(), path),
        channels=_channels(config["channels"], path),
        num_res_units=_integer(config, "num_res_units", path, 0, 16),
        norm=_choice(config["norm"], "norm", NORMS, path),
        dropout=_number(config["dropout"], "dropout", path, 0.0, 0.99),
        deep_supervision=_boolean(config["deep_supervision"], "deep_supervision", path),
    )


def _network_names() -> tuple[str, ...]:
    from medseg.networks.factory import NETWORKS

    return tuple(NETWORKS)


def _labels(value: Any, path: Path | None) -> dict[str, int]:
    if not isinstance(value, dict) or not 2 <= len(value) <= _MAX_LABEL + 1:
        raise MedsegError(path, f"'labels' must map 2 to {_MAX_LABEL + 1} names to ids, got {_shown(value)}")
    labels: dict[str, int] = {}
    for name, index in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise MedsegError(
                path,
                f"'labels' name {_shown(name)} must be 1-64 letters, digits, spaces or _ . + ( ) - starting with a "
                "letter or digit",
            )
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_LABEL:
            raise MedsegError(path, f"label {name!r} must have a whole-number id 0..{_MAX_LABEL}, got {_shown(index)}")
        labels[name] = index
    ids = sorted(labels.values())
    if len(set(ids)) != len(ids) or ids[0] != 0:
        raise MedsegError(path, f"label ids must be distinct and include 0 (background), got {ids}")
    return dict(sorted(labels.items(), key=lambda item: item[1]))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, key: str, path: Path | None, low: float, high: float) -> float:
    if not _is_number(value) or not low <= value <= high:
        raise MedsegError(path, f"{key!r} must be a number in [{low:g}, {high:g}], got {_shown(value)}")
    return float(value)


def _integer(config: Mapping[str, Any], key: str, path: Path | None, low: int, high: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise MedsegError(path, f"{key!r} must be a whole number in {low}..{high}, got {_shown(value)}")
    return value


def _boolean(value: Any, key: str, path: Path | None) -> bool:
    if not isinstance(value, bool):
        raise MedsegError(path, f"{key!r} must be true or false, got {_shown(value)}")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...], path: Path | None) -> str:
    if not isinstance(value, str) or value not in choices:
        raise MedsegError(path, f"{key!r} must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def _numbers(
    value: Any, key: str, count: int, path: Path | None, low: float, high: float, integers: bool = False
) -> list[Any]:
    kinds = (int,) if integers else (int, float)
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, kinds) and _is_number(v) and low <= v <= high and v > 0 for v in value)
    ):
        what = "whole numbers" if integers else "numbers"
        raise MedsegError(
            path, f"{key!r} must list {count} positive {what} in [{low:g}, {high:g}], got {_shown(value)}"
        )
    return [int(v) for v in value] if integers else [float(v) for v in value]


def _channels(value: Any, path: Path | None) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= 8:
        raise MedsegError(path, f"'channels' must list 1 to 8 widths, got {_shown(value)}")
    return tuple(_numbers(value, "channels", len(value), path, 1, _MAX_WIDTH, integers=True))


def _hu_window(value: Any, path: Path | None) -> str | tuple[float, float]:
    from medseg.transforms.preprocessing import HU_WINDOW_PRESETS

    if isinstance(value, str):
        return _choice(value, "hu_window", tuple(HU_WINDOW_PRESETS), path)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(_is_number(v) and abs(v) <= _HU_LIMIT for v in value)
        and value[0] < value[1]
    ):
        return float(value[0]), float(value[1])
    raise MedsegError(
        path,
        f"'hu_window' must be a preset ({', '.join(HU_WINDOW_PRESETS)}) or [lower, upper] in HU, got {_shown(value)}",
    )
