from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("evaluation", "inference", "networks", "reporting", "training")  # transforms: imported eagerly


@pytest.mark.parametrize("name", PACKAGES)
def test_every_export_resolves_to_its_module_attribute(name: str) -> None:
    package = importlib.import_module(f"medseg.{name}")
    exported = [(module, item) for module, items in package._EXPORTS.items() for item in items]
    assert sorted(item for _, item in exported) == sorted(package.__all__)
    for module, item in exported:
        assert getattr(package, item) is getattr(importlib.import_module(module), item)
        assert item in vars(package)  # kept: the next look-up does not go through __getattr__
    with pytest.raises(AttributeError, match=rf"module 'medseg\.{name}' has no attribute 'nothing'"):
        package.nothing  # noqa: B018


def test_importing_a_light_submodule_leaves_torch_alone() -> None:
    code = "import sys, medseg.inference.options; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
