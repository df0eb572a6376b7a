from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medseg.reporting.qa import OPENKBP_VOLUMES, ExpectedVolume, QAFlag, qa_flags, touching_faces
from medseg.reporting.volumes import image_volumes_ml

NAMES = {1: "Brainstem", 2: "SpinalCord", 3: "Larynx"}


def _labels(direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    """40 x 40 x 20 voxels of 1 x 1 x 2.5 mm: Brainstem 3000 voxels = 7.5 mL inside the volume, SpinalCord a
    column through the z = 0 face, Larynx absent."""
    array = np.zeros((20, 40, 40), dtype=np.uint8)
    array[5:15, 10:25, 10:30] = 1
    array[0:4, 30:33, 18:21] = 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 2.5))
    image.SetDirection(direction)
    return image


def test_flags_by_hand() -> None:
    expected = {"Brainstem": ExpectedVolume(24.2, 26.8, 31.1)}  # far-out fences 11.4 .. 65.8 mL
    flags = qa_flags(_labels(), NAMES, expected, geometry_repairs=["filled 1 missing slice"])
    assert [str(flag) for flag in flags] == [
        "geometry_repaired",
        "volume_low:Brainstem",
        "touches_border:SpinalCord",
        "missing:Larynx",
    ]
    assert flags[0].detail == "filled 1 missing slice"
    assert flags[1].detail == "7.5 mL < 11.4 mL"
    assert flags[2] == QAFlag("touches_border", "SpinalCord", "reaches the inferior border of the scan")
    assert qa_flags(_labels(), {1: "Brainstem"}, {"Brainstem": ExpectedVolume(5.0, 7.0, 9.0)}) == []
    assert [str(f) for f in qa_flags(_labels(), {1: "Brainstem"}, {"Brainstem": ExpectedVolume(0.1, 0.1, 0.2)})] == [
        "volume_high:Brainstem"
    ]


def test_border_faces_follow_the_direction() -> None:
    mask = np.zeros((3, 4, 5), dtype=bool)
    mask[0, 1, 4] = True  # z = 0 and x = last
    assert touching_faces(mask, np.eye(3)) == ["left", "inferior"]
    # Axes flipped (RAS-stored data read into ITK): x runs to the right, z runs down.
    assert touching_faces(mask, np.diag([-1.0, 1.0, -1.0])) == ["right", "superior"]
    # Axes permuted (sagittal slices): image x is anterior-posterior.
    permuted = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)  # columns: x->P, y->I, z->L
    assert touching_faces(mask, permuted) == ["posterior", "right"]
    # A label array and a value: the same faces as the value's mask, and none for another value.
    labels = mask.astype(np.uint8) * 3
    labels[1, 1, 1] = 5  # inside: touches nothing
    for direction in (np.eye(3), np.diag([-1.0, 1.0, -1.0]), permuted):
        assert touching_faces(labels, direction, value=3) == touching_faces(labels == 3, direction)
    assert touching_faces(labels, np.eye(3), value=5) == []


def test_volumes_passed_in_are_used_instead_of_counted() -> None:
    counted = qa_flags(_labels(), {1: "Brainstem"})
    assert qa_flags(_labels(), {1: "Brainstem"}, volumes_ml={1: 0.0}) == [
        QAFlag("missing", "Brainstem", "no voxel has this label")
    ]
    volumes = image_volumes_ml(_labels(), {1: "Brainstem"})
    assert qa_flags(_labels(), {1: "Brainstem"}, volumes_ml=volumes) == counted


def test_fences_and_validation() -> None:
    low, high = ExpectedVolume(10.0, 15.0, 20.0).fences_ml(k=1.0)
    assert (low, high) == pytest.approx((5.0, 40.0))
    with pytest.raises(ValueError):
        ExpectedVolume(30.0, 20.0, 40.0)


@pytest.mark.data
def test_openkbp_quartiles_match_the_data(data_root: Path) -> None:
    datalist = json.loads((data_root / "openkbp/datalist.json").read_text())
    volumes: dict[str, list[float]] = {}
    for case in datalist["cases"]:
        spacing = np.loadtxt(data_root / "openkbp" / case["voxel_dimensions"])
        for organ, csv in case["labels"].items():
            with open(data_root / "openkbp" / csv) as rows:
                voxels = sum(1 for _ in rows) - 1  # header ",data", then one row per voxel
            volumes.setdefault(organ, []).append(voxels * float(np.prod(spacing)) / 1000.0)
    assert set(volumes) == set(OPENKBP_VOLUMES)
    for organ, values in volumes.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        table = OPENKBP_VOLUMES[organ]
        assert (table.q1_ml, table.median_ml, table.q3_ml) == pytest.approx((q1, median, q3), abs=0.051), organ
        low, high = table.fences_ml()
        assert all(low < v < high for v in values), organ  # no reference case is "far out"
