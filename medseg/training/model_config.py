"""What defines a trained model, kept next to its weights: ``model_config.json`` (a shipped model) or the training
run's ``run_config.json``.

A checkpoint alone does not say how to use it: the voxel spacing and HU window it was trained on, its labels, the
network options. Training writes them to ``run_config.json`` in the run folder
(:func:`medseg.training.run_dir.write_run_config`); shipping a model copies that file beside ``model.pt`` as
``model_config.json`` (``pipelines/ship_model.py``). Inference (``inference.json``, ``evaluate.json``,
:class:`medseg.inference.Segmenter`) reads these values from the file found with :func:`find_model_config` and
never recomputes them from the dataset, whose fingerprint may have changed since the model was trained.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from medseg.errors import MedsegError
from medseg.io.json_file import read_json_object

# Searched in the checkpoint's folder, then in the folder above it (runs/<run>/checkpoints/model_best.pt ->
# runs/<run>/run_config.json), in this order.
MODEL_CONFIG_NAMES = ("model_config.json", "run_config.json")
# The config keys that define the network and its transform chain: inference takes each of them from the model
# config, never from the dataset (configs/inference.json and evaluate.json map exactly these).
MODEL_KEYS = (
    "labels",
    "class_names",
    "num_classes",
    "spacing",
    "hu_window",
    "body_threshold_hu",
    "spatial_dims",
    "slice_neighbours",
    "in_channels",
    "patch_size",
    "network",
    "channels",
    "num_res_units",
    "norm",
    "dropout",
    "deep_supervision",
)
# Keys computed from others (filled in when an older run_config.json lacks them, checked when present).
DERIVED_KEYS = ("class_names", "num_classes", "in_channels")
# The dataset the model was trained on: evaluate.json evaluates on its validation split unless told otherwise.
REQUIRED_KEYS = ("dataset_name", *(key for key in MODEL_KEYS if key not in DERIVED_KEYS))


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


def _labels(value: Any, path: Path) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) < 2:
        raise MedsegError(path, f"'labels' must map at least 2 names to ids, got {value!r}")
    labels: dict[str, int] = {}
    for name, index in value.items():
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise MedsegError(path, f"label {name!r} must have a whole-number id >= 0, got {index!r}")
        labels[str(name)] = index
    ids = sorted(labels.values())
    if len(set(ids)) != len(ids) or ids[0] != 0:
        raise MedsegError(path, f"label ids must be distinct and include 0 (background), got {ids}")
    return dict(sorted(labels.items(), key=lambda item: item[1]))


def _positive_numbers(value: Any, key: str, count: int, path: Path, integers: bool = False) -> list[Any]:
    kinds = (int,) if integers else (int, float)
    if (
        not isinstance(value, list)
        or len(value) != count
        or not all(isinstance(v, kinds) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)
    ):
        what = "whole numbers" if integers else "numbers"
        raise MedsegError(path, f"{key!r} must list {count} positive {what}, got {value!r}")
    return [int(v) for v in value] if integers else [float(v) for v in value]


def read_model_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked content of a ``model_config.json`` / ``run_config.json``, with the derived keys
    (``class_names``, ``num_classes``, ``in_channels``) filled in when the file lacks them.

    Raises:
        MedsegError: the file is unreadable, not a JSON object, lacks a key of :data:`REQUIRED_KEYS`, has a bad
            value, or a derived key disagrees with the keys it derives from.
    """
    path = Path(path)
    config = read_json_object(path, "the model config", MedsegError)
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise MedsegError(path, f"model config lacks {', '.join(missing)} (a training run's run_config.json has them)")
    if not isinstance(config["dataset_name"], str) or not config["dataset_name"]:
        raise MedsegError(path, f"'dataset_name' must be a dataset name, got {config['dataset_name']!r}")
    labels = _labels(config["labels"], path)
    spatial_dims = config["spatial_dims"]
    if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
        raise MedsegError(path, f"'spatial_dims' must be 2 or 3, got {spatial_dims!r}")
    slice_neighbours = config["slice_neighbours"]
    if isinstance(slice_neighbours, bool) or not isinstance(slice_neighbours, int) or slice_neighbours < 0:
        raise MedsegError(path, f"'slice_neighbours' must be a whole number >= 0, got {slice_neighbours!r}")
    derived = {
        "class_names": [name for name, index in labels.items() if index > 0],
        "num_classes": max(labels.values()) + 1,
        "in_channels": 2 * slice_neighbours + 1,
    }
    for key, expected in derived.items():
        if key in config and config[key] != expected:
            raise MedsegError(path, f"{key!r} is {config[key]!r} but 'labels' / 'slice_neighbours' give {expected!r}")
    checked = dict(config)
    checked.update(derived)
    checked["labels"] = labels
    checked["spacing"] = _positive_numbers(config["spacing"], "spacing", 3, path)
    checked["patch_size"] = _positive_numbers(config["patch_size"], "patch_size", spatial_dims, path, integers=True)
    return checked


def load_model_config(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`read_model_config` of the config :func:`find_model_config` finds for ``checkpoint``.

    Raises:
        MedsegError: there is none (naming where it was looked for and how to make one), or it is invalid.
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
    return read_model_config(path)
