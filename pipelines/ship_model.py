"""Ship a training run as the bundle's model.

    python pipelines/ship_model.py runs/ct_unet/<run> [--bundle bundles/ct_unet] [--overwrite]

Writes into ``BUNDLE/models/``, each file atomically, after every check has passed:

=====================  ===================================================================================
``model.pt``           the network's state dict from ``RUN_DIR/checkpoints/model_best.pt`` (best validation
                       mean Dice), loaded with ``weights_only=True`` and checked to fit the network
``model_config.json``  ``RUN_DIR/run_config.json``, checked, with the derived keys (class_names, num_classes,
                       in_channels) filled in: spacing, labels, HU window and network options of the model
``metrics.csv``        ``RUN_DIR/metrics.csv``: loss, learning rate and validation Dice per epoch
``model.ts``           the same network as TorchScript (``torch.jit.script``, else ``torch.jit.trace`` on one
                       window, e.g. DynUNet with deep supervision), saved with MONAI's
                       ``save_net_with_metadata`` (bundle metadata, model config); checked to predict what the
                       state dict predicts on a random input
=====================  ===================================================================================

``medseg segment``, ``inference.json`` and ``evaluate.json`` then read the model from ``model.pt`` and
``model_config.json`` alone: nothing about it is recomputed from the dataset. Exit codes: 0 shipped, 2 a problem
with the run or the bundle (printed as one line).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import save_net_with_metadata
from torch import nn

from medseg.errors import MedsegError
from medseg.inference.bundle import (
    DEFAULT_BUNDLE,
    METADATA,
    file_sha256,
    inference_config_files,
    label_names_from_metadata,
    read_metadata,
    read_state_dict,
    resolve_bundle,
)
from medseg.io.files import atomic_path
from medseg.model_spec import MODEL_KEYS, read_model_config

CHECKPOINT = Path("checkpoints") / "model_best.pt"
SHIPPED = ("model.pt", "model_config.json", "metrics.csv", "model.ts")
# TorchScript and eager outputs agree to float32 rounding.
TOLERANCE = 1e-4


def network_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's state dict in a checkpoint (:func:`medseg.inference.bundle.read_state_dict`).

    Raises:
        MedsegError: the file is missing or unreadable, or holds no state dict of tensors.
    """
    if not checkpoint.is_file():
        raise MedsegError(checkpoint, "checkpoint not found (a run writes checkpoints/model_best.pt at validation)")
    return read_state_dict(checkpoint)


def build_network(bundle_dir: Path, model_config: Mapping[str, Any]) -> nn.Module:
    """The bundle's ``network_def`` with the model config's options."""
    parser = ConfigParser()
    parser.read_config([str(path) for path in inference_config_files(bundle_dir)])
    parser["bundle_root"] = str(bundle_dir)
    for key in MODEL_KEYS:
        parser[key] = model_config[key]
    network: nn.Module = parser.get_parsed_content("network_def")
    return network


def example_input(model_config: Mapping[str, Any], seed: int = 0) -> torch.Tensor:
    """One random window ``(1, in_channels, *patch_size)``, the shape the inferer feeds the network."""
    generator = torch.Generator().manual_seed(seed)
    shape = (1, int(model_config["in_channels"]), *(int(n) for n in model_config["patch_size"]))
    return torch.rand(shape, generator=generator)


def _main_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def to_torchscript(network: nn.Module, example: torch.Tensor) -> tuple[torch.jit.ScriptModule, str]:
    """``network`` (in eval mode) scripted, or traced on ``example`` where scripting fails; and which it was.

    Raises:
        MedsegError: the TorchScript network does not predict what ``network`` predicts on ``example``.
    """
    network.eval()
    try:
        scripted: torch.jit.ScriptModule = torch.jit.script(network)
        how = "torch.jit.script"
    except Exception:  # e.g. DynUNet's deep-supervision heads are not scriptable
        # Traced for the window shape the sliding window always feeds; the tracer's warnings about shape checks
        # turned into constants are expected for exactly that reason.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            scripted = torch.jit.trace(network, example)
        how = "torch.jit.trace"
    with torch.no_grad():
        expected = _main_output(network(example))
        got = _main_output(scripted(example))
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE):
        difference = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        raise MedsegError(None, f"the TorchScript network ({how}) predicts differently: max difference {difference}")
    return scripted, how


