"""Builders of small synthetic inputs shared by the dataset tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np


def write_sparse_csv(path: Path, index: Sequence[int], values: Sequence[float] | None = None) -> None:
    """An OpenKBP sparse CSV: header ',data', rows 'index,value' (value empty for masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{i},{'' if values is None else values[n]}" for n, i in enumerate(index)]
    path.write_text(",data\n" + "".join(row + "\n" for row in rows), encoding="ascii")


def write_openkbp_case(
    case_dir: Path,
    spacing: Sequence[float],
    ct: Mapping[int, float],
    masks: Mapping[str, Sequence[int]],
) -> None:
    """A synthetic OpenKBP case folder: ct.csv (flat index -> raw value), voxel_dimensions.csv, <Organ>.csv."""
    write_sparse_csv(case_dir / "ct.csv", list(ct), list(ct.values()))
    (case_dir / "voxel_dimensions.csv").write_text("".join(f"{s:.18e}\n" for s in spacing), encoding="ascii")
    for name, index in masks.items():
        write_sparse_csv(case_dir / f"{name}.csv", index)


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save ``array`` (x, y, z) as NIfTI with ``affine`` (default identity)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


def write_msd_folder(
    folder: Path,
    case_ids: Sequence[str],
    labels: Mapping[str, int] | None = None,
    style: str = "msd",
    shape: tuple[int, int, int] = (6, 5, 4),
) -> Path:
    """A small MSD (``style="msd"``) or nnU-Net v2 (``style="nnunetv2"``) folder: image values = case number,
    label = 1 in a 2x2x2 block."""
    labels = dict(labels or {"background": 0, "organ": 1})
    for n, case_id in enumerate(case_ids):
        image = np.full(shape, float(n), np.float32)
        label = np.zeros(shape, np.uint8)
        label[1:3, 1:3, 1:3] = 1
        image_name = f"{case_id}_0000.nii.gz" if style == "nnunetv2" else f"{case_id}.nii.gz"
        write_nifti(folder / "imagesTr" / image_name, image)
        write_nifti(folder / "labelsTr" / f"{case_id}.nii.gz", label)
    if style == "nnunetv2":
        content: dict[str, object] = {
            "channel_names": {"0": "CT"},
            "labels": labels,
            "numTraining": len(case_ids),
            "file_ending": ".nii.gz",
        }
    else:
        content = {
            "name": "Synthetic",
            "modality": {"0": "CT"},
            "labels": {str(v): k for k, v in labels.items()},
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids],
        }
    (folder / "dataset.json").write_text(json.dumps(content), encoding="utf-8")
    return folder
