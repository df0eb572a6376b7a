"""Session fixtures for the inference tests: one test bundle with seeded random weights, one Segmenter."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.inference.segmenter import Segmenter
from tests.inference.helpers import make_test_bundle


@pytest.fixture(scope="session")
def test_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_bundle(tmp_path_factory.mktemp("bundle") / "ct_unet")


@pytest.fixture(scope="session")
def segmenter(test_bundle: Path) -> Segmenter:
    return Segmenter(test_bundle, device="cpu")


@pytest.fixture(scope="session")
def openkbp_images(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two OpenKBP cases imported as NIfTI (int16 HU, the challenge's 128^3 grids)."""
    from medseg.datasets import prepare_dataset

    # An explicit folder: session fixtures run before the per-test cache isolation of tests/conftest.py.
    folder = Path(prepare_dataset("openkbp", tmp_path_factory.mktemp("openkbp"), max_cases=2))
    return sorted((folder / "imagesTr").glob("*.nii.gz"))