def ship(run_dir: Path, bundle_dir: Path, overwrite: bool = False) -> dict[str, Path]:
    """Write the shipped model of ``run_dir`` into ``bundle_dir/models`` (see the module notes).

    Returns:
        file name -> written path.

    Raises:
        MedsegError: the run lacks a file, its weights do not fit the network its config describes, the
            TorchScript export disagrees, or a shipped model exists and ``overwrite`` is false.
    """
    models = bundle_dir / "models"
    if not overwrite and (models / "model.pt").exists():
        raise MedsegError(models / "model.pt", "a model is already shipped here: pass --overwrite to replace it")
    for name in ("run_config.json", "metrics.csv"):
        if not (run_dir / name).is_file():
            raise MedsegError(run_dir / name, "not found: is this a training run folder?")
    model_config = read_model_config(run_dir / "run_config.json")
    state = network_state(run_dir / CHECKPOINT)
    network = build_network(bundle_dir, model_config)
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise MedsegError(run_dir / CHECKPOINT, f"does not fit the network of run_config.json: {first}") from err
    scripted, how = to_torchscript(network, example_input(model_config))
    metadata = read_metadata(bundle_dir)

    written = {name: models / name for name in SHIPPED}
    with contextlib.ExitStack() as stack:
        temporaries = {name: stack.enter_context(atomic_path(path)) for name, path in written.items()}
        torch.save(network.state_dict(), temporaries["model.pt"])
        temporaries["model_config.json"].write_text(json.dumps(model_config, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(run_dir / "metrics.csv", temporaries["metrics.csv"])
        save_net_with_metadata(
            scripted,
            str(temporaries["model.ts"]),
            include_config_vals=False,
            meta_values=metadata,
            more_extra_files={"model_config.json": json.dumps(model_config).encode()},
        )
        # The saved state dict must load back into the network it came from, as inference will load it.
        build_network(bundle_dir, model_config).load_state_dict(
            torch.load(temporaries["model.pt"], map_location="cpu", weights_only=True)
        )
    print(f"shipped {run_dir / CHECKPOINT} ({how} for model.ts) into {models}:")
    for name, path in written.items():
        print(f"  {name}  sha256 {file_sha256(path)[:16]}")
    _note_metadata_labels(bundle_dir, metadata, model_config)
    return written


def _note_metadata_labels(bundle_dir: Path, metadata: Mapping[str, Any], model_config: Mapping[str, Any]) -> None:
    """Say so when the bundle metadata's channel_def names other labels than the model predicts (inference takes
    the model config's; the metadata is what a model zoo shows)."""
    model_labels = {index: name for name, index in model_config["labels"].items() if index > 0}
    try:
        documented = label_names_from_metadata(dict(metadata), bundle_dir / METADATA)
    except MedsegError:
        documented = {}
    if documented != model_labels:
        print(
            f"note: {METADATA.as_posix()} names the labels {documented}, the model predicts {model_labels}: update "
            "network_data_format.outputs.pred.channel_def"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ship_model.py",
        description="Copy a training run's best weights, run_config.json and metrics.csv into the bundle's models/ "
        "folder as model.pt, model_config.json and metrics.csv, and export model.ts (TorchScript).",
    )
    parser.add_argument("run_dir", type=Path, help="training run folder (holds run_config.json, checkpoints/)")
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help=f"bundle folder (default {DEFAULT_BUNDLE})")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already shipped in the bundle")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    args = parser.parse_args(argv)
    try:
        ship(args.run_dir, resolve_bundle(args.bundle), overwrite=args.overwrite)
    except MedsegError as err:
        if args.debug:
            raise
        print(f"ship_model: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
