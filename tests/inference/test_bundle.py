"""Finding the bundle, its label names and its weights; the errors a user sees when something is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medseg.config import REPO_ROOT
from medseg.errors import InputError, MedsegError
from medseg.inference.bundle import (
    inference_config_files,
    label_names_from_metadata,
    load_weights,
    read_metadata,
    resolve_bundle,
)


def test_default_bundle_resolves_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle("bundles/ct_unet") == (REPO_ROOT / "bundles" / "ct_unet").resolve()


def test_no_bundle_named_is_the_environment_variable_else_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDSEG_BUNDLE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle(None) == (REPO_ROOT / "bundles" / "ct_unet").resolve()  # the package's link to it
    other = tmp_path / "other"
    (other / "configs").mkdir(parents=True)
    (other / "configs" / "inference.json").write_text("{}")
    monkeypatch.setenv("MEDSEG_BUNDLE", str(other))
    assert resolve_bundle(None) == other.resolve()
    assert resolve_bundle("bundles/ct_unet") == (REPO_ROOT / "bundles" / "ct_unet").resolve()  # named: wins
    monkeypatch.setenv("MEDSEG_BUNDLE", str(tmp_path / "gone"))
    with pytest.raises(InputError, match="bundle folder not found"):
        resolve_bundle(None)


def test_a_bundle_in_the_working_directory_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "bundles" / "ct_unet" / "configs"
    local.mkdir(parents=True)
    (local / "inference.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_bundle("bundles/ct_unet") == (tmp_path / "bundles" / "ct_unet").resolve()


def test_missing_or_incomplete_bundle(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="bundle folder not found"):
        resolve_bundle(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"configs/inference\.json"):
        resolve_bundle(tmp_path)


def test_the_shipped_inference_config_stands_alone_and_an_overlay_reads_train_json_first(tmp_path: Path) -> None:
    assert [f.name for f in inference_config_files(REPO_ROOT / "bundles" / "ct_unet")] == ["inference.json"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text('{"output_dir": "out"}')
    (tmp_path / "configs" / "train.json").write_text("{}")
    assert [f.name for f in inference_config_files(tmp_path)] == ["train.json", "inference.json"]


def test_label_names_come_from_the_metadata_channel_def() -> None:
    bundle = REPO_ROOT / "bundles" / "ct_unet"
    names = label_names_from_metadata(read_metadata(bundle), bundle)
    assert names == {
        1: "Brainstem",
        2: "SpinalCord",
        3: "RightParotid",
        4: "LeftParotid",
        5: "Esophagus",
        6: "Larynx",
        7: "Mandible",
    }
    with pytest.raises(InputError, match="channel_def"):
        label_names_from_metadata({"network_data_format": {}}, bundle)
    bad = {"network_data_format": {"outputs": {"pred": {"channel_def": {"0": "bg", "2": "x"}}}}}
    with pytest.raises(InputError, match=r"0\.\.C-1"):
        label_names_from_metadata(bad, bundle)


def test_missing_weights_say_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(MedsegError, match=r"monai.bundle run training --config_file .*train.json") as raised:
        load_weights(torch.nn.Linear(2, 2), tmp_path / "models" / "model.pt", tmp_path)
    assert "model_best.pt" in str(raised.value)


def test_weights_load_plain_or_wrapped_and_must_fit(tmp_path: Path) -> None:
    source = torch.nn.Linear(3, 2)
    plain, wrapped, wrong = tmp_path / "plain.pt", tmp_path / "wrapped.pt", tmp_path / "wrong.pt"
    torch.save(source.state_dict(), plain)
    torch.save({"model": source.state_dict()}, wrapped)
    torch.save(torch.nn.Linear(4, 2).state_dict(), wrong)
    for path in (plain, wrapped):
        target = torch.nn.Linear(3, 2)
        digest = load_weights(target, path, tmp_path)
        assert len(digest) == 64
        assert torch.equal(target.weight, source.weight)
    with pytest.raises(MedsegError, match="does not fit the bundle's network"):
        load_weights(torch.nn.Linear(3, 2), wrong, tmp_path)
    (tmp_path / "junk.pt").write_text(json.dumps({"not": "torch"}))
    with pytest.raises(MedsegError, match="cannot be loaded"):
        load_weights(torch.nn.Linear(3, 2), tmp_path / "junk.pt", tmp_path)
