"""``pip install`` of the project, not editable, outside the checkout: the wheel carries the default bundle (configs,
weights, model config) and its ``medseg`` segments a real scan with it.

The wheel is built from a copy of the sources (``pip wheel --no-deps --no-build-isolation``) and installed with
``--no-deps`` into a fresh virtual environment whose dependencies come from this interpreter's site-packages through a
``.pth`` file: no network, and no medseg but the wheel's on the path (no ``PYTHONPATH``, working directory outside
the checkout).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config import REPO_ROOT
from medseg.inference.bundle import BUNDLE_ENV, file_sha256

SHIPPED_WEIGHTS = REPO_ROOT / "bundles" / "ct_unet" / "models" / "model.pt"


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)}: exit {result.returncode}\n{output[-4000:]}"
    return output


def _build_wheel(tmp_path: Path, env: dict[str, str]) -> Path:
    """The wheel built from a copy of what the build reads (the package keeps its link to ``bundles/ct_unet``)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "model.ts")
    for name in ("medseg", "bundles"):
        shutil.copytree(REPO_ROOT / name, source / name, symlinks=True, ignore=skip)
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."]
    _run([*command, "--disable-pip-version-check", "-q"], source, env, timeout=900)
    (wheel,) = wheels.glob("medseg-*.whl")
    return wheel


def _fresh_venv(folder: Path, wheel: Path, env: dict[str, str]) -> Path:
    """A virtual environment with the wheel installed and this interpreter's packages (minus medseg's editable
    hook: a path in a ``.pth`` file is added to ``sys.path``, the ``.pth`` files inside it are not run)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=600)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout.strip()
    (Path(purelib) / "medseg-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    command = [str(python), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q", str(wheel)]
    _run(command, folder, env, timeout=900)
    return folder


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.timeout(3600)  # a wheel, a venv and a real scan on a shared 2-core machine
def test_the_installed_wheel_segments_a_real_scan_with_its_shipped_model(data_root: Path, tmp_path: Path) -> None:
    from medseg.datasets import prepare_dataset

    scan = sorted((Path(prepare_dataset("openkbp", max_cases=1)) / "imagesTr").glob("*.nii.gz"))[0]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", BUNDLE_ENV)}
    env.update(PYTHONWARNINGS="ignore", MEDSEG_CACHE=str(tmp_path / "cache"))
    wheel = _build_wheel(tmp_path, env)
    venv = _fresh_venv(tmp_path / "venv", wheel, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import medseg.inference.bundle as b; print(b.__file__); print(b.default_bundle())",
        ],
        elsewhere,
        env,
        timeout=600,
    ).split()
    installed = venv.resolve()
    assert all(Path(path).resolve().is_relative_to(installed) for path in where), where

    _run(
        [str(venv / "bin" / "medseg"), "segment", str(scan), "out", "--device", "cpu", "--no-progress"],
        elsewhere,
        env,
        timeout=1800,
    )
    case_id = scan.name.removesuffix(".nii.gz")
    record = json.loads((elsewhere / "out" / case_id / "case.json").read_text())
    assert record["settings"]["model_sha256"] == file_sha256(SHIPPED_WEIGHTS)  # the shipped model, from the wheel
    source = nib.load(scan)
    mask = nib.load(elsewhere / "out" / case_id / f"{case_id}_seg.nii.gz")
    assert mask.shape == source.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)
    assert set(np.unique(np.asarray(mask.dataobj)).tolist()) == set(range(8))  # all 7 organs found
