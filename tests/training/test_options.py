from __future__ import annotations

import pytest
import torch

from medseg.errors import MedsegError
from medseg.networks import NETWORKS
from medseg.training import amp_enabled, as_bool, check_options, training_precision


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("true", True),
        ("Yes", True),
        (1, True),
        ("false", False),
        ("off", False),
        (0, False),
        (None, False),
        ("null", False),
    ],
)
def test_as_bool_accepts_what_fire_passes(value: object, expected: bool) -> None:
    assert as_bool(value, "augment") is expected


def test_as_bool_rejects_other_values_naming_the_option() -> None:
    with pytest.raises(MedsegError, match="--augment must be true or false, got 'maybe'"):
        as_bool("maybe", "augment")


def test_amp_only_on_cuda() -> None:
    assert amp_enabled(True, torch.device("cpu")) is False
    assert amp_enabled("false", torch.device("cuda")) is False
    assert amp_enabled(True, torch.device("cuda")) is True


def _check(**changes: object) -> None:
    options: dict = dict(
        network="unet",
        spatial_dims=3,
        slice_neighbours=0,
        patch_size=[32, 32, 32],
        loss="dicefocal",
        optimizer="adamw",
        networks=NETWORKS,
    )
    options.update(changes)
    check_options(**options)


def test_check_options_accepts_the_documented_modes() -> None:
    _check()
    _check(spatial_dims=2, patch_size=[64, 64])
    _check(spatial_dims=2, slice_neighbours=2, patch_size=[64, 64], network="fcn8s", loss="dicece", optimizer="sgd")
    _check(crop="posneg")
    _check(crop="classes")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"network": "vnet"}, "--network"),
        ({"spatial_dims": 1}, "--spatial_dims"),
        ({"slice_neighbours": 2}, "needs --spatial_dims 2"),
        ({"slice_neighbours": -1, "spatial_dims": 2, "patch_size": [8, 8]}, "--slice_neighbours"),
        ({"patch_size": [32, 32]}, "--patch_size"),
        ({"loss": "dice"}, "--loss"),
        ({"optimizer": "adam"}, "--optimizer"),
        ({"crop": "random"}, "--crop"),
    ],
)
def test_check_options_rejects_impossible_combinations(changes: dict, message: str) -> None:
    with pytest.raises(MedsegError, match=message):
        _check(**changes)


def test_training_precision_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import medseg.networks.factory as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "supports_bf16", lambda device: True)
    assert training_precision("auto", cpu) == "bf16"
    assert training_precision(None, cpu) == "bf16"
    assert training_precision("auto", cpu, amp=True) == "fp32"  # --amp is the mixed-precision path then
    assert training_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(precision, "supports_bf16", lambda device: False)
    assert training_precision("auto", cpu) == "fp32"  # emulated bfloat16 would be slower than fp32
    with pytest.raises(MedsegError, match="bfloat16 would be emulated"):
        training_precision("bf16", cpu)
    with pytest.raises(MedsegError, match="must be one of"):
        training_precision("fp16", cpu)
