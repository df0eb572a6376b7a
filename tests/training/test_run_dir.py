from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import MedsegError
from medseg.training import (
    default_output_dir,
    latest_checkpoint,
    prepare_output_dir,
    resume_checkpoint,
    write_run_config,
)


def _touch_checkpoints(run: Path, *epochs: int) -> None:
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    for epoch in epochs:
        (run / "checkpoints" / f"checkpoint_epoch={epoch}.pt").write_bytes(b"x")


def test_default_output_dir_is_timestamped_under_runs(tmp_path: Path) -> None:
    path = Path(default_output_dir("unet-3d-fold0", runs_root=tmp_path))
    assert path.parent == tmp_path and path.name.startswith("unet-3d-fold0-20")


def test_latest_checkpoint_takes_the_highest_epoch_numerically(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    _touch_checkpoints(tmp_path, 2, 10, 9)
    (tmp_path / "checkpoints" / "model_best.pt").write_bytes(b"x")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "checkpoint_epoch=10.pt"


def test_prepare_refuses_to_mix_runs_unless_resuming(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert prepare_output_dir(run) == str(run.resolve()) and (run / "checkpoints").is_dir()
    _touch_checkpoints(run, 1)
    with pytest.raises(MedsegError, match="--resume true"):
        prepare_output_dir(run, resume="false")
    assert prepare_output_dir(run, resume="true") == str(run.resolve())


def test_prepare_protects_the_shipped_model_folder(tmp_path: Path) -> None:
    models = tmp_path / "bundle" / "models"
    with pytest.raises(MedsegError, match="shipped model"):
        prepare_output_dir(models / "run", protected=models)
    with pytest.raises(MedsegError, match="shipped model"):
        prepare_output_dir(models, protected=models)
    assert not (models / "checkpoints").exists()


def test_resume_checkpoint_choices(tmp_path: Path) -> None:
    assert resume_checkpoint(False, tmp_path) is None
    with pytest.raises(MedsegError, match="holds no checkpoint"):
        resume_checkpoint("true", tmp_path)
    _touch_checkpoints(tmp_path, 3)
    assert resume_checkpoint(True, tmp_path) == str(tmp_path / "checkpoints" / "checkpoint_epoch=3.pt")
    other = tmp_path / "elsewhere.pt"
    with pytest.raises(MedsegError, match="does not exist"):
        resume_checkpoint(str(other), tmp_path)
    other.write_bytes(b"x")
    assert resume_checkpoint(str(other), tmp_path) == str(other.resolve())


def test_write_run_config_is_an_args_file(tmp_path: Path) -> None:
    path = write_run_config(tmp_path, {"spacing": (4.0, 4.0, 2.5), "network": "unet"})
    assert json.loads(Path(path).read_text()) == {"spacing": [4.0, 4.0, 2.5], "network": "unet"}
    assert [p.name for p in tmp_path.iterdir()] == ["run_config.json"]
