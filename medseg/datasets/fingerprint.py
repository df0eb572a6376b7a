"""Dataset fingerprint, nnU-Net v2 style: median spacing and shape, and CT intensity statistics inside the labels.

As nnU-Net's ``DatasetFingerprintExtractor``: per case, ``numpy.random.RandomState(seed).choice(foreground,
samples_per_case, replace=True)`` of the image values where the label is > 0 (10,000 samples, seed 1234), and
the statistics (mean, std, min, max, median, 0.5th and 99.5th percentiles) of all samples pooled. The median
spacing is the training target spacing (nnU-Net would switch to the 10th percentile along an axis whose spacing
is over 3x the others; OpenKBP's 2.5-3 mm vs 3.9-5.4 mm is not).

Spacing and shape are given in RAS axis order (x, y, z), which is the array order MONAI produces after
``Orientationd(axcodes="RAS")``, so the training bundle can hand them to ``Spacingd`` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.datasets.manifest import Fingerprint, IntensityStats
from medseg.errors import InputError
from medseg.io.files import read_json_object

SAMPLES_PER_CASE = 10_000
SEED = 1234


def ras_spacing_and_shape(image: nib.filebasedimages.FileBasedImage) -> tuple[list[float], list[int]]:
    """Voxel size (mm) and array size of ``image`` (what ``nibabel.load`` returns) along RAS x, y, z, the array
    axes permuted by its affine."""
    if not isinstance(image, nib.spatialimages.SpatialImage) or image.affine is None:
        raise InputError(image.get_filename(), "not a 3D image with an affine")
    ornt = nib.io_orientation(image.affine)  # row = array axis: (RAS axis it maps to, flip)
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    spacing = [0.0, 0.0, 0.0]
    shape = [0, 0, 0]
    for array_axis, (ras_axis, _) in enumerate(ornt):
        spacing[int(ras_axis)] = zooms[array_axis]
        shape[int(ras_axis)] = int(image.shape[array_axis])
    return spacing, shape


def _load_nifti(path: Path) -> nib.Nifti1Image:
    try:
        image = nib.load(path)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise InputError(path, f"cannot read as NIfTI: {err}") from None
    if not isinstance(image, nib.Nifti1Image):
        raise InputError(path, f"expected a NIfTI-1 image, got {type(image).__name__}")
    return image


def compute_fingerprint(
    dataset_dir: str | Path,
    case_ids: Sequence[str] | None = None,
    samples_per_case: int = SAMPLES_PER_CASE,
    seed: int = SEED,
) -> Fingerprint:
    """Fingerprint of the MSD folder ``dataset_dir`` (``dataset.json`` + ``imagesTr``/``labelsTr``).

    Args:
        case_ids: only these cases (default: every ``training`` entry of ``dataset.json``).
        samples_per_case: foreground voxels drawn (with replacement) per case.
        seed: RandomState seed, reset for each case as nnU-Net does.
    """
    dataset_dir = Path(dataset_dir)
    entries = read_json_object(dataset_dir / "dataset.json", "the MSD dataset.json").get("training")
    if not isinstance(entries, list):
        raise InputError(dataset_dir / "dataset.json", "cannot read the MSD training list: no 'training' list")
    pairs = [(dataset_dir / e["image"], dataset_dir / e["label"]) for e in entries]
    if case_ids is not None:
        wanted = set(case_ids)
        pairs = [p for p in pairs if p[0].name.removesuffix(".gz").removesuffix(".nii") in wanted]
    if not pairs:
        raise InputError(dataset_dir, "no cases to fingerprint")
    spacings, shapes, samples = [], [], []
    for image_path, label_path in pairs:
        image, label = _load_nifti(image_path), _load_nifti(label_path)
        spacing, shape = ras_spacing_and_shape(image)
        spacings.append(spacing)
        shapes.append(shape)
        foreground = np.asarray(image.dataobj)[np.asarray(label.dataobj) > 0]
        if foreground.size:
            samples.append(np.random.RandomState(seed).choice(foreground, samples_per_case, replace=True))
    if not samples:
        raise InputError(dataset_dir, "no labelled voxels in any case")
    pooled = np.concatenate(samples).astype(np.float64)
    median_spacing = np.median(np.array(spacings), axis=0)
    median_shape = np.median(np.array(shapes), axis=0)
    return Fingerprint(
        n_cases=len(pairs),
        median_spacing_ras=(float(median_spacing[0]), float(median_spacing[1]), float(median_spacing[2])),
        median_shape_ras=(int(median_shape[0]), int(median_shape[1]), int(median_shape[2])),
        intensity=IntensityStats(
            mean=float(pooled.mean()),
            std=float(pooled.std()),
            min=float(pooled.min()),
            max=float(pooled.max()),
            median=float(np.median(pooled)),
            percentile_00_5=float(np.percentile(pooled, 0.5)),
            percentile_99_5=float(np.percentile(pooled, 99.5)),
        ),
        samples_per_case=samples_per_case,
        seed=seed,
    )


def fingerprint_to_json(fingerprint: Fingerprint) -> dict[str, object]:
    """The manifest's JSON form of ``fingerprint`` (rounded to 4 decimals: float32 NIfTI spacings)."""
    stats = fingerprint.intensity
    return {
        "n_cases": fingerprint.n_cases,
        "median_spacing_ras": [round(s, 4) for s in fingerprint.median_spacing_ras],
        "median_shape_ras": list(fingerprint.median_shape_ras),
        "intensity": {key: round(float(getattr(stats, key)), 4) for key in stats.__dataclass_fields__},
        "samples_per_case": fingerprint.samples_per_case,
        "seed": fingerprint.seed,
        "computed_by": "medseg.datasets.fingerprint.compute_fingerprint on the imported NIfTI (nnU-Net v2 style)",
    }


def store_fingerprint(manifest_path: str | Path, name: str, fingerprint: Fingerprint) -> None:
    """Write ``fingerprint`` into dataset ``name`` of the manifest file (atomically; other content unchanged)."""
    from medseg.datasets.manifest import dump_json
    from medseg.errors import ManifestError
    from medseg.io.files import atomic_path

    manifest_path = Path(manifest_path)
    raw = read_json_object(manifest_path, "the manifest", ManifestError)
    if name not in raw.get("datasets", {}):
        raise ManifestError(manifest_path, f"no dataset {name!r} to store a fingerprint in")
    raw["datasets"][name]["fingerprint"] = fingerprint_to_json(fingerprint)
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(dump_json(raw), encoding="utf-8")
