from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import cache_root
from medseg.datasets.datalist import ensure_cases
from medseg.datasets.fingerprint import compute_fingerprint, fingerprint_to_json
from medseg.datasets.manifest import load_manifest
from medseg.datasets.msd import write_msd_dataset_json
from medseg.datasets.openkbp import openkbp_affine
from tests.datasets.synthetic import write_nifti


def test_spacing_in_ras_order_and_foreground_intensities(tmp_path: Path) -> None:
    # OpenKBP-style affine: array axes (A->P, R->L, S->I) with sizes s0, s1, s2 -> RAS x has s1, y has s0.
    spacings = [(1.0, 2.0, 3.0), (1.0, 4.0, 5.0), (1.0, 6.0, 7.0)]
    for n, spacing in enumerate(spacings):
        image = np.full((4, 5, 6), -1000, np.int16)
        image[0, 0, :] = 100 * (n + 1)  # the labelled voxels hold 100, 200, 300
        label = np.zeros((4, 5, 6), np.uint8)
        label[0, 0, :] = 1
        write_nifti(tmp_path / "imagesTr" / f"c{n}.nii.gz", image, openkbp_affine(spacing))
        write_nifti(tmp_path / "labelsTr" / f"c{n}.nii.gz", label, openkbp_affine(spacing))
    write_msd_dataset_json(tmp_path, "t", "t", {"organ": 1}, ["c0", "c1", "c2"])
    fingerprint = compute_fingerprint(tmp_path, samples_per_case=50)
    assert fingerprint.n_cases == 3
    assert fingerprint.median_spacing_ras == (4.0, 1.0, 5.0)
    assert fingerprint.median_shape_ras == (5, 4, 6)
    stats = fingerprint.intensity
    assert (stats.min, stats.max, stats.median) == (100.0, 300.0, 200.0)
    assert stats.mean == pytest.approx(200.0) and stats.std == pytest.approx(np.sqrt(20000 / 3))
    assert compute_fingerprint(tmp_path, case_ids=["c2"]).median_spacing_ras == (6.0, 1.0, 7.0)
    assert fingerprint_to_json(fingerprint)["median_spacing_ras"] == [4.0, 1.0, 5.0]


@pytest.mark.data
def test_stored_openkbp_fingerprint_is_reproducible(data_root: Path) -> None:
    stored = load_manifest().dataset("openkbp").fingerprint
    assert stored is not None
    dataset = load_manifest().dataset("openkbp")
    case_ids = dataset.fingerprint_case_ids()  # the 34 fully contoured cases (imports only those)
    folder = ensure_cases(dataset, case_ids, cache_root() / "datasets" / "openkbp")
    fresh = fingerprint_to_json(compute_fingerprint(folder, case_ids))
    assert fresh["median_spacing_ras"] == list(stored.median_spacing_ras) == [4.688, 4.688, 2.5]
    assert fresh["intensity"]["percentile_99_5"] == stored.intensity.percentile_99_5
    assert fresh["intensity"]["percentile_00_5"] == stored.intensity.percentile_00_5
    assert fresh["n_cases"] == 34
