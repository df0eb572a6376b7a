"""``pipelines/ship_model.py``: a run folder becomes the bundle's shipped model, and inference then runs from the
shipped files alone (no data manifest, no run folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import SimpleITK as sitk
import torch
from monai.data import load_net_with_metadata

from medseg.inference.segmenter import Segmenter
from medseg.model_spec import read_model_config
from pipelines.ship_model import build_network, example_input, main
from tests.inference.helpers import MODEL_CONFIG, body_phantom, make_test_bundle


def _run(folder: Path, bundle: Path, wrapped: bool = False, **changes: Any) -> Path:
    """A finished training run as the bundle writes it: run_config.json (without the derived keys, as older runs
    wrote it), checkpoints/model_best.pt, metrics.csv."""
    (folder / "checkpoints").mkdir(parents=True)
    run_config = {**MODEL_CONFIG, "channels": [4, 8, 16], "patch_size": [32, 32, 32], **changes}
    (folder / "run_config.json").write_text(json.dumps(run_config))
    (folder / "metrics.csv").write_text("epoch,train_loss,val_mean_dice\n1,1.5,0.1\n2,1.2,0.3\n")
    torch.manual_seed(3)
    network = build_network(bundle, read_model_config(folder / "run_config.json"))
    state = network.state_dict()
    torch.save({"model": state} if wrapped else state, folder / "checkpoints" / "model_best.pt")
    return folder


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundle's configs without a model; the data manifest out of reach."""
    monkeypatch.setattr("medseg.config.MANIFEST_PATH", tmp_path / "no" / "data_manifest.json")
    return make_test_bundle(tmp_path / "ct_unet", with_model=False)


def test_a_run_becomes_the_shipped_model_and_inference_needs_nothing_else(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path / "run", bundle, wrapped=True)
    assert main([str(run), "--bundle", str(bundle)]) == 0
    models = bundle / "models"
    assert sorted(p.name for p in models.iterdir()) == [
        "README.md",
        "metrics.csv",
        "model.pt",
        "model.ts",
        "model_config.json",
    ]
    assert (models / "metrics.csv").read_bytes() == (run / "metrics.csv").read_bytes()
    config = json.loads((models / "model_config.json").read_text())
    assert config["num_classes"] == 8 and config["in_channels"] == 1 and config["class_names"][0] == "Brainstem"
    state = torch.load(models / "model.pt", weights_only=True)  # a plain state dict, no "model" wrapper
    original = torch.load(run / "checkpoints" / "model_best.pt", weights_only=True)["model"]
    assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in state)
    scripted, metadata, extra = load_net_with_metadata(
        str(models / "model.ts"), more_extra_files=("model_config.json",)
    )
    assert metadata["version"] == json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert json.loads(extra["model_config.json"]) == config
    network = build_network(bundle, config)
    network.load_state_dict(state)
    x = example_input(config, seed=1)
    with torch.no_grad():
        assert torch.allclose(scripted.eval()(x), network.eval()(x), atol=1e-5)
    assert "torch.jit.script" in capsys.readouterr().out

    # the shipped model runs with its own options, whatever the bundle's defaults and without the run folder
    shutil.rmtree(run)
    segmenter = Segmenter(bundle, device="cpu")
    assert segmenter.model_config_file == models / "model_config.json"
    assert list(segmenter.inferer.roi_size) == [32, 32, 32]  # type: ignore[attr-defined]
    path = tmp_path / "phantom.nii.gz"
    sitk.WriteImage(body_phantom(), str(path))
    assert segmenter.segment(path).labels.GetSize() == (48, 40, 24)


def test_dynunet_with_deep_supervision_is_traced(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path / "run", bundle, network="dynunet", spacing=[4.0, 4.0, 4.0])
    assert main([str(run), "--bundle", str(bundle)]) == 0
    assert "torch.jit.trace" in capsys.readouterr().out


def test_refusals(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path / "run", bundle)
    assert main([str(tmp_path / "missing"), "--bundle", str(bundle)]) == 2
    assert "run_config.json: not found" in capsys.readouterr().err
    other = _run(tmp_path / "other", bundle, channels=[8, 16, 32])
    shutil.copyfile(run / "run_config.json", other / "run_config.json")  # weights of another network
    assert main([str(other), "--bundle", str(bundle)]) == 2
    assert "does not fit the network of run_config.json" in capsys.readouterr().err
    assert not (bundle / "models" / "model.pt").exists() and not list((bundle / "models").glob(".medseg-tmp-*"))
    assert main([str(run), "--bundle", str(bundle)]) == 0
    assert main([str(run), "--bundle", str(bundle)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(run), "--bundle", str(bundle), "--overwrite"]) == 0
