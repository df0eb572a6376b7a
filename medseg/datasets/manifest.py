"""Typed view of ``data_manifest.json``: which datasets the project uses, where they come from, their files
(bytes + sha256), labels, labelled cases with splits, cross-validation folds and the dataset fingerprint.

All paths in the manifest are relative to the data root (``MEDSEG_DATA``), with ``/`` separators. Loading
checks the structure (types, required keys, unique ids) and raises :class:`ManifestError` naming the manifest
and the bad value; whether the files on disk match is :func:`medseg.datasets.validate.validate_manifest`'s job.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.errors import ManifestError
from medseg.io.files import read_json_object

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
# Datalist key (and manifest / dataset.json case key) of the labels contoured in a case; see contoured_flags.
CONTOURED_KEY = "contoured"


def contoured_flags(labels: Mapping[str, int], contoured: Iterable[str] | None) -> list[int]:
    """Which classes a case carries, as the datalist's ``"contoured"`` value: a list of 0/1 ints indexed by label
    id, of length ``max(label id) + 1`` (the number of classes). Background (id 0) is always 1; a label is 1 when
    it was contoured in the case (``contoured`` names it) and 0 when it is unknown there. ``contoured=None`` means
    fully labelled: all ones. Ids no label uses are 1 (nothing about them is unknown).
    """
    flags = [1] * (max(labels.values(), default=0) + 1)
    if contoured is not None:
        named = set(contoured)
        for name, label_id in labels.items():
            if label_id != 0 and name not in named:
                flags[label_id] = 0
    return flags


@dataclass(frozen=True)
class FileRecord:
    """One data file: path relative to the data root, size in bytes and sha256 hex digest."""

    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Citation:
    """A reference the licence or the authors ask users to cite."""

    text: str
    doi: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Source:
    """Where the files were copied from (repository or publication, commit, folder inside it)."""

    repository: str
    url: str
    commit: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class Case:
    """A labelled case. Paths are data-root relative.

    ``image``: the scan (NIfTI/NRRD file, a DICOM series folder, or OpenKBP ``ct.csv``).
    ``label``: one multi-label file (NIfTI/NRRD) holding declared label ids, or ``None``.
    ``structures``: one file per structure name (OpenKBP sparse CSV masks), empty otherwise.
    ``dicom_series`` / ``rtstruct``: the DICOM CT folder and its RTSTRUCT where the case also comes as DICOM.
    ``voxel_dimensions``: OpenKBP's spacing file (the CSV volumes carry no geometry of their own).
    ``contoured``: the label names contoured in this case (partially labelled data: the others are unknown in it,
    not background); ``None`` means every label of the dataset was contoured.
    """

    case_id: str
    split: str
    image: str
    label: str | None = None
    structures: dict[str, str] = field(default_factory=dict)
    dicom_series: str | None = None
    rtstruct: str | None = None
    voxel_dimensions: str | None = None
    spacing_mm: tuple[float, ...] | None = None
    contoured: tuple[str, ...] | None = None
    notes: tuple[str, ...] = ()

    def paths(self) -> list[str]:
        """Every data-root relative path the case references (files, or folders for DICOM series)."""
        paths = [self.image, self.label, self.dicom_series, self.rtstruct, self.voxel_dimensions]
        return [p for p in paths if p is not None] + list(self.structures.values())


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: case ids to train on and to validate on."""

    train: tuple[str, ...]
    validation: tuple[str, ...]


@dataclass(frozen=True)
class Folds:
    """K-fold cross-validation over ``cases`` (the ids it partitions), made by ``method`` with ``seed``."""

    n_folds: int
    seed: int
    method: str
    cases: tuple[str, ...]
    folds: tuple[Fold, ...]


@dataclass(frozen=True)
class IntensityStats:
    """CT values (HU) of voxels inside the labels, pooled over cases (nnU-Net's foreground intensity stats)."""

    mean: float
    std: float
    min: float
    max: float
    median: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class Fingerprint:
    """Dataset fingerprint, nnU-Net style, computed from the imported NIfTI by
    :func:`medseg.datasets.fingerprint.compute_fingerprint`.

    ``median_spacing_ras``: median voxel size in mm along RAS x, y, z (the array axes after MONAI
    ``Orientationd(axcodes="RAS")``); the training target spacing. ``median_shape_ras``: median array shape in the
    same axis order. ``intensity``: HU statistics inside the labels.
    """

    n_cases: int
    median_spacing_ras: tuple[float, float, float]
    median_shape_ras: tuple[int, int, int]
    intensity: IntensityStats
    samples_per_case: int
    seed: int


