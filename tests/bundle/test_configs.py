"""The bundle's configs parsed in-process (fast): metadata, the one transform chain and its inversion, and the
wiring of networks, losses and inferers in 2D, 2.5D and 3D."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, Invertd

from medseg.datasets import label_names
from medseg.networks import AxialSliceInferer
from tests.bundle.conftest import BUNDLE, CONFIGS
from tests.bundle.synthetic import LABELS, SHAPE, synthetic_affine


def parse(files: tuple[str, ...] = ("train.json",), **overrides: Any) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in files])
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update(overrides)
    parser.parse()
    return parser


def synthetic_parser(folder: Path, files: tuple[str, ...] = ("train.json",), **overrides: Any) -> ConfigParser:
    options = {"dataset_name": "synthetic", "dataset_dir": str(folder), "channels": [4, 8, 16], "num_workers": 0}
    options.update(overrides)
    return parse(files, **options)


def test_user_path_and_bundle_layout() -> None:
    # the user's command names bundles/ct_unet/train.json; MONAI reads metadata.json and logging.conf beside it
    for name in ("train.json", "metadata.json", "logging.conf"):
        assert (BUNDLE / name).resolve() == (CONFIGS / name).resolve()
    for name in ("inference.json", "evaluate.json", "multi_gpu_train.json"):
        assert json.loads((CONFIGS / name).read_text())
    licence = (BUNDLE / "LICENSE").read_text().split()
    assert licence[:4] == ["Apache", "License", "Version", "2.0,"]
    assert (BUNDLE / "models" / "README.md").is_file() and (BUNDLE / "docs" / "README.md").is_file()


def test_metadata_verifies_offline_and_names_the_organs() -> None:
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(BUNDLE / "docs" / "meta_schema.json"))
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    channels = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert {name: int(index) for index, name in channels.items()} == label_names("openkbp")


def test_metadata_schema_rejects_missing_fields(tmp_path: Path) -> None:
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    del metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    broken = tmp_path / "metadata.json"
    broken.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="channel_def"):
        verify_metadata(meta_file=str(broken), filepath=str(BUNDLE / "docs" / "meta_schema.json"))


def _case(folder: Path, case_id: str = "case_000") -> dict[str, str]:
    return {
        "image": str(folder / "imagesTr" / f"{case_id}.nii.gz"),
        "label": str(folder / "labelsTr" / f"{case_id}.nii.gz"),
    }


def test_one_chain_is_ras_resampled_windowed_cropped_and_invertible(synthetic_msd: Path) -> None:
    parser = synthetic_parser(synthetic_msd, spacing=[2.0, 2.0, 2.0])
    preprocessing: Compose = parser.get_parsed_content("preprocessing")
    assert parser.get_parsed_content("validate#preprocessing") is preprocessing  # validation reuses it
    out = preprocessing(_case(synthetic_msd))
    image, label = out["image"], out["label"]
    assert image.shape == label.shape and image.shape[0] == 1
    assert np.allclose(image.pixdim, [2.0, 2.0, 2.0])
    assert np.allclose(np.sign(np.diag(image.affine.numpy())[:3]), 1)  # RAS
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0  # HU window
    assert image.shape[1] < 36 * 2  # cropped to the body (full field of view would be 36*4/2 = 72 voxels in x)
    assert set(torch.unique(label).tolist()) == set(LABELS.values())

    # the chain inverts back onto the original grid exactly (nearest for a label map)
    out["pred"] = out["label"].clone()
    restored = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=True)(out)["pred"]
    original = MetaTensor(torch.as_tensor(np.asarray(nib_load(_case(synthetic_msd)["label"]).dataobj)))
    assert restored.shape == (1, *SHAPE)
    assert np.allclose(restored.affine.numpy(), synthetic_affine(), atol=1e-6)
    agreement = (restored[0].round().to(torch.uint8) == original.to(torch.uint8)).float().mean()
    assert agreement > 0.99  # 4 mm -> 2 mm -> 4 mm nearest round trip: only boundary voxels may move


def nib_load(path: str) -> Any:
    import nibabel

    return nibabel.load(path)


@pytest.mark.parametrize(
    ("overrides", "channels", "patch"),
    [
        ({"spatial_dims": 3, "patch_size": [32, 32, 16]}, 1, (32, 32, 16)),
        ({"spatial_dims": 2, "patch_size": [32, 32]}, 1, (32, 32)),
        ({"spatial_dims": 2, "slice_neighbours": 2, "patch_size": [32, 32], "network": "fcn8s"}, 5, (32, 32)),
        ({"spatial_dims": 3, "patch_size": [32, 32, 16], "network": "dynunet", "loss": "dicece"}, 1, (32, 32, 16)),
    ],
)
def test_training_chain_network_and_loss_fit_together(
    synthetic_msd: Path, overrides: dict, channels: int, patch: tuple[int, ...]
) -> None:
    parser = synthetic_parser(synthetic_msd, num_samples=2, **overrides)
    samples = parser.get_parsed_content("train#preprocessing")(_case(synthetic_msd))
    assert len(samples) == 2
    batch_image = torch.stack([s["image"].as_tensor() for s in samples])
    batch_label = torch.stack([s["label"].as_tensor() for s in samples])
    assert batch_image.shape == (2, channels, *patch) and batch_label.shape == (2, 1, *patch)
    network = parser.get_parsed_content("network_def").train()
    logits = network(batch_image)
    loss = parser.get_parsed_content("loss_function")(logits, batch_label)
    assert torch.isfinite(loss) and loss.requires_grad
    inferer = parser.get_parsed_content("inferer")
    expected = SlidingWindowInferer if overrides["spatial_dims"] == 3 else AxialSliceInferer
    assert type(inferer) is expected and inferer.mode == "gaussian" and inferer.padding_mode == "reflect"


def test_augmentation_switch_and_no_left_right_flips(synthetic_msd: Path) -> None:
    on = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16])
    assert on.get_parsed_content("flip_axes") == [1, 2]  # axis 0 (left-right) would swap the parotids
    names = [type(t).__name__ for t in on.get_parsed_content("random_transforms")]
    assert names[:2] == ["SpatialPadd", "RandCropByPosNegLabeld"]
    assert {"RandFlipd", "RandAffined", "Rand3DElasticd", "RandScaleIntensityd"} <= set(names)
    off = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16], augment="false")
    assert [type(t).__name__ for t in off.get_parsed_content("random_transforms")] == names[:2]


def test_inference_overlay_exposes_what_a_python_caller_needs(synthetic_msd: Path) -> None:
    parser = synthetic_parser(synthetic_msd, files=("train.json", "inference.json"), patch_size=[32, 32, 32])
    for key in ("network_def", "preprocessing", "inferer", "postprocessing"):
        assert parser.get_parsed_content(key) is not None
    steps = [type(t).__name__ for t in parser.get_parsed_content("postprocessing").transforms]
    assert steps == ["AsDiscreted", "Invertd", "SaveImaged"]  # argmax first: the uint8 map is inverted (nearest)
    inferer = parser.get_parsed_content("inferer")
    assert inferer.overlap == 0.5 and inferer.mode == "gaussian"
    probs = synthetic_parser(
        synthetic_msd, files=("train.json", "inference.json"), patch_size=[32, 32, 32], invert_probabilities=True
    )
    steps = [type(t).__name__ for t in probs.get_parsed_content("postprocessing").transforms]
    assert steps == ["Activationsd", "Invertd", "AsDiscreted", "SaveImaged"]


def test_early_stopping_is_off_by_default_and_wired_when_asked(synthetic_msd: Path) -> None:
    off = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16])
    assert off.get_parsed_content("validate#early_stop") is None
    on = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16], early_stop_patience=3)
    handler = on.get_parsed_content("validate#early_stop")
    assert handler.patience == 3 and handler._handler is None  # no trainer yet: the "training" list calls set_trainer
    assert any("set_trainer" in step for step in on.get("training"))
