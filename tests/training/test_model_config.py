"""The model config beside the weights: where it is found, what it must hold, what is derived from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medseg.errors import MedsegError
from medseg.training.model_config import (
    MODEL_KEYS,
    REQUIRED_KEYS,
    find_model_config,
    load_model_config,
    read_model_config,
)

# A run_config.json as training wrote it before it recorded the derived keys.
OLD_RUN_CONFIG: dict[str, Any] = {
    "dataset_name": "openkbp",
    "labels": {"background": 0, "Brainstem": 1, "SpinalCord": 2},
    "spacing": [4.688, 4.688, 2.5],
    "image_reader": "NibabelReader",
    "hu_window": "head_neck",
    "body_threshold_hu": -500,
    "spatial_dims": 2,
    "slice_neighbours": 1,
    "patch_size": [64, 64],
    "network": "unet",
    "channels": [16, 32, 64],
    "num_res_units": 2,
    "norm": "instance",
    "dropout": 0.0,
    "deep_supervision": True,
}


def _write(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def test_found_beside_the_weights_or_in_the_run_folder_above(tmp_path: Path) -> None:
    weights = tmp_path / "run" / "checkpoints" / "model_best.pt"
    assert find_model_config(weights) is None
    run_config = _write(tmp_path / "run" / "run_config.json", OLD_RUN_CONFIG)
    assert find_model_config(weights) == run_config
    beside = _write(tmp_path / "run" / "checkpoints" / "run_config.json", OLD_RUN_CONFIG)
    assert find_model_config(weights) == beside
    shipped = _write(tmp_path / "run" / "checkpoints" / "model_config.json", OLD_RUN_CONFIG)
    assert find_model_config(weights) == shipped
    # never further up than the folder above
    assert find_model_config(tmp_path / "run" / "checkpoints" / "deeper" / "more" / "model.pt") is None


def test_derived_keys_are_filled_in_for_older_run_configs(tmp_path: Path) -> None:
    config = read_model_config(_write(tmp_path / "run_config.json", OLD_RUN_CONFIG))
    assert set(MODEL_KEYS) <= set(config)
    assert config["class_names"] == ["Brainstem", "SpinalCord"]
    assert config["num_classes"] == 3
    assert config["in_channels"] == 3  # 2.5D: one neighbour on each side
    assert config["spacing"] == [4.688, 4.688, 2.5] and config["patch_size"] == [64, 64]
    assert config["dataset_name"] == "openkbp"  # other keys are kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"class_names": ["SpinalCord", "Brainstem"]}, "'class_names'"),
        ({"num_classes": 8}, "'num_classes' is 8"),
        ({"in_channels": 1}, "'in_channels'"),
        ({"labels": {"Brainstem": 1, "SpinalCord": 2}}, "include 0"),
        ({"labels": {"background": 0, "a": 1, "b": 1}}, "distinct"),
        ({"labels": {"background": 0, "a": "1"}}, "whole-number id"),
        ({"spacing": [1.0, 0.0, 1.0]}, "'spacing' must list 3 positive numbers"),
        ({"spacing": [1.0, 1.0]}, "'spacing'"),
        ({"patch_size": [64, 64, 64]}, "'patch_size' must list 2 positive whole numbers"),
        ({"spatial_dims": 4}, "'spatial_dims'"),
        ({"slice_neighbours": -1}, "'slice_neighbours'"),
        ({"dataset_name": ""}, "'dataset_name'"),
    ],
)
def test_bad_or_inconsistent_values_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path / "model_config.json", {**OLD_RUN_CONFIG, **change})
    with pytest.raises(MedsegError, match=message):
        read_model_config(path)


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    incomplete = {key: value for key, value in OLD_RUN_CONFIG.items() if key not in ("spacing", "hu_window")}
    with pytest.raises(MedsegError, match="lacks spacing, hu_window"):
        read_model_config(_write(tmp_path / "model_config.json", incomplete))
    assert {"spacing", "hu_window", "labels", "patch_size", "dataset_name"} <= set(REQUIRED_KEYS)
    with pytest.raises(MedsegError, match="JSON object"):
        read_model_config(_write(tmp_path / "list.json", [1, 2]))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(MedsegError, match="cannot read"):
        read_model_config(tmp_path / "broken.json")


def test_load_without_a_config_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    weights = tmp_path / "models" / "model.pt"
    with pytest.raises(MedsegError, match=r"model_config\.json or run_config\.json.*ship_model\.py") as caught:
        load_model_config(weights)
    assert str(tmp_path / "models") in str(caught.value)
    _write(tmp_path / "models" / "model_config.json", OLD_RUN_CONFIG)
    assert load_model_config(weights)["num_classes"] == 3