@dataclass(frozen=True)
class Dataset:
    """One dataset of the manifest. ``folders``: its top folders under the data root (the manifest's ``folder``,
    a name or a list of names; every file of the dataset lies in one of them); ``importer`` names the function that
    turns it into a training-ready MSD folder (``None`` when it is not imported)."""

    name: str
    title: str
    description: str
    folders: tuple[str, ...]
    modality: str
    licence: str
    source: Source
    citations: tuple[Citation, ...]
    importer: str | None
    labels: dict[str, int]
    files: tuple[FileRecord, ...]
    cases: tuple[Case, ...]
    folds: Folds | None = None
    fingerprint: Fingerprint | None = None
    importer_options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def case(self, case_id: str) -> Case:
        """The case named ``case_id`` (KeyError if absent)."""
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)

    def split_ids(self, split: str) -> list[str]:
        """Ids of the cases in ``split`` ("train", "validation" or "test"), in manifest order."""
        return [case.case_id for case in self.cases if case.split == split]

    def fingerprint_case_ids(self) -> list[str]:
        """The cases the fingerprint is taken over: the cross-validation cases (``folds.cases``) when the dataset
        has folds, else all. For OpenKBP these are the 34 fully contoured cases: partially contoured ones would
        skew the intensity statistics inside the labels towards the organs they carry."""
        return list(self.folds.cases) if self.folds is not None else [case.case_id for case in self.cases]

    def contoured_flags(self, case_id: str) -> list[int]:
        """The datalist's ``"contoured"`` value of case ``case_id`` (see :func:`contoured_flags`)."""
        return contoured_flags(self.labels, self.case(case_id).contoured)


@dataclass(frozen=True)
class Manifest:
    """The whole manifest: ``path`` is the file it was read from."""

    path: Path
    schema_version: int
    description: str
    datasets: dict[str, Dataset]

    def dataset(self, name: str) -> Dataset:
        """The dataset named ``name``; :class:`ManifestError` listing the known names otherwise."""
        if name not in self.datasets:
            raise ManifestError(self.path, f"no dataset {name!r}; the manifest has {sorted(self.datasets)}")
        return self.datasets[name]


