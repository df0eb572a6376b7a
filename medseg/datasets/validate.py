"""Check the data on disk against ``data_manifest.json`` and list every problem at once.

Checks, per dataset: the folder exists; every listed file exists with the listed size and sha256; no unlisted
files lie in the folder; every path a case references exists and is listed; image and label of a NIfTI/NRRD pair
share one grid (size, spacing, origin, direction); label files hold only declared label ids; OpenKBP structure
masks name declared labels and index inside the grid; folds reference known cases, partition them and are
reproducible. Hashing runs on a thread pool (hashlib releases the GIL), reading 1 MiB chunks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medseg.datasets.folds import fold_problems
from medseg.datasets.manifest import Case, Dataset, FileRecord, load_manifest
from medseg.errors import InputError, ManifestError
from medseg.io.geometry import grid_differences

CHUNK = 1 << 20
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
# Grid tolerance: NIfTI stores spacing and origin as float32 (~1e-7 relative); 1e-4 mm catches any real shift.
GRID_TOL_MM = 1e-4
DIRECTION_TOL = 1e-5


@dataclass(frozen=True)
class Problem:
    """One thing wrong: the dataset, the data-root relative path at fault (if any), and what is wrong."""

    dataset: str
    path: str | None
    problem: str

    def __str__(self) -> str:
        where = f"{self.dataset}: {self.path}" if self.path else self.dataset
        return f"{where}: {self.problem}"


def sha256_file(path: Path) -> str:
    """sha256 hex digest of ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_image_file(path: str) -> bool:
    """True for single-file volumes SimpleITK reads (NIfTI, NRRD, MetaImage)."""
    return path.lower().endswith(IMAGE_SUFFIXES)


def _check_file(root: Path, record: FileRecord, checksums: bool) -> str | None:
    path = root / record.path
    if not path.is_file():
        return "missing" if not path.exists() else "is not a regular file"
    size = path.stat().st_size
    if size != record.bytes:
        return f"size {size} bytes, the manifest says {record.bytes}"
    if checksums:
        actual = sha256_file(path)
        if actual != record.sha256:
            return f"sha256 {actual}, the manifest says {record.sha256}"
    return None


def _check_files(dataset: Dataset, root: Path, checksums: bool, pool: ThreadPoolExecutor) -> Iterable[Problem]:
    results = pool.map(lambda rec: _check_file(root, rec, checksums), dataset.files)
    for record, problem in zip(dataset.files, results, strict=True):
        if problem:
            yield Problem(dataset.name, record.path, problem)
    folder = root / dataset.folder
    if not folder.is_dir():
        yield Problem(dataset.name, dataset.folder, "dataset folder missing")
        return
    listed = {record.path for record in dataset.files}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (path.is_file() or path.is_symlink()) and not path.is_dir() and rel not in listed:
            yield Problem(dataset.name, rel, "file is not listed in the manifest")


