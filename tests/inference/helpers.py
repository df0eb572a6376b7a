"""A test copy of the real ``ct_unet`` bundle: the same configs with a small U-Net's seeded random weights and its
``models/model_config.json``, as a shipped model has them.

Geometry, format and batch tests need the bundle's real transform chain and inferer, not a good model; a small
network keeps each case to about a second on 2 CPU cores. Inference settings go into the copy's
``inference.json``, so the command line (which takes no overrides) runs the copy as it is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser

from medseg.config import REPO_ROOT
from medseg.datasets.openkbp import LABELS as OPENKBP_LABELS
from medseg.inference.bundle import inference_config_files

REAL_BUNDLE = REPO_ROOT / "bundles" / "ct_unet"
# What the test model was "trained" with: models/model_config.json of the test bundle.
MODEL_CONFIG: dict[str, Any] = {
    "dataset_name": "openkbp",
    "labels": {"background": 0, **OPENKBP_LABELS},
    "spacing": [4.688, 4.688, 2.5],
    "image_reader": "NibabelReader",
    "hu_window": "head_neck",
    "body_threshold_hu": -500,
    "spatial_dims": 3,
    "slice_neighbours": 0,
    "patch_size": [64, 64, 64],
    "network": "unet",
    "channels": [8, 16, 32, 64],
    "num_res_units": 1,
    "norm": "instance",
    "dropout": 0.0,
    "deep_supervision": True,
}
# Inference settings of the test bundle's inference.json.
INFERENCE_SETTINGS = {"sw_batch_size": 2, "sw_overlap": 0.25}


def make_test_bundle(
    destination: Path, seed: int = 0, with_model: bool = True, overrides: dict[str, Any] | None = None
) -> Path:
    """Copy the real bundle's configs to ``destination`` and, if ``with_model``, write seeded random weights in
    ``models/model.pt`` with their ``models/model_config.json`` (:data:`MODEL_CONFIG`, updated with the
    ``overrides`` that are model keys; the other overrides go into ``inference.json`` with
    :data:`INFERENCE_SETTINGS`)."""
    from medseg.model_spec import MODEL_KEYS, read_model_config

    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(REAL_BUNDLE, destination, ignore=shutil.ignore_patterns("*.pt", "*.ts", "model_config.json"))
    model_config = dict(MODEL_CONFIG)
    settings = dict(INFERENCE_SETTINGS)
    for key, value in (overrides or {}).items():
        (model_config if key in MODEL_KEYS else settings)[key] = value
    inference = destination / "configs" / "inference.json"
    config = json.loads(inference.read_text())
    config.update(settings)
    inference.write_text(json.dumps(config, indent=1))
    if with_model:
        models = destination / "models"
        models.mkdir(exist_ok=True)
        (models / "model_config.json").write_text(json.dumps(model_config, indent=1))
        parser = ConfigParser()
        parser.read_config([str(path) for path in inference_config_files(destination)])
        parser.update({key: value for key, value in read_model_config(models / "model_config.json").items()})
        torch.manual_seed(seed)
        network = parser.get_parsed_content("network_def")
        torch.save(network.state_dict(), models / "model.pt")
    return destination


def body_phantom(
    size_xyz: tuple[int, int, int] = (48, 40, 24),
    spacing: tuple[float, float, float] = (2.0, 2.5, 3.0),
    origin: tuple[float, float, float] = (-40.0, 12.5, 300.0),
    direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> sitk.Image:
    """An int16 CT-like phantom: air (-1000 HU) around an elliptic soft-tissue body (40 HU) with a bone rod
    (700 HU), on the given grid."""
    x, y, z = size_xyz
    yy, xx = np.mgrid[:y, :x]
    body = ((yy - y / 2) / (0.4 * y)) ** 2 + ((xx - x / 2) / (0.45 * x)) ** 2 < 1
    bone = ((yy - 0.6 * y) / (0.08 * y)) ** 2 + ((xx - x / 2) / (0.08 * x)) ** 2 < 1
    plane = np.where(bone, 700, np.where(body, 40, -1000)).astype(np.int16)
    image = sitk.GetImageFromArray(np.repeat(plane[None], z, axis=0))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def assert_same_grid(mask_path: Path, scan: sitk.Image, input_path: Path | None = None) -> None:
    """The mask file has the scan's grid, read back with SimpleITK and with nibabel.

    SimpleITK: same size, and spacing, origin and direction within NIfTI's float32 precision. nibabel: the mask's
    affine equals the scan's RAS affine (from the input NIfTI's own header when ``input_path`` is a NIfTI file,
    so both readers' views of the input are checked) and its shape is the scan's size.
    """
    import nibabel as nib

    from medseg.io.geometry import ras_affine

    mask = sitk.ReadImage(str(mask_path))
    assert mask.GetSize() == scan.GetSize()
    assert mask.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_allclose(mask.GetSpacing(), scan.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(mask.GetOrigin(), scan.GetOrigin(), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(mask.GetDirection(), scan.GetDirection(), atol=1e-6)
    loaded = nib.load(str(mask_path))
    assert loaded.shape == scan.GetSize()
    if input_path is not None and input_path.name.endswith((".nii", ".nii.gz")):
        expected = nib.load(str(input_path)).affine
        np.testing.assert_array_equal(loaded.affine, expected)  # float32 header in, float32 header out
    else:
        np.testing.assert_allclose(loaded.affine, ras_affine(scan), rtol=1e-6, atol=1e-4)
