"""The inputs the benchmarks run on, each built once into ``cache_root()/benchmarks`` and reused.

* ``openkbp_case()``: the first OpenKBP case in manifest order, imported by
  :func:`medseg.datasets.prepare_dataset` (128^3 NIfTI).
* ``lung1_1mm()``: ``pyradiomics/lung1_image.nrrd`` (512 x 512 x 48 at 0.57 x 0.57 x 5 mm) resampled with SimpleITK
  to 1 mm slices (linear, rounded to int16, same origin and direction): 512 x 512 x 236, a realistic full-size chest CT.
* ``synthetic_ct(size)``: an int16 CT-like phantom (air, an elliptic body of soft tissue with noise, two lungs, a
  spine, a couch below the body that a body crop must drop), 1 mm voxels, uncompressed NIfTI.
* ``dicom_series()``: the two DICOM series of the ingestion benchmark (IBSI STS_019, TotalSegmentator JPEG 2000).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.config import cache_root, data_root
from medseg.errors import MedsegError
from medseg.io.files import atomic_path

LUNG1_SLICE_MM = 1.0
SYNTHETIC_SPACING_MM = (1.0, 1.0, 1.0)


def bench_cache() -> Path:
    """``cache_root()/benchmarks`` (created)."""
    folder = cache_root() / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def openkbp_case() -> tuple[Path, Path]:
    """(image, label) NIfTI paths of the first OpenKBP case in manifest order (the one
    ``prepare_dataset("openkbp", max_cases=1)`` imports), imported into the cache on first use."""
    from medseg.datasets import prepare_dataset
    from medseg.datasets.manifest import load_manifest

    case_id = load_manifest().dataset("openkbp").cases[0].case_id
    folder = Path(prepare_dataset("openkbp", max_cases=1))
    image, label = folder / "imagesTr" / f"{case_id}.nii.gz", folder / "labelsTr" / f"{case_id}.nii.gz"
    if not image.is_file():
        raise MedsegError(image, "is missing after the OpenKBP import")
    return image, label


def lung1_1mm() -> Path:
    """``lung1_image.nrrd`` resampled to 1 mm slices (512 x 512 x 236 int16 NIfTI), built once."""
    target = bench_cache() / "lung1_1mm.nii.gz"
    if target.is_file():
        return target
    source_path = data_root() / "pyradiomics" / "lung1_image.nrrd"  # type: ignore[operator]
    source = sitk.ReadImage(str(source_path))
    spacing = list(source.GetSpacing())
    size = list(source.GetSize())
    # Slice centres from the first to the last source slice: no extrapolation beyond the scanned range.
    size[2] = round((size[2] - 1) * spacing[2] / LUNG1_SLICE_MM) + 1
    spacing[2] = LUNG1_SLICE_MM
    resampled = sitk.Resample(
        source,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        source.GetOrigin(),
        spacing,
        source.GetDirection(),
        -1024,
        sitk.sitkFloat32,
    )
    # Round to int16 here: SimpleITK's own cast to an integer output truncates the interpolated values.
    rounded = sitk.GetImageFromArray(np.rint(sitk.GetArrayViewFromImage(resampled)).astype(np.int16))
    rounded.CopyInformation(resampled)
    with atomic_path(target) as tmp:
        sitk.WriteImage(rounded, str(tmp), useCompression=True)
    return target


def phantom(size: Sequence[int], seed: int = 0) -> np.ndarray:
    """An int16 CT-like volume, array order (z, y, x) for ``size`` = (x, y, z).

    Air -1000 HU; an elliptic body (semi-axes 42 % and 30 % of the in-plane size) of soft tissue 40 +- 20 HU; two
    lungs (-800 HU) in the middle half of the slices; a spine disc (700 HU) behind the centre; a 3-voxel couch
    (300 HU) below the body, separated from it by air.
    """
    size_x, size_y, size_z = (int(n) for n in size)
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:size_y, :size_x]
    cx, cy = (size_x - 1) / 2, (size_y - 1) / 2
    body = ((x - cx) / (0.42 * size_x)) ** 2 + ((y - cy) / (0.30 * size_y)) ** 2 <= 1
    lungs = (((np.abs(x - cx) - 0.2 * size_x) / (0.13 * size_x)) ** 2 + ((y - cy) / (0.17 * size_y)) ** 2) <= 1
    spine = ((x - cx) ** 2 + (y - (cy + 0.18 * size_y)) ** 2) <= (0.05 * size_x) ** 2
    couch_row = min(size_y - 1, int(cy + 0.30 * size_y) + 3)
    base = np.full((size_y, size_x), -1000, dtype=np.int16)
    base[body] = 40
    base[spine] = 700
    base[couch_row : couch_row + 3, int(0.1 * size_x) : int(0.9 * size_x)] = 300
    chest = base.copy()
    chest[lungs & body] = -800
    volume = np.empty((size_z, size_y, size_x), dtype=np.int16)
    noise = rng.normal(0.0, 20.0, size=(size_y, size_x)).astype(np.int16)
    for z in range(size_z):
        in_chest = size_z // 4 <= z < size_z - size_z // 4
        volume[z] = chest if in_chest else base
        # The noise pattern shifts per slice (cheap) and only touches the body, not the air.
        volume[z][body] += np.roll(noise, z, axis=1)[body]
    return volume


def synthetic_ct(size: Sequence[int]) -> Path:
    """The phantom of ``size`` = (x, y, z) at 1 mm as an uncompressed NIfTI in the cache, built once."""
    name = "synthetic_" + "x".join(str(int(n)) for n in size) + ".nii"
    target = bench_cache() / name
    if target.is_file():
        return target
    image = sitk.GetImageFromArray(phantom(size))
    image.SetSpacing(SYNTHETIC_SPACING_MM)
    with atomic_path(target) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=False)
    return target


def dicom_series() -> dict[str, Path]:
    """Folders of the DICOM series the ingestion benchmark reads: ``{name: folder}``."""
    root = data_root()
    assert root is not None  # data_root() raises when there is none
    series = {
        "ibsi_sts_019 (47 x 136x134, uncompressed)": root / "ibsi_sts" / "dicom" / "STS_019" / "CT" / "image",
        "totalsegmentator example_ct_dicom (20 x 512x512, JPEG 2000)": root / "totalsegmentator" / "example_ct_dicom",
    }
    for folder in series.values():
        if not folder.is_dir():
            raise MedsegError(folder, "DICOM series folder of the ingestion benchmark is missing")
    return series


def stacked_ct(source: Path, slices: int) -> Path:
    """``source`` repeated along its slice axis (mirrored every other copy, so neighbouring slices stay neighbours)
    to ``slices`` slices, same in-plane grid, spacing, origin and direction: an uncompressed NIfTI in the cache,
    built once (the large-scan benchmark's ``512 x 512 x 1000`` chest CT from :func:`lung1_1mm`)."""
    target = bench_cache() / f"{source.name.split('.')[0]}_stacked_{int(slices)}.nii"
    if target.is_file():
        return target
    image = sitk.ReadImage(str(source))
    voxels = sitk.GetArrayViewFromImage(image)  # (z, y, x)
    copies = -(-int(slices) // voxels.shape[0])
    stacked = np.concatenate([voxels if i % 2 == 0 else voxels[::-1] for i in range(copies)])[: int(slices)]
    result = sitk.GetImageFromArray(np.ascontiguousarray(stacked))
    result.SetSpacing(image.GetSpacing())
    result.SetOrigin(image.GetOrigin())
    result.SetDirection(image.GetDirection())
    with atomic_path(target) as tmp:
        sitk.WriteImage(result, str(tmp), useCompression=False)
    return target


def batch_cases(count: int, quick: bool) -> list[Path]:
    """``count`` scans for the batch benchmark: the first ``count`` OpenKBP cases in manifest order (imported into
    the cache on first use); ``quick`` (or no data): ``count`` copies of the small synthetic phantom."""
    if not quick and data_root(required=False) is not None:
        from medseg.datasets import prepare_dataset
        from medseg.datasets.manifest import load_manifest

        folder = Path(prepare_dataset("openkbp", max_cases=count))
        cases = [case.case_id for case in load_manifest().dataset("openkbp").cases[:count]]
        return [folder / "imagesTr" / f"{case_id}.nii.gz" for case_id in cases]
    source = synthetic_ct((96, 96, 48))
    folder = bench_cache() / "batch_synthetic"
    folder.mkdir(exist_ok=True)
    copies = []
    for index in range(count):
        copy = folder / f"case_{index:02d}.nii"
        if not copy.is_file():
            with atomic_path(copy) as tmp:
                tmp.write_bytes(source.read_bytes())
        copies.append(copy)
    return copies
