"""Fixtures for the bundle tests: the bundle paths, a synthetic MSD folder, and running ``monai.bundle`` as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from medseg.config import REPO_ROOT
from tests.bundle.synthetic import write_synthetic_msd

BUNDLE = REPO_ROOT / "bundles" / "ct_unet"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
# Tiny but real: every run in the tests overrides the network and patch size to these.
TINY = ["--channels", "[4,8,16]", "--num_workers", "0", "--warmup_epochs", "1", "--val_interval", "1"]


@pytest.fixture(scope="session")
def synthetic_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_msd(tmp_path_factory.mktemp("synthetic-msd"), n_cases=5)


def run_bundle(args: Sequence[str], timeout: float = 240, module: Sequence[str] = ("-m", "monai.bundle")) -> str:
    """Run ``python -m monai.bundle <args>`` from the repository root; return its output, fail with it on error."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, *module, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}:\n{output[-6000:]}"
    return output
