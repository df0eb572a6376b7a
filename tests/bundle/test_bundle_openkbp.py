"""Acceptance on real OpenKBP cases: the user's exact command (``python -m monai.bundle run training
--config_file bundles/ct_unet/train.json``, from the repository root) trains 3D and 2.5D models on 2 cases on CPU,
resumes at the next epoch, evaluates with per-case Dice and HD95 on the original grid, and exports TorchScript."""

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

from medseg.datasets.openkbp import LABELS
from tests.bundle.conftest import CONFIGS, TINY, TRAIN, run_bundle

pytestmark = [pytest.mark.data, pytest.mark.slow]

USER_CONFIG = "bundles/ct_unet/train.json"  # exactly as users type it
ORGANS = list(LABELS)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def run_3d(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("openkbp-3d") / "run"
    run_bundle(
        [
            "run",
            "training",
            "--config_file",
            USER_CONFIG,
            "--max_cases",
            "2",
            "--max_epochs",
            "1",
            "--patch_size",
            "[48,48,48]",
            *TINY,
            "--device",
            "cpu",
            "--output_dir",
            str(run),
        ]
    )
    return run


def test_3d_training_writes_checkpoints_and_metrics_then_resumes(run_3d: Path) -> None:
    rows = _rows(run_3d / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert [c for c in rows[0] if c.startswith("dice_")] == [f"dice_{o}" for o in ORGANS]
    assert 0.0 <= float(rows[0]["val_mean_dice"]) <= 1.0 and float(rows[0]["train_loss"]) > 0
    assert (run_3d / "checkpoints" / "model_best.pt").is_file()
    assert (run_3d / "checkpoints" / "checkpoint_epoch=1.pt").is_file()

    output = run_bundle(
        [
            "run",
            "training",
            "--config_file",
            USER_CONFIG,
            "--max_cases",
            "2",
            "--max_epochs",
            "2",
            "--patch_size",
            "[48,48,48]",
            *TINY,
            "--device",
            "cpu",
            "--output_dir",
            str(run_3d),
            "--resume",
            "true",
        ]
    )
    assert "at epoch 2 of 2" in output
    assert [r["epoch"] for r in _rows(run_3d / "metrics.csv")] == ["1", "2"]
    assert (run_3d / "checkpoints" / "checkpoint_epoch=2.pt").is_file()
    assert not (run_3d / "checkpoints" / "checkpoint_epoch=1.pt").exists()


def test_25d_training_runs_on_axial_slice_stacks(data_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_bundle(
        [
            "run",
            "training",
            "--config_file",
            USER_CONFIG,
            "--max_cases",
            "2",
            "--max_epochs",
            "1",
            "--spatial_dims",
            "2",
            "--slice_neighbours",
            "1",
            "--patch_size",
            "[96,96]",
            *TINY,
            "--device",
            "cpu",
            "--output_dir",
            str(run),
        ]
    )
    rows = _rows(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"] and rows[0]["val_mean_dice"]
    config = json.loads((run / "run_config.json").read_text())
    assert config["spatial_dims"] == 2 and config["slice_neighbours"] == 1
    state = torch.load(run / "checkpoints" / "model_best.pt", weights_only=True)
    first_conv = next(v for k, v in state.items() if k.endswith("weight") and v.ndim == 4)
    assert first_conv.shape[1] == 3  # 2D convolutions over 3 stacked slices


def test_evaluate_on_the_original_grid(run_3d: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "evaluation"
    run_bundle(
        [
            "run",
            "--config_file",
            f"['{TRAIN}','{CONFIGS / 'evaluate.json'}']",
            "--args_file",
            str(run_3d / "run_config.json"),
            "--max_cases",
            "2",
            "--ckpt_path",
            str(run_3d / "checkpoints" / "model_best.pt"),
            "--output_dir",
            str(out),
            "--save_predictions",
            "true",
            "--num_workers",
            "0",
            "--device",
            "cpu",
        ]
    )
    rows = _rows(out / "per_case_metrics.csv")
    assert len(rows) == 2 * 7 and [r["class_name"] for r in rows[:7]] == ORGANS
    assert all(0.0 <= float(r["val_mean_dice"]) <= 1.0 for r in rows)
    for prediction in sorted((out / "predictions").iterdir()):
        case = prediction.name.replace("_seg.nii.gz", "")
        source = next(Path(r["image"]) for r in _datalist(run_3d) if Path(r["image"]).name == f"{case}.nii.gz")
        mask, image = nib.load(prediction), nib.load(source)
        assert mask.shape == image.shape == (128, 128, 128)
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)


def _datalist(run: Path) -> list[dict[str, str]]:
    from medseg.datasets import fold_datalists

    train, val = fold_datalists("openkbp", 0, None, 2)
    return train + val


def test_torchscript_export_matches_the_checkpoint(run_3d: Path, tmp_path: Path) -> None:
    exported = tmp_path / "model.ts"
    run_bundle(
        [
            "ckpt_export",
            "network_def",
            "--filepath",
            str(exported),
            "--ckpt_file",
            str(run_3d / "checkpoints" / "model_best.pt"),
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--config_file",
            TRAIN,
            "--args_file",
            str(run_3d / "run_config.json"),
        ]
    )
    scripted, _, _ = load_net_with_metadata(str(exported))
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser.update(json.loads((run_3d / "run_config.json").read_text()))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(run_3d / "checkpoints" / "model_best.pt", weights_only=True))
    x = torch.rand(1, 1, 48, 48, 48)
    with torch.no_grad():
        assert torch.allclose(scripted.eval()(x), network.eval()(x), atol=1e-5)


def test_multi_gpu_config_trains_one_epoch_on_two_cpu_processes(data_root: Path, tmp_path: Path) -> None:
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
            "--max_cases",
            "2",
            "--patch_size",
            "[48,48,48]",
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
    assert [r["epoch"] for r in _rows(run / "metrics.csv")] == ["1"]
