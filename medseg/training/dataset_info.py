"""What the bundle needs to know about its training data: label names and the target voxel spacing.

A dataset of ``data_manifest.json`` answers from the manifest (labels, fingerprint median spacing). Any other
name together with ``--dataset_dir`` is read as a user's MSD / nnU-Net folder: labels from its ``dataset.json``,
spacing as the per-axis median over the images' headers (in RAS order, as ``Spacingd`` after ``Orientationd``).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.datasets import label_names, prepare_dataset, spacing_fingerprint
from medseg.datasets.fingerprint import ras_spacing_and_shape
from medseg.datasets.manifest import load_manifest
from medseg.datasets.msd import read_msd_dataset
from medseg.errors import ManifestError, MedsegError


def _in_manifest(name: str) -> bool:
    return name in load_manifest().datasets


def dataset_labels(name: str, dataset_dir: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Label name -> id (background 0 included, ids ascending) of dataset ``name`` or of the MSD folder."""
    if _in_manifest(name):
        return label_names(name)
    if dataset_dir is None:
        raise MedsegError(
            None, f"dataset {name!r} is not in data_manifest.json: pass --dataset_dir with its MSD folder"
        )
    labels = read_msd_dataset(dataset_dir).labels
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def median_spacing(folder: str | os.PathLike[str]) -> list[float]:
    """Per-axis median voxel spacing (mm, RAS order) of the images of the MSD folder ``folder`` (headers only)."""
    cases = read_msd_dataset(folder).cases
    if not cases:
        raise MedsegError(folder, "has no labelled cases to take a spacing from")
    spacings = [ras_spacing_and_shape(nib.load(str(case.image)))[0] for case in cases]
    return [float(v) for v in np.median(np.asarray(spacings), axis=0)]


def target_spacing(
    name: str, dataset_dir: str | os.PathLike[str] | None = None, max_cases: int | None = None
) -> list[float]:
    """The training target spacing: the manifest fingerprint's median spacing, else the folder's median spacing."""
    if _in_manifest(name):
        try:
            return spacing_fingerprint(name)
        except ManifestError:  # no fingerprint recorded yet: measure the imported cases
            return median_spacing(prepare_dataset(name, dataset_dir, max_cases))
    if dataset_dir is None:
        raise MedsegError(
            None, f"dataset {name!r} is not in data_manifest.json: pass --dataset_dir with its MSD folder"
        )
    return median_spacing(Path(dataset_dir))


def class_names(labels: dict[str, int]) -> list[str]:
    """The organ names in label-id order, background (id 0) left out."""
    return [name for name, index in sorted(labels.items(), key=lambda item: item[1]) if index > 0]
