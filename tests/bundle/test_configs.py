"""The bundle's configs parsed in-process (fast): metadata, the one transform chain and its inversion, and the
wiring of networks, losses and inferers in 2D, 2.5D and 3D."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, Invertd

from medseg.datasets import label_names
from medseg.errors import ManifestError
from medseg.io.monai_reader import unwrap_medseg_error
from medseg.model_spec import MODEL_KEYS, read_model_config
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


def write_model_config(folder: Path, **changes: Any) -> Path:
    """A synthetic model's ``model_config.json`` in ``folder``; returns the (absent) weights path beside it."""
    config = {
        "dataset_name": "synthetic",
        "labels": dict(LABELS),
        "spacing": [4.0, 4.0, 3.0],
        "hu_window": "soft_tissue",
        "body_threshold_hu": -500,
        "spatial_dims": 3,
        "slice_neighbours": 0,
        "patch_size": [32, 32, 32],
        "network": "unet",
        "channels": [4, 8, 16],
        "num_res_units": 1,
        "norm": "instance",
        "dropout": 0.0,
        "deep_supervision": True,
        **changes,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_config.json").write_text(json.dumps(config))
    return folder / "model.pt"


@pytest.fixture
def no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any look at data_manifest.json fails from here on."""
    monkeypatch.setattr("medseg.config.MANIFEST_PATH", tmp_path / "no" / "data_manifest.json")


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
    # windows smaller than the body crop: no padding here (see the next test)
    parser = synthetic_parser(synthetic_msd, spacing=[2.0, 2.0, 2.0], patch_size=[32, 32, 32])
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
    transforms = on.get_parsed_content("random_transforms")
    flips = [t.flipper.spatial_axis for t in transforms if type(t).__name__ == "RandFlipd"]
    assert flips == [1, 2]  # axis 0 (left-right) would swap the parotids
    names = [type(t).__name__ for t in transforms]
    assert names[:2] == ["SpatialPadd", "RandCropByLabelClassesd"]  # every organ is a patch centre alike
    assert {"RandFlipd", "RandAffined", "Rand3DElasticd", "RandScaleIntensityd"} <= set(names)
    off = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16], augment="false")
    assert [type(t).__name__ for t in off.get_parsed_content("random_transforms")] == names[:2]
    posneg = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16], crop="posneg")
    assert [type(t).__name__ for t in posneg.get_parsed_content("random_transforms")][:2] == [
        "SpatialPadd",
        "RandCropByPosNegLabeld",
    ]


def test_run_config_holds_every_key_that_defines_the_model(synthetic_msd: Path, tmp_path: Path) -> None:
    parser = synthetic_parser(synthetic_msd, spatial_dims=2, slice_neighbours=1, patch_size=[32, 32])
    run_config = parser.get_parsed_content("run_config")
    assert set(MODEL_KEYS) <= set(run_config)
    assert run_config["class_names"] == ["Ball", "Rod", "Bone"] and run_config["num_classes"] == 4
    assert run_config["in_channels"] == 3 and run_config["spacing"] == [4.0, 4.0, 3.0]
    (tmp_path / "run_config.json").write_text(json.dumps(run_config))
    assert read_model_config(tmp_path / "run_config.json") == run_config  # consistent as written


@pytest.mark.parametrize("files", [("inference.json",), ("train.json", "evaluate.json")])
def test_inference_and_evaluation_take_the_model_from_its_config_not_the_manifest(
    files: tuple[str, ...], tmp_path: Path, no_manifest: None
) -> None:
    content = json.loads((CONFIGS / files[-1]).read_text())
    assert content["model_config"] == "$medseg.training.load_model_config(@ckpt_path)"
    model_keys = {key: value for key, value in content.items() if key in MODEL_KEYS}
    assert model_keys == {key: f"$@model_config['{key}']" for key in model_keys}
    if files[-1] == "evaluate.json":  # evaluated on the validation split of the dataset it was trained on
        assert set(model_keys) == set(MODEL_KEYS)
        assert content["dataset_name"] == "$@model_config['dataset_name']"
    # spacing and labels unlike any dataset's: they can only come from the model config
    weights = write_model_config(tmp_path / "run", spacing=[3.0, 2.5, 2.0], labels={"background": 0, "Tumour": 1})
    parser = parse(files, ckpt_path=str(weights), device="cpu")
    assert parser.get_parsed_content("spacing") == [3.0, 2.5, 2.0]
    assert parser.get_parsed_content("num_classes") == 2
    if "class_names" in parser:
        assert parser.get_parsed_content("class_names") == ["Tumour"]
    spacing = next(t for t in parser.get_parsed_content("preprocessing").transforms if type(t).__name__ == "Spacingd")
    assert spacing.spacing_transform.pixdim.tolist() == [3.0, 2.5, 2.0]
    network = parser.get_parsed_content("network_def")
    assert network(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
    with pytest.raises(RuntimeError) as caught:  # the manifest really is out of reach: training needs it
        parse(("train.json",), device="cpu").get_parsed_content("spacing")
    assert isinstance(unwrap_medseg_error(caught.value), ManifestError)


def test_inference_runs_the_chain_of_training_on_the_image(synthetic_msd: Path, tmp_path: Path) -> None:
    # inference.json writes the chain out for the image alone (it runs without train.json): the same transforms
    # with the same options, so a scan reaches the network exactly as in validation
    weights = str(write_model_config(tmp_path, labels=dict(LABELS), spacing=[2.0, 2.0, 2.0], hu_window="head_neck"))
    inference = parse(("inference.json",), ckpt_path=weights).get_parsed_content("preprocessing")
    training = synthetic_parser(synthetic_msd, spacing=[2.0, 2.0, 2.0], patch_size=[32, 32, 32])
    image = _case(synthetic_msd)["image"]
    expected = training.get_parsed_content("preprocessing")({"image": image})["image"]
    got = inference({"image": image})["image"]
    assert [type(t).__name__ for t in inference.transforms] == [
        type(t).__name__ for t in training.get_parsed_content("preprocessing").transforms
    ]
    assert got.shape == expected.shape and torch.equal(got.as_tensor(), expected.as_tensor())
    np.testing.assert_array_equal(got.affine.numpy(), expected.affine.numpy())


def test_small_crops_are_mirror_padded_to_the_window_and_the_padding_is_undone(synthetic_msd: Path) -> None:
    # 96^3 windows against a body crop of about 30 x 26 x 40 voxels: torch's reflect padding inside the sliding
    # window cannot pad more than the image size, so the chain pads first (numpy "symmetric": mirrors repeatedly).
    parser = synthetic_parser(synthetic_msd, patch_size=[96, 96, 96])
    assert parser.get_parsed_content("validate#preprocessing") is parser.get_parsed_content("preprocessing")
    out = parser.get_parsed_content("preprocessing")(_case(synthetic_msd))
    image, label = out["image"], out["label"]
    assert tuple(image.shape[1:]) == (96, 96, 96) and all(n < 48 for n in label.shape[1:])
    assert image.applied_operations[-1]["class"] == "SpatialPad"
    crop_in_pad = tuple(slice((96 - n) // 2, (96 - n) // 2 + n) for n in label.shape[1:])
    # the sliding window runs on the padded image (reflect padding would raise here)
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        logits = parser.get_parsed_content("inferer")(image[None], network)[0]
    # validation crops the prediction back onto the label's grid before the Dice
    out["pred"] = MetaTensor(logits)
    post = parser.get_parsed_content("validate#postprocessing")(out)
    assert post["pred"].shape == post["label"].shape == (4, *label.shape[1:])
    np.testing.assert_array_equal(post["pred"].argmax(0), logits[(slice(None), *crop_in_pad)].argmax(0))
    # the full inversion (inference, evaluation) undoes the padding with the rest of the chain
    fresh = parser.get_parsed_content("preprocessing")(_case(synthetic_msd))
    fresh["pred"] = MetaTensor(logits.argmax(0, keepdim=True).float())
    restored = Invertd(keys="pred", transform=parser.get_parsed_content("preprocessing"), orig_keys="image")(fresh)
    assert restored["pred"].shape == (1, *SHAPE)
    assert np.allclose(restored["pred"].affine.numpy(), synthetic_affine(), atol=1e-6)


def test_inference_config_exposes_what_a_python_caller_needs(tmp_path: Path) -> None:
    weights = str(write_model_config(tmp_path, labels=dict(LABELS)))
    parser = parse(("inference.json",), ckpt_path=weights, device="cpu", dataset_dir=str(tmp_path))
    for key in ("network_def", "preprocessing", "inferer", "postprocessing", "inference_network", "evaluator"):
        assert parser.get_parsed_content(key) is not None
    steps = [type(t).__name__ for t in parser.get_parsed_content("postprocessing").transforms]
    assert steps == ["AsDiscreted", "Invertd", "SaveImaged"]  # argmax first: the uint8 map is inverted (nearest)
    inferer = parser.get_parsed_content("inferer")
    assert isinstance(inferer, SlidingWindowInferer) and not isinstance(inferer, AxialSliceInferer)
    assert inferer.overlap == 0.5 and inferer.mode == "gaussian" and inferer.sw_batch_size == 4
    assert parser.get_parsed_content("inference_network") is parser.get_parsed_content("network_def")
    tta = parse(("inference.json",), ckpt_path=weights, device="cpu", tta=True)
    assert tta.get_parsed_content("inference_network").flip_dims == [[3], [4], [3, 4]]  # never left-right
    flat = str(write_model_config(tmp_path / "2d", spatial_dims=2, patch_size=[32, 32]))
    slices = parse(("inference.json",), ckpt_path=flat, device="cpu").get_parsed_content("inferer")
    assert isinstance(slices, AxialSliceInferer) and slices.sw_batch_size == 32


def test_verify_net_in_out_passes_on_inference_json_alone_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the user's check, outside the repository: bundle_root (hence the weights' model config) is still found
    monkeypatch.chdir(tmp_path)
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        device="cpu",
    )
    parser = parse(("inference.json",))
    assert Path(parser.get_parsed_content("bundle_root")) == BUNDLE.resolve()
    assert "medseg" in json.loads((CONFIGS / "metadata.json").read_text())["required_packages_version"]


def test_early_stopping_is_off_by_default_and_wired_when_asked(synthetic_msd: Path) -> None:
    off = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16])
    assert off.get_parsed_content("validate#early_stop") is None
    on = synthetic_parser(synthetic_msd, patch_size=[16, 16, 16], early_stop_patience=3)
    handler = on.get_parsed_content("validate#early_stop")
    assert handler.patience == 3 and handler._handler is None  # no trainer yet: the "training" list calls set_trainer
    assert any("early_stop=@validate" in step for step in on.get("training"))  # run_training wires it
