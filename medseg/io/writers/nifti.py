"""The label map as NIfTI, the format every tool reads; named ``<case>_seg.nii.gz`` so Slicer loads it as a label
map (Slicer treats a file as a label map when its name matches ``(\\b|_)(label(s)?|seg)(\\b|_)``)."""

from __future__ import annotations

import os
from pathlib import Path

import SimpleITK as sitk

from medseg.io.files import atomic_path
from medseg.io.writers.geometry import check_label_image

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def write_label_nifti(labels: sitk.Image, path: str | os.PathLike[str]) -> Path:
    """Write a uint8 label map (x, y, z) to ``path`` (``.nii.gz`` or ``.nii``) atomically, geometry unchanged.

    NIfTI stores spacing, origin and direction as float32 (qform and sform), so they come back to float32
    precision (about 1e-7 relative), not bit for bit; the voxels and the size are exact.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: a NIfTI label map must end in .nii.gz or .nii")
    check_label_image(labels)
    with atomic_path(path) as tmp:
        sitk.WriteImage(labels, str(tmp), useCompression=True)
    return path
