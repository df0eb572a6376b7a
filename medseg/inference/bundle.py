"""Find a MONAI bundle and what ``medseg segment`` needs from it: its inference config, metadata, label names and
trained weights.

No bundle named: ``$MEDSEG_BUNDLE``, else the bundle shipped inside the package (:func:`default_bundle`).
A bundle path given relative to the working directory is used as it is when it exists there; otherwise it is looked
up relative to the repository root (``bundles/ct_unet`` works from any working directory of a checkout).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.config import REPO_ROOT
from medseg.errors import InputError, MedsegError
from medseg.io.files import read_json_object

if TYPE_CHECKING:
    from torch import nn

DEFAULT_BUNDLE = "bundles/ct_unet"
INFERENCE_CONFIG = Path("configs") / "inference.json"
# Base config that an overlay-style inference.json builds on (as MONAI's evaluate.json overlays train.json).
BASE_CONFIG = Path("configs") / "train.json"
METADATA = Path("configs") / "metadata.json"
MODEL_FILE = Path("models") / "model.pt"
# The default model, shipped as package data: in a checkout a symbolic link to the repository's bundles/ct_unet,
# in an installed wheel a copy of its configs and weights.
SHIPPED_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "ct_unet"
BUNDLE_ENV = "MEDSEG_BUNDLE"


def default_bundle() -> Path:
    """The bundle to use when none is named: ``$MEDSEG_BUNDLE`` when set, else :data:`SHIPPED_BUNDLE`."""
    env = os.environ.get(BUNDLE_ENV)
    return Path(env).expanduser() if env else SHIPPED_BUNDLE


def resolve_bundle(bundle: str | os.PathLike[str] | None = None) -> Path:
    """The bundle folder: ``bundle`` itself when it exists, else ``bundle`` under the repository root; ``None``:
    :func:`default_bundle`.

    Raises:
        InputError: neither exists, or the folder has no ``configs/inference.json``.
    """
    path = default_bundle() if bundle is None else Path(bundle).expanduser()
    candidates = [path] if path.is_absolute() else [path, REPO_ROOT / path]
    for candidate in candidates:
        if candidate.is_dir():
            if not (candidate / INFERENCE_CONFIG).is_file():
                raise InputError(candidate, f"is not a medseg bundle: it has no {INFERENCE_CONFIG.as_posix()}")
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(path, f"bundle folder not found (looked at {tried})")


def inference_config_files(bundle_dir: Path) -> list[Path]:
    """The config files to parse, in order: ``configs/inference.json`` alone when it defines the network and the
    preprocessing itself, else ``configs/train.json`` first with ``inference.json`` as an overlay on it.

    Raises:
        InputError: ``inference.json`` is not a JSON object, or it is an overlay and the base config is missing.
    """
    inference = bundle_dir / INFERENCE_CONFIG
    content = read_json_object(inference, "the inference config")
    if "network_def" in content and "preprocessing" in content:
        return [inference]
    base = bundle_dir / BASE_CONFIG
    if not base.is_file():
        raise InputError(inference, f"defines no network_def/preprocessing and there is no {BASE_CONFIG.as_posix()}")
    return [base, inference]


def read_metadata(bundle_dir: Path) -> dict[str, Any]:
    """``configs/metadata.json`` of the bundle (an empty dict when absent).

    Raises:
        InputError: the file exists but is not a JSON object.
    """
    path = bundle_dir / METADATA
    if not path.is_file():
        return {}
    return read_json_object(path, "the bundle metadata")


def label_names_from_metadata(metadata: dict[str, Any], path: Path) -> dict[int, str]:
    """``{label value: organ name}`` from the metadata's ``network_data_format.outputs.pred.channel_def``,
    background (channel 0) left out.

    Raises:
        InputError: no channel definition, or one whose keys are not consecutive integers from 0.
    """
    try:
        channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
        names = {int(key): str(name) for key, name in channel_def.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(path, "metadata has no network_data_format.outputs.pred.channel_def with label names") from err
    if sorted(names) != list(range(len(names))) or len(names) < 2:
        raise InputError(path, f"channel_def keys must be 0..C-1 with C >= 2, got {sorted(names)}")
    return {value: name for value, name in names.items() if value > 0}


def missing_model_message(model_file: Path, bundle_dir: Path) -> str:
    """How to get the weights a bundle lacks."""
    return (
        "no trained weights: this bundle ships without a model yet. Train one with "
        f"`python -m monai.bundle run training --config_file {shown_path(bundle_dir)}/train.json` (add e.g. "
        "`--max_epochs 300 --device cuda`), then ship it into the bundle with `python pipelines/ship_model.py "
        f"runs/ct_unet/<run>` (weights and model config to {shown_path(model_file.parent)}), or pass --model "
        "runs/ct_unet/<run>/checkpoints/model_best.pt"
    )


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (as a user would type it), else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(model_file: Path) -> dict[str, Any]:
    """The network's state dict in ``model_file``: a plain ``torch.save`` state dict, or one under ``"model"`` as
    ignite checkpoints hold it, loaded with ``weights_only=True`` (no code in the file is run).

    Raises:
        MedsegError: the file is unreadable or holds no state dict of tensors.
    """
    import torch  # here, so that ``medseg --help`` (which reads DEFAULT_BUNDLE) does not import it

    try:
        state = torch.load(model_file, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors come in many types
        raise MedsegError(model_file, f"cannot be loaded as PyTorch weights: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise MedsegError(model_file, f"holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_weights(network: nn.Module, model_file: Path, bundle_dir: Path) -> str:
    """Load the state dict of ``model_file`` (:func:`read_state_dict`) into ``network``; return the file's sha256.

    Raises:
        MedsegError: the file is missing (with how to train one), unreadable, or does not fit the network.
    """
    if not model_file.is_file():
        raise MedsegError(model_file, missing_model_message(model_file, bundle_dir))
    state = read_state_dict(model_file)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise MedsegError(
            model_file,
            f"does not fit the bundle's network ({first}); was it trained with other network options? Pass the "
            "same overrides as in training",
        ) from err
    return file_sha256(model_file)
