from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import MedsegError
from medseg.training import dataset_labels, median_spacing, target_spacing
from tests.bundle.synthetic import LABELS, write_synthetic_msd


def test_user_msd_folder_gives_labels_and_ras_median_spacing(tmp_path: Path) -> None:
    folder = write_synthetic_msd(tmp_path / "msd", n_cases=2)
    assert dataset_labels("mine", folder) == LABELS
    # the array axes are (P, L, I) with spacing (4, 4, 3): in RAS order x <- axis 1, y <- axis 0, z <- axis 2
    assert median_spacing(folder) == [4.0, 4.0, 3.0]
    assert target_spacing("mine", folder) == [4.0, 4.0, 3.0]


def test_manifest_dataset_labels_need_no_data() -> None:
    labels = dataset_labels("openkbp")
    assert labels["background"] == 0 and labels["Mandible"] == 7 and len(labels) == 8


def test_unknown_dataset_without_folder_is_a_user_error() -> None:
    with pytest.raises(MedsegError, match="--dataset_dir"):
        dataset_labels("nosuchdata")
    with pytest.raises(MedsegError, match="--dataset_dir"):
        target_spacing("nosuchdata")
