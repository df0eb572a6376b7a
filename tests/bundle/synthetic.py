"""A tiny synthetic MSD dataset for fast bundle tests: a body ellipsoid in air with three "organs".

The images carry an OpenKBP-like affine (array axes P, L, I) so that ``Orientationd("RAS")`` really reorders and
flips them, and ``Invertd`` must undo it; sizes are small enough for CPU training steps in a fraction of a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

LABELS = {"background": 0, "Ball": 1, "Rod": 2, "Bone": 3}
SHAPE = (40, 36, 28)  # array axes: anterior->posterior, right->left, superior->inferior
SPACING = (4.0, 4.0, 3.0)


def synthetic_affine(spacing: tuple[float, float, float] = SPACING) -> np.ndarray:
    """OpenKBP's array-to-RAS affine: index (i, j, k) -> (-j*s1, -i*s0, -k*s2) + origin."""
    s0, s1, s2 = spacing
    return np.array([[0, -s1, 0, 10.0], [-s0, 0, 0, 20.0], [0, 0, -s2, 30.0], [0, 0, 0, 1]])


def make_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image int16 HU, label uint8) of one synthetic case; ``seed`` shifts the organs a little."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    centre = np.array(SHAPE) / 2 + rng.integers(-2, 3, size=3)
    body = ((i - centre[0]) / 15) ** 2 + ((j - centre[1]) / 13) ** 2 + ((k - centre[2]) / 20) ** 2 <= 1
    image = np.full(SHAPE, -1024, dtype=np.int16)
    image[body] = 20
    label = np.zeros(SHAPE, dtype=np.uint8)
    ball = ((i - centre[0] + 5) ** 2 + (j - centre[1] - 4) ** 2 + (k - centre[2]) ** 2) <= 16
    rod = (np.abs(i - centre[0] - 6) <= 1) & (np.abs(j - centre[1]) <= 1) & body
    bone = ((i - centre[0] + 6) ** 2 + (j - centre[1] + 5) ** 2 <= 9) & (np.abs(k - centre[2] + 3) <= 4)
    for value, mask, hu in ((1, ball, 60), (2, rod, 35), (3, bone, 700)):
        label[mask] = value
        image[mask] = hu
    image = (image + rng.normal(0, 10, SHAPE) * body).astype(np.int16)
    return image, label


def write_synthetic_msd(folder: Path, n_cases: int = 5) -> Path:
    """Write ``imagesTr``, ``labelsTr`` and an MSD ``dataset.json`` of ``n_cases`` cases into ``folder``."""
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for index in range(n_cases):
        case_id = f"case_{index:03d}"
        image, label = make_case(index)
        nib.save(nib.Nifti1Image(image, synthetic_affine()), folder / "imagesTr" / f"{case_id}.nii.gz")
        nib.save(nib.Nifti1Image(label, synthetic_affine()), folder / "labelsTr" / f"{case_id}.nii.gz")
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    dataset = {
        "name": "synthetic",
        "modality": {"0": "CT"},
        "labels": {str(v): k for k, v in LABELS.items()},
        "numTraining": n_cases,
        "training": training,
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return folder