def _grid(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def _grid_problems(image_path: Path, label_path: Path) -> list[str]:
    image, label = _grid(image_path), _grid(label_path)
    problems = []
    if image.GetSize() != label.GetSize():
        problems.append(f"label size {label.GetSize()} differs from the image's {image.GetSize()}")
    else:
        differences = grid_differences(label, image, tolerance_mm=GRID_TOL_MM, direction_tolerance=DIRECTION_TOL)
        problems += [f"label {d} (label vs image)" for d in differences]
    return problems


def _label_value_problem(label_path: Path, declared: set[int]) -> str | None:
    image = sitk.ReadImage(str(label_path))  # keep a reference: the array view does not own the buffer
    values = np.unique(sitk.GetArrayViewFromImage(image))
    undeclared = sorted(float(v) if v != int(v) else int(v) for v in values if v not in declared or v != int(v))
    if undeclared:
        ids = sorted(declared)
        shown = f"{ids}" if len(ids) <= 10 else f"{ids[:10]} ... ({len(ids)} ids)"
        return f"label values {undeclared[:10]} are not declared label ids {shown}"
    return None


def _structure_problems(dataset: Dataset, case: Case, root: Path) -> Iterable[Problem]:
    from medseg.datasets.openkbp import read_sparse_csv

    grid = dataset.importer_options.get("grid", [128, 128, 128])
    n_voxels = int(np.prod(grid))
    for name, rel in case.structures.items():
        if name not in dataset.labels:
            yield Problem(dataset.name, rel, f"structure {name!r} is not a declared label {sorted(dataset.labels)}")
        path = root / rel
        if path.is_file():
            try:
                read_sparse_csv(path, n_voxels, values=False)
            except InputError as err:
                yield Problem(dataset.name, rel, err.problem)


def _check_case(dataset: Dataset, case: Case, root: Path, listed: set[str]) -> list[Problem]:
    problems = []
    where = f"case {case.case_id!r}: "
    for rel in case.paths():
        path = root / rel
        if not path.exists():
            problems.append(Problem(dataset.name, rel, where + "referenced path does not exist"))
        elif path.is_dir():
            if not any(p.startswith(rel.rstrip("/") + "/") for p in listed):
                problems.append(Problem(dataset.name, rel, where + "referenced folder holds no listed file"))
        elif rel not in listed:
            problems.append(Problem(dataset.name, rel, where + "referenced file is not listed in the manifest"))
    label = case.label
    if label is not None and is_image_file(label) and (root / label).is_file():
        try:
            value_problem = _label_value_problem(root / label, set(dataset.labels.values()))
            if value_problem:
                problems.append(Problem(dataset.name, label, where + value_problem))
            if is_image_file(case.image) and (root / case.image).is_file():
                problems += [
                    Problem(dataset.name, label, where + p) for p in _grid_problems(root / case.image, root / label)
                ]
        except RuntimeError as err:  # SimpleITK cannot read one of the two
            problems.append(
                Problem(dataset.name, label, where + f"cannot read the image/label pair: {err}".splitlines()[0])
            )
    problems += list(_structure_problems(dataset, case, root))
    return problems


def validate_dataset(
    dataset: Dataset, root: Path, checksums: bool = True, pool: ThreadPoolExecutor | None = None
) -> list[Problem]:
    """Every problem of one dataset (see the module docstring)."""
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    try:
        problems = list(_check_files(dataset, root, checksums, pool))
        listed = {record.path for record in dataset.files}
        for case_problems in pool.map(lambda c: _check_case(dataset, c, root, listed), dataset.cases):
            problems += case_problems
    finally:
        if own_pool:
            pool.shutdown()
    if dataset.folds is not None:
        known = [case.case_id for case in dataset.cases]
        problems += [Problem(dataset.name, None, f"folds: {p}") for p in fold_problems(dataset.folds, known)]
    return problems


def validate_manifest(
    manifest_path: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    checksums: bool = True,
    datasets: Iterable[str] | None = None,
) -> list[Problem]:
    """Every problem with the manifest and the data it describes (empty list: all is well).

    Args:
        manifest_path: the manifest (default: ``data_manifest.json`` at the repository root).
        data_root: the folder the manifest's paths are relative to (default: :func:`medseg.config.data_root`).
        checksums: also compare sha256 digests (sizes are always compared).
        datasets: only these datasets (default: all).
    """
    from medseg.config import data_root as default_data_root

    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as err:
        return [Problem("manifest", err.path, err.problem)]
    root = Path(data_root) if data_root is not None else default_data_root()
    assert root is not None
    if not root.is_dir():
        return [Problem("manifest", str(root), "data root is not a folder")]
    names = list(datasets) if datasets is not None else list(manifest.datasets)
    problems = [Problem("manifest", None, f"no dataset {n!r}") for n in names if n not in manifest.datasets]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for name in names:
            if name in manifest.datasets:
                problems += validate_dataset(manifest.datasets[name], root, checksums, pool)
    return problems