class _Reader:
    """Pulls typed values out of the JSON, raising ManifestError with the JSON location of a bad value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> ManifestError:
        return ManifestError(self.path, f"{where}: {problem}")

    def get(self, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
        if key not in obj:
            if default is ...:
                raise self.fail(where, f"missing key {key!r}")
            return default
        value = obj[key]
        # bool is an int subclass; a JSON true where a number belongs is an error.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            raise self.fail(f"{where}.{key}", f"expected {_kind_name(kind)}, got {value!r}")
        return value

    def str_or_none(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}.{key}", f"expected a string or null, got {value!r}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_fingerprint(r: _Reader, raw: dict[str, Any], where: str) -> Fingerprint:
    intensity = r.get(raw, "intensity", dict, where)
    stats = {
        key: float(r.get(intensity, key, (int, float), f"{where}.intensity"))
        for key in ("mean", "std", "min", "max", "median", "percentile_00_5", "percentile_99_5")
    }
    spacing = r.get(raw, "median_spacing_ras", list, where)
    shape = r.get(raw, "median_shape_ras", list, where)
    if len(spacing) != 3 or len(shape) != 3:
        raise r.fail(where, f"median_spacing_ras and median_shape_ras need 3 values, got {spacing!r} and {shape!r}")
    return Fingerprint(
        n_cases=r.get(raw, "n_cases", int, where),
        median_spacing_ras=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        median_shape_ras=(int(shape[0]), int(shape[1]), int(shape[2])),
        intensity=IntensityStats(**stats),
        samples_per_case=r.get(raw, "samples_per_case", int, where),
        seed=r.get(raw, "seed", int, where),
    )


def _parse_folds(r: _Reader, raw: dict[str, Any], where: str) -> Folds:
    folds = []
    for i, fold in enumerate(r.get(raw, "folds", list, where)):
        fold_where = f"{where}.folds[{i}]"
        if not isinstance(fold, dict):
            raise r.fail(fold_where, f"expected an object, got {fold!r}")
        folds.append(
            Fold(
                train=tuple(r.get(fold, "train", list, fold_where)),
                validation=tuple(r.get(fold, "validation", list, fold_where)),
            )
        )
    return Folds(
        n_folds=r.get(raw, "n_folds", int, where),
        seed=r.get(raw, "seed", int, where),
        method=r.get(raw, "method", str, where),
        cases=tuple(r.get(raw, "cases", list, where)),
        folds=tuple(folds),
    )


def _parse_case(r: _Reader, raw: Any, where: str) -> Case:
    if not isinstance(raw, dict):
        raise r.fail(where, f"expected an object, got {raw!r}")
    split = r.get(raw, "split", str, where)
    if split not in SPLITS:
        raise r.fail(f"{where}.split", f"expected one of {SPLITS}, got {split!r}")
    spacing = raw.get("spacing_mm")
    contoured = r.get(raw, CONTOURED_KEY, (list, type(None)), where, None)
    if contoured is not None and not all(isinstance(n, str) for n in contoured):
        raise r.fail(f"{where}.{CONTOURED_KEY}", f"expected a list of label names, got {contoured!r}")
    return Case(
        case_id=r.get(raw, "id", str, where),
        split=split,
        image=r.get(raw, "image", str, where),
        label=r.str_or_none(raw, "label", where),
        structures=dict(r.get(raw, "structures", dict, where, {})),
        dicom_series=r.str_or_none(raw, "dicom_series", where),
        rtstruct=r.str_or_none(raw, "rtstruct", where),
        voxel_dimensions=r.str_or_none(raw, "voxel_dimensions", where),
        spacing_mm=None if spacing is None else tuple(float(s) for s in spacing),
        contoured=None if contoured is None else tuple(contoured),
        notes=tuple(r.get(raw, "notes", list, where, [])),
    )


def _parse_dataset(r: _Reader, name: str, raw: Any) -> Dataset:
    where = f"datasets.{name}"
    if not isinstance(raw, dict):
        raise r.fail(where, f"expected an object, got {raw!r}")
    source = r.get(raw, "source", dict, where)
    citations = []
    for i, cit in enumerate(r.get(raw, "citations", list, where)):
        if not isinstance(cit, dict):
            raise r.fail(f"{where}.citations[{i}]", f"expected an object, got {cit!r}")
        citations.append(
            Citation(
                text=r.get(cit, "text", str, f"{where}.citations[{i}]"),
                doi=r.str_or_none(cit, "doi", where),
                url=r.str_or_none(cit, "url", where),
            )
        )
    labels = r.get(raw, "labels", dict, where)
    for label_name, label_id in labels.items():
        if not isinstance(label_id, int) or isinstance(label_id, bool) or not 0 <= label_id <= 65535:
            raise r.fail(f"{where}.labels.{label_name}", f"expected an integer id 0..65535, got {label_id!r}")
    if len(set(labels.values())) != len(labels):
        raise r.fail(f"{where}.labels", f"label ids are not unique: {labels!r}")
    files = []
    for i, entry in enumerate(r.get(raw, "files", list, where)):
        file_where = f"{where}.files[{i}]"
        if not isinstance(entry, dict):
            raise r.fail(file_where, f"expected an object, got {entry!r}")
        files.append(
            FileRecord(
                path=r.get(entry, "path", str, file_where),
                bytes=r.get(entry, "bytes", int, file_where),
                sha256=r.get(entry, "sha256", str, file_where),
            )
        )
    if len({f.path for f in files}) != len(files):
        raise r.fail(f"{where}.files", "a path is listed twice")
    cases = tuple(_parse_case(r, c, f"{where}.cases[{i}]") for i, c in enumerate(r.get(raw, "cases", list, where)))
    if len({c.case_id for c in cases}) != len(cases):
        raise r.fail(f"{where}.cases", "a case id is listed twice")
    for case in cases:
        unknown = sorted(set(case.contoured or ()) - set(labels))
        if unknown:
            raise r.fail(f"{where}.cases.{case.case_id}.{CONTOURED_KEY}", f"{unknown} are not labels {sorted(labels)}")
    folder = r.get(raw, "folder", (str, list), where)
    folders = (folder,) if isinstance(folder, str) else tuple(folder)
    if not folders or not all(isinstance(f, str) and f for f in folders):
        raise r.fail(f"{where}.folder", f"expected a folder name or a list of folder names, got {folder!r}")
    folds_raw = r.get(raw, "folds", (dict, type(None)), where, None)
    fingerprint_raw = r.get(raw, "fingerprint", (dict, type(None)), where, None)
    return Dataset(
        name=name,
        title=r.get(raw, "title", str, where),
        description=r.get(raw, "description", str, where),
        folders=folders,
        modality=r.get(raw, "modality", str, where),
        licence=r.get(raw, "licence", str, where),
        source=Source(
            repository=r.get(source, "repository", str, f"{where}.source"),
            url=r.get(source, "url", str, f"{where}.source"),
            commit=r.str_or_none(source, "commit", f"{where}.source"),
            path=r.str_or_none(source, "path", f"{where}.source"),
        ),
        citations=tuple(citations),
        importer=r.str_or_none(raw, "importer", where),
        labels=dict(labels),
        files=tuple(files),
        cases=cases,
        folds=None if folds_raw is None else _parse_folds(r, folds_raw, f"{where}.folds"),
        fingerprint=None if fingerprint_raw is None else _parse_fingerprint(r, fingerprint_raw, f"{where}.fingerprint"),
        importer_options=dict(r.get(raw, "importer_options", dict, where, {})),
        notes=tuple(r.get(raw, "notes", list, where, [])),
    )


def load_manifest(path: str | os.PathLike[str] | None = None) -> Manifest:
    """Read and structurally check ``data_manifest.json`` (default: the one at the repository root).

    Raises:
        ManifestError: the file is missing, is not JSON, or a key is missing or of the wrong type.
    """
    from medseg.config import MANIFEST_PATH

    path = Path(path) if path is not None else MANIFEST_PATH
    raw = read_json_object(path, "the manifest", ManifestError, not_found="manifest not found")
    r = _Reader(path)
    version = r.get(raw, "schema_version", int, "top level")
    if version != SCHEMA_VERSION:
        raise r.fail("schema_version", f"this medseg reads version {SCHEMA_VERSION}, the file says {version!r}")
    datasets = r.get(raw, "datasets", dict, "top level")
    return Manifest(
        path=path,
        schema_version=version,
        description=r.get(raw, "description", str, "top level"),
        datasets={name: _parse_dataset(r, name, ds) for name, ds in datasets.items()},
    )


def dump_json(obj: Any, indent: int = 1, width: int = 118) -> str:
    """JSON text that keeps short lists and objects on one line (one file record per line), so the manifest
    stays readable and diffs stay small. Parses back to ``obj`` exactly."""

    def render(value: Any, level: int) -> str:
        flat = json.dumps(value, ensure_ascii=False)
        if not isinstance(value, dict | list) or not value:
            return flat
        children = value.values() if isinstance(value, dict) else value
        # Records of scalars (a file's path/bytes/sha256) stay on one line even when a bit long.
        limit = 2 * width if not any(isinstance(c, dict | list) for c in children) else width
        if len(flat) + indent * level <= limit:
            return flat
        pad = " " * (indent * (level + 1))
        if isinstance(value, list) and not any(isinstance(c, dict | list) for c in value):
            # Long lists of scalars (case ids) wrap several items to a line.
            lines, line = [], ""
            for item in (json.dumps(c, ensure_ascii=False) for c in value):
                if line and len(pad) + len(line) + len(item) + 2 > width:
                    lines.append(line)
                    line = ""
                line = f"{line} {item}," if line else f"{item},"
            lines.append(line)
            return "[\n" + "\n".join(pad + ln for ln in lines)[:-1] + "\n" + " " * (indent * level) + "]"
        if isinstance(value, list):
            items = [pad + render(v, level + 1) for v in value]
            return "[\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "]"
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {render(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "}"

    return render(obj, 0) + "\n"
