"""Training-ready datasets and MONAI datalists: the API the training bundle calls.

``prepare_dataset`` imports a manifest dataset into an MSD folder in the cache (once; later calls return at
once), ``fold_datalists`` turns a cross-validation fold into MONAI datalists (``[{"image", "label", "case_id",
"contoured"}]`` with absolute paths; ``"contoured"`` is a 0/1 list per label id saying which labels the case
carries, see :func:`medseg.datasets.manifest.contoured_flags`), ``label_names`` and ``spacing_fingerprint``
give what the network and the resampling need.

Imports are idempotent and safe when several processes (DDP ranks) ask at once: every file is written atomically,
and the import itself runs under an exclusive lock file in the dataset folder, so one process imports while the
others wait and then find the work done. ``.medseg-import.json`` in the folder records which importer version
wrote which cases from which manifest entry; a change to any of them re-imports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medseg.config import cache_root, data_root
from medseg.datasets.manifest import CONTOURED_KEY, Dataset, load_manifest
from medseg.errors import ManifestError, MedsegError
from medseg.io.files import atomic_path, read_json_object, remove_stale_temporaries

logger = logging.getLogger(__name__)

STAMP_NAME = ".medseg-import.json"
LOCK_NAME = ".medseg-import.lock"
# Bump when an importer's output changes for the same input, so caches made by the old code are rebuilt.
IMPORTER_VERSIONS = {"openkbp": 2, "rtstruct": 1}

# (dataset, data root, output MSD folder, case ids to import); the manifest's case paths are data-root relative.
Importer = Callable[[Dataset, Path, Path, Sequence[str]], None]


def _import_openkbp(dataset: Dataset, root: Path, out_dir: Path, case_ids: Sequence[str]) -> None:
    from medseg.datasets.openkbp import OVERLAP_PRIORITY, OpenKBPCaseFiles, import_openkbp_cases

    labels = {name: label_id for name, label_id in dataset.labels.items() if label_id != 0}
    priority = dataset.importer_options.get("overlap_priority", OVERLAP_PRIORITY)
    cases = []
    for case_id in case_ids:  # the manifest names each case's files, wherever they lie (.csv or .csv.gz)
        case = dataset.case(case_id)
        if case.voxel_dimensions is None:
            raise ManifestError(None, f"{dataset.name}: case {case_id!r} has no voxel_dimensions file")
        structures = {name: root / path for name, path in case.structures.items()}
        cases.append(OpenKBPCaseFiles(case_id, case.split, root / case.image, root / case.voxel_dimensions, structures))
    # The stamp said these cases are missing or stale: rewrite them even where old files exist.
    import_openkbp_cases(cases, out_dir, labels=labels, priority=priority, skip_existing=False)


def _import_rtstruct(dataset: Dataset, root: Path, out_dir: Path, case_ids: Sequence[str]) -> None:
    from medseg.datasets.rtstruct import import_rtstruct_cases

    cases = {c.case_id: c for c in dataset.cases}
    series, references = {}, {}
    for case_id in case_ids:
        case = cases[case_id]
        if case.dicom_series is None or case.rtstruct is None:
            raise ManifestError(None, f"{dataset.name}: case {case_id!r} has no dicom_series/rtstruct to import")
        series[case_id] = (root / case.dicom_series, root / case.rtstruct)
        if case.label is not None:
            references[case_id] = root / case.label  # the Dice against it goes into import_report.json
    roi_names = dataset.importer_options.get("roi_names")
    import_rtstruct_cases(series, out_dir, dataset.labels, roi_names, dataset.name, references)


IMPORTERS: dict[str, Importer] = {"openkbp": _import_openkbp, "rtstruct": _import_rtstruct}


def _dataset(name: str) -> Dataset:
    return load_manifest().dataset(name)


def _dataset_dir(name: str, dataset_dir: str | os.PathLike[str] | None) -> Path:
    return Path(dataset_dir) if dataset_dir is not None else cache_root() / "datasets" / name


def _entry_digest(dataset: Dataset) -> str:
    """Hash of what the import depends on: importer, its options, labels, and the source files' checksums."""
    content = {
        "importer": dataset.importer,
        "version": IMPORTER_VERSIONS.get(dataset.importer or "", 0),
        "options": dataset.importer_options,
        "labels": dataset.labels,
        "files": sorted((f.path, f.sha256) for f in dataset.files),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _case_files(out_dir: Path, case_id: str) -> tuple[Path, Path]:
    return out_dir / "imagesTr" / f"{case_id}.nii.gz", out_dir / "labelsTr" / f"{case_id}.nii.gz"


def _imported_cases(out_dir: Path, digest: str) -> set[str]:
    """Cases the stamp says were imported with ``digest`` and whose files still exist."""
    try:
        stamp = read_json_object(out_dir / STAMP_NAME, "the import stamp")
    except MedsegError:
        return set()
    if stamp.get("digest") != digest or not (out_dir / "dataset.json").is_file():
        return set()
    return {c for c in stamp.get("cases", []) if all(p.is_file() for p in _case_files(out_dir, c))}


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (flock: released by the OS if the process dies)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _source_checks(dataset: Dataset, root: Path, case_ids: Sequence[str]) -> None:
    """Refuse to import from source files that are missing or whose size differs from the manifest (the full
    sha256 check is ``medseg manifest validate``'s job)."""
    wanted = {p for c in dataset.cases if c.case_id in set(case_ids) for p in c.paths()}
    problems = []
    for record in dataset.files:
        if record.path not in wanted and not any(record.path.startswith(w + "/") for w in wanted):
            continue
        path = root / record.path
        if not path.is_file():
            problems.append(f"{record.path} is missing")
        elif path.stat().st_size != record.bytes:
            problems.append(f"{record.path} has {path.stat().st_size} bytes, the manifest says {record.bytes}")
    if problems:
        raise ManifestError(root / dataset.folders[0], "cannot import: " + "; ".join(problems[:5]))


def ensure_cases(dataset: Dataset, case_ids: Sequence[str], out_dir: Path) -> Path:
    """Make sure ``case_ids`` of ``dataset`` are imported into ``out_dir`` (see the module docstring)."""
    if dataset.importer is None:
        raise ManifestError(None, f"dataset {dataset.name!r} has no importer: it is not a training dataset")
    if dataset.importer not in IMPORTERS:
        raise ManifestError(None, f"dataset {dataset.name!r} names an unknown importer {dataset.importer!r}")
    unknown = set(case_ids) - {c.case_id for c in dataset.cases}
    if unknown:
        raise ManifestError(None, f"dataset {dataset.name!r} has no cases {sorted(unknown)}")
    digest = _entry_digest(dataset)
    if set(case_ids) <= _imported_cases(out_dir, digest):
        return out_dir
    with _exclusive_lock(out_dir / LOCK_NAME):
        done = _imported_cases(out_dir, digest)  # another process may have finished while we waited
        missing = [c for c in case_ids if c not in done]
        if missing:
            remove_stale_temporaries(out_dir)
            root = data_root()
            assert root is not None
            _source_checks(dataset, root, missing)
            logger.info("importing %d %s case(s) into %s", len(missing), dataset.name, out_dir)
            IMPORTERS[dataset.importer](dataset, root, out_dir, missing)
            stamp = {"dataset": dataset.name, "digest": digest, "cases": sorted(done | set(missing))}
            with atomic_path(out_dir / STAMP_NAME) as tmp:
                tmp.write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    return out_dir


def prepare_dataset(
    name: str = "openkbp", dataset_dir: str | os.PathLike[str] | None = None, max_cases: int | None = None
) -> str:
    """Path of the training-ready MSD folder of manifest dataset ``name``, importing it first where needed.

    Args:
        name: a dataset of ``data_manifest.json`` with an importer (``openkbp``, ``ibsi_sts``).
        dataset_dir: where the MSD folder lives (default ``cache_root()/datasets/<name>``).
        max_cases: import only the first ``max_cases`` cases in manifest order (smoke runs).

    Returns:
        The folder holding ``imagesTr/<id>.nii.gz``, ``labelsTr/<id>.nii.gz`` and ``dataset.json``.
    """
    dataset = _dataset(name)
    case_ids = [c.case_id for c in dataset.cases]
    if max_cases is not None:
        if max_cases < 1:
            raise ManifestError(None, f"max_cases must be at least 1, got {max_cases!r}")
        case_ids = case_ids[:max_cases]
    return str(ensure_cases(dataset, case_ids, _dataset_dir(name, dataset_dir)))


def fold_datalists(
    name: str = "openkbp",
    fold: int = 0,
    dataset_dir: str | os.PathLike[str] | None = None,
    max_cases: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training, validation) MONAI datalists of cross-validation fold ``fold``.

    Args:
        name: a manifest dataset with folds; or any name together with ``dataset_dir`` pointing at a user's
            MSD / nnU-Net folder (its ``splits_final.json`` is used when present, else nnU-Net-style folds).
        fold: 0..n_folds-1; -1 trains on all labelled "train" cases and validates on the source's "validation".
        dataset_dir: the MSD folder (default ``cache_root()/datasets/<name>``).
        max_cases: keep only the first ``max_cases`` items of each list (at least 1) for smoke runs; only those
            cases are imported.

    Returns:
        Two lists of ``{"image": abs path, "label": abs path, "case_id": id, "contoured": [1, 1, 0, ...]}``;
        ``"contoured"`` has one 0/1 int per class (label id), background 1, and is all ones for a fully contoured
        case (see :func:`medseg.datasets.manifest.contoured_flags`).
    """
    if max_cases is not None and max_cases < 1:
        raise ManifestError(None, f"max_cases must be at least 1, got {max_cases!r}")
    manifest = load_manifest()
    if name not in manifest.datasets and dataset_dir is not None:
        from medseg.datasets.msd import msd_fold_datalists

        return msd_fold_datalists(dataset_dir, fold, max_cases)
    dataset = manifest.dataset(name)
    train_ids, val_ids = _fold_ids(dataset, fold)
    if max_cases is not None:
        train_ids, val_ids = train_ids[:max_cases], val_ids[:max_cases]
    out_dir = ensure_cases(dataset, [*train_ids, *val_ids], _dataset_dir(name, dataset_dir))
    return _items(dataset, out_dir, train_ids), _items(dataset, out_dir, val_ids)


def _fold_ids(dataset: Dataset, fold: int) -> tuple[list[str], list[str]]:
    if fold == -1:
        train_ids, val_ids = dataset.split_ids("train"), dataset.split_ids("validation")
        if not val_ids:
            raise ManifestError(None, f"dataset {dataset.name!r} has no validation split: use a fold 0..n-1")
        return train_ids, val_ids
    if dataset.folds is None:
        raise ManifestError(None, f"dataset {dataset.name!r} has no cross-validation folds")
    if not 0 <= fold < len(dataset.folds.folds):
        raise ManifestError(
            None, f"fold {fold!r} does not exist: {dataset.name} has folds 0..{dataset.folds.n_folds - 1}"
        )
    chosen = dataset.folds.folds[fold]
    return list(chosen.train), list(chosen.validation)


def _items(dataset: Dataset, out_dir: Path, case_ids: Sequence[str]) -> list[dict[str, Any]]:
    items = []
    for case_id in case_ids:
        image, label = _case_files(out_dir.resolve(), case_id)
        contoured = dataset.contoured_flags(case_id)
        items.append({"image": str(image), "label": str(label), "case_id": case_id, CONTOURED_KEY: contoured})
    return items


def label_names(name: str) -> dict[str, int]:
    """Label name -> id of manifest dataset ``name``, background (0) included, ids ascending."""
    labels = _dataset(name).labels
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def spacing_fingerprint(name: str) -> list[float]:
    """Median voxel spacing (mm) of dataset ``name`` along RAS x, y, z (the axes after ``Orientationd("RAS")``):
    the training target spacing, read from the manifest's fingerprint."""
    dataset = _dataset(name)
    if dataset.fingerprint is None:
        raise ManifestError(
            None, f"dataset {name!r} has no fingerprint: run `python pipelines/prepare_datasets.py --write-fingerprint`"
        )
    return [float(s) for s in dataset.fingerprint.median_spacing_ras]
