"""The user's exact commands on the tiny synthetic dataset (no real data needed): train, resume, evaluate, infer,
export. Each step is a real ``python -m monai.bundle`` subprocess from the repository root."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import load_net_with_metadata

from tests.bundle.conftest import CONFIGS, TINY, TRAIN, run_bundle

pytestmark = pytest.mark.slow

EVAL_CONFIGS = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate.json'}']"
INFER_CONFIG = str(CONFIGS / "inference.json")  # on its own, as model-zoo bundles run it


@pytest.fixture(scope="module")
def trained(synthetic_msd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("synthetic-run") / "run"
    data = ["--dataset_name", "synthetic", "--dataset_dir", str(synthetic_msd), "--patch_size", "[32,32,32]"]
    run_bundle(
        [
            "run",
            "training",
            "--config_file",
            "bundles/ct_unet/train.json",
            *data,
            *TINY,
            "--max_epochs",
            "1",
            "--output_dir",
            str(run),
        ]
    )
    output = run_bundle(
        [
            "run",
            "training",
            "--config_file",
            TRAIN,
            *data,
            *TINY,
            "--max_epochs",
            "2",
            "--output_dir",
            str(run),
            "--resume",
            "true",
        ]
    )
    assert "at epoch 2 of 2" in output
    return run


def test_train_then_resume_continues_at_the_next_epoch(trained: Path) -> None:
    with (trained / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"dice_Ball", "dice_Rod", "dice_Bone"} <= set(rows[0]) and all(r["val_mean_dice"] for r in rows)
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["checkpoint_epoch=2.pt", "model_best.pt"]
    config = json.loads((trained / "run_config.json").read_text())
    assert config["patch_size"] == [32, 32, 32] and config["labels"]["Bone"] == 3
    assert config["class_names"] == ["Ball", "Rod", "Bone"] and config["num_classes"] == 4


def test_evaluate_writes_per_case_dice_and_hd95(trained: Path, synthetic_msd: Path, tmp_path: Path) -> None:
    # no --args_file: evaluate.json takes the model's options from the run_config.json above the checkpoint
    out = tmp_path / "evaluation"
    run_bundle(
        [
            "run",
            "--config_file",
            EVAL_CONFIGS,
            "--dataset_dir",
            str(synthetic_msd),
            "--ckpt_path",
            str(trained / "checkpoints" / "model_best.pt"),
            "--output_dir",
            str(out),
            "--num_workers",
            "0",
        ]
    )
    with (out / "per_case_metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["class_id"], r["class_name"]) for r in rows] == [("1", "Ball"), ("2", "Rod"), ("3", "Bone")]
    assert all(0.0 <= float(r["val_mean_dice"]) <= 1.0 for r in rows)
    assert (out / "val_hd95_mm_raw.csv").is_file() and (out / "metrics.csv").is_file()


def test_inference_writes_uint8_masks_on_the_input_grid(trained: Path, synthetic_msd: Path, tmp_path: Path) -> None:
    # no --args_file: inference.json takes the model's options from the run_config.json above the checkpoint
    out = tmp_path / "masks"
    run_bundle(
        [
            "run",
            "--config_file",
            INFER_CONFIG,
            "--ckpt_path",
            str(trained / "checkpoints" / "model_best.pt"),
            "--dataset_dir",
            str(synthetic_msd / "imagesTr"),
            "--input_pattern",
            "case_00[01].nii.gz",
            "--output_dir",
            str(out),
            "--tta",
            "true",
        ]
    )
    for case in ("case_000", "case_001"):
        source = nib.load(synthetic_msd / "imagesTr" / f"{case}.nii.gz")
        mask = nib.load(out / f"{case}_seg.nii.gz")
        assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-6)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}


def test_torchscript_export_predicts_like_the_checkpoint(trained: Path, tmp_path: Path) -> None:
    exported = tmp_path / "model.ts"
    run_bundle(
        [
            "ckpt_export",
            "network_def",
            "--filepath",
            str(exported),
            "--ckpt_file",
            str(trained / "checkpoints" / "model_best.pt"),
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            TRAIN,
            "--args_file",
            str(trained / "run_config.json"),
        ]
    )
    scripted, metadata, _ = load_net_with_metadata(str(exported))
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update(json.loads((trained / "run_config.json").read_text()))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(trained / "checkpoints" / "model_best.pt", weights_only=True))
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(scripted.eval()(x), network.eval()(x), atol=1e-5)
    assert metadata["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]


def test_multi_gpu_config_trains_one_epoch_with_two_cpu_processes(tmp_path: Path) -> None:
    from tests.bundle.synthetic import write_synthetic_msd

    data = write_synthetic_msd(tmp_path / "msd", n_cases=10)  # fold 0 validates 2 cases: one per rank
    run = tmp_path / "ddp"
    output = run_bundle(
        [
            "--nproc_per_node",
            "2",
            "-m",
            "monai.bundle",
            "run",
            "training",
            "--config_file",
            f"['{TRAIN}','{CONFIGS / 'multi_gpu_train.json'}']",
            "--dataset_name",
            "synthetic",
            "--dataset_dir",
            str(data),
            "--patch_size",
            "[32,32,32]",
            *TINY,
            "--max_epochs",
            "1",
            "--device",
            "cpu",
            "--output_dir",
            str(run),
        ],
        module=("-m", "torch.distributed.run"),
    )
    assert "epoch 1/1" in output
    with (run / "metrics.csv").open(newline="") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["1"]
    assert (run / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
