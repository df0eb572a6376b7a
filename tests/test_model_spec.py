"""The model config beside the weights (medseg.model_spec): where it is found, what it must hold, what is derived
from it, and that it is data, never code (issue 11.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medseg.errors import MedsegError
from medseg.model_spec import (
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


def _payload(marker: Path) -> str:
    return f"$__import__('os').system('touch {marker}')"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hu_window", "payload"),
        ("norm", "payload"),
        ("network", "payload"),
        ("dataset_name", "payload"),
        ("image_reader", "payload"),
        ("channels", ["payload", 32]),
        ("spacing", [1.0, "payload", 1.0]),
        ("patch_size", "payload"),
        ("num_res_units", "payload"),
        ("dropout", "payload"),
        ("deep_supervision", "payload"),
        ("body_threshold_hu", "payload"),
        ("class_names", ["payload"]),
        ("network", {"_target_": "os.system", "command": "touch MARKER"}),
        ("norm", {"_target_": "os.system", "command": "touch MARKER"}),
        ("_target_", "os.system"),
        ("network_def", {"_target_": "os.system", "command": "touch MARKER"}),
        ("imports", ["payload"]),
        ("hu_window", "@network_def"),
        ("hu_window", "%configs/train.json#network_def"),
    ],
)
def test_a_model_folder_config_is_data_not_code(tmp_path: Path, key: str, value: Any) -> None:
    """Issue 11.1: a model config with a $ expression, an @ reference, a % macro or a _target_ component in any key
    is refused with one line naming the file and the key, and nothing in it runs, in any reader of it."""
    from medseg.model_spec import check_model_config, load_model_config, read_model_spec

    marker = tmp_path / "EXECUTED"
    payload = json.loads(
        json.dumps(value).replace('"payload"', json.dumps(_payload(marker))).replace("MARKER", str(marker))
    )
    path = _write(tmp_path / "models" / "model_config.json", {**OLD_RUN_CONFIG, key: payload})
    for read in (read_model_config, read_model_spec, lambda p: load_model_config(p.parent / "model.pt")):
        with pytest.raises(MedsegError) as caught:
            read(path)
        message = str(caught.value)
        assert "\n" not in message and str(path) in message and key in message
    with pytest.raises(MedsegError, match=key):
        check_model_config({**OLD_RUN_CONFIG, key: payload}, path)
    assert not marker.exists()


def test_malicious_label_names_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "EXECUTED"
    labels = {"background": 0, _payload(marker): 1}
    path = _write(tmp_path / "model_config.json", {**OLD_RUN_CONFIG, "labels": labels})
    with pytest.raises(MedsegError, match=r"'labels' name") as caught:
        read_model_config(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    for name in ("a#b", "@x", "", "x" * 65, "line\nbreak"):
        with pytest.raises(MedsegError, match="'labels' name"):
            read_model_config(
                _write(tmp_path / "model_config.json", {**OLD_RUN_CONFIG, "labels": {"background": 0, name: 1}})
            )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spacing": [1.0, 1.0, 1e9]}, "'spacing'"),
        ({"patch_size": [64, 100000]}, "'patch_size'"),
        ({"channels": [16, 10**9]}, "'channels'"),
        ({"dropout": 1.5}, "'dropout'"),
        ({"hu_window": [200, -100]}, "'hu_window'"),
        ({"hu_window": "nonsense"}, "'hu_window'"),
        ({"norm": "group"}, "'norm'"),
        ({"deep_supervision": 1}, "'deep_supervision'"),
        ({"labels": {"background": 0, "a": 300}}, "0..255"),
        ({"spatial_dims": 3, "slice_neighbours": 1, "patch_size": [64, 64, 64]}, "needs 'spatial_dims' 2"),
    ],
)
def test_values_out_of_range_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(MedsegError, match=message):
        read_model_config(_write(tmp_path / "model_config.json", {**OLD_RUN_CONFIG, **change}))


def test_the_model_keys_are_the_spec_fields_and_the_spec_builds_the_network(tmp_path: Path) -> None:
    from dataclasses import FrozenInstanceError, fields

    from medseg.model_spec import ModelSpec, read_model_spec

    assert tuple(f.name for f in fields(ModelSpec)) == MODEL_KEYS and len(MODEL_KEYS) == 16
    spec = read_model_spec(_write(tmp_path / "run_config.json", OLD_RUN_CONFIG))
    assert spec.label_names() == {1: "Brainstem", 2: "SpinalCord"} and spec.in_channels == 3
    assert read_model_config(tmp_path / "run_config.json") == {
        "dataset_name": "openkbp",
        "image_reader": "NibabelReader",
        **spec.as_config(),
    }
    network = spec.build_network()
    assert sum(p.numel() for p in network.parameters()) > 0
    with pytest.raises(FrozenInstanceError):
        spec.network = "fcn8s"  # type: ignore[misc]
