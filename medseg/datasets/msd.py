"""Users' own datasets in Medical Segmentation Decathlon (MSD) or nnU-Net v2 layout: read, validate, fold.

Both layouts keep ``imagesTr/``, ``labelsTr/`` and ``dataset.json`` in one folder; they differ in the json:

* MSD: ``"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]`` and
  ``"labels": {"0": "background", "1": "liver"}`` (id -> name).
* nnU-Net v2: no training list; cases are the files of ``labelsTr`` ending in ``"file_ending"``, images are
  ``imagesTr/<case>_0000<file_ending>`` (one file per channel), and ``"labels": {"background": 0, "liver": 1}``
  (name -> id). ``splits_final.json`` (``[{"train": [...], "val": [...]}, ...]``), when present, gives the folds.

medseg trains on one CT channel, so multi-channel nnU-Net datasets are refused with a clear error.

Partially labelled data (medseg's extension, ignored by MSD and nnU-Net tools): a case may declare the labels that
were contoured in it, either in its MSD training entry (``{"image": ..., "label": ..., "contoured": ["liver"]}``)
or, for either layout, in a top-level ``"contoured": {"<case id>": ["liver"], ...}`` map. Labels not named there are
unknown in that case, not background. A case without a declaration is fully labelled. Declared names must be
labels of the dataset (background is always known and may be left out).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from medseg.datasets.folds import make_folds
from medseg.datasets.manifest import CONTOURED_KEY, Fold, Folds, contoured_flags
from medseg.errors import InputError, ManifestError
from medseg.io.files import atomic_path, read_json_object
from medseg.io.geometry import Grid, grid_differences

CHANNEL_SUFFIX = re.compile(r"_(\d{4})$")


@dataclass(frozen=True)
class MsdCase:
    """One labelled case: ``image`` and ``label`` are absolute paths; ``contoured``: the label names contoured in
    this case (``None``: all of them)."""

    case_id: str
    image: Path
    label: Path
    contoured: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MsdDataset:
    """A parsed MSD / nnU-Net v2 folder. ``style`` is "msd" or "nnunetv2"; ``labels`` maps name -> id."""

    folder: Path
    style: str
    name: str
    labels: dict[str, int]
    file_ending: str
    cases: tuple[MsdCase, ...]


def write_msd_dataset_json(
    out_dir: Path,
    name: str,
    description: str,
    labels: Mapping[str, int],
    case_ids: Sequence[str],
    contoured: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Write an MSD ``dataset.json`` for ``imagesTr/<id>.nii.gz`` + ``labelsTr/<id>.nii.gz`` (one CT channel,
    labels as ``{"0": "background", "1": ...}``) atomically. ``contoured`` (case id -> label names) adds each listed
    case's ``"contoured"`` to its training entry."""
    contoured = contoured or {}

    def entry(case_id: str) -> dict[str, Any]:
        item: dict[str, Any] = {"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"}
        if case_id in contoured:
            item[CONTOURED_KEY] = list(contoured[case_id])
        return item

    label_table = {"0": "background", **{str(v): k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if v}}
    content = {
        "name": name,
        "description": description,
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": label_table,
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [entry(c) for c in case_ids],
        "test": [],
    }
    with atomic_path(out_dir / "dataset.json") as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")


def _strip_ending(name: str, ending: str) -> str:
    return name[: -len(ending)] if ending and name.endswith(ending) else name


def _labels(raw: Any, path: Path) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise InputError(path, f"'labels' must be a non-empty object, got {raw!r}")
    keys_are_ids = all(isinstance(k, str) and k.isdigit() for k in raw)
    labels: dict[str, int] = {}
    for key, value in raw.items():
        if keys_are_ids and isinstance(value, str):  # MSD: {"0": "background"}
            labels[value] = int(key)
        elif isinstance(value, int) and not isinstance(value, bool):  # nnU-Net v2: {"background": 0}
            labels[str(key)] = value
        else:
            raise InputError(
                path,
                f"label {key!r}: {value!r} is neither MSD (id: name) nor nnU-Net v2 (name: id); "
                "region-based labels (lists) are not supported",
            )
    if len(set(labels.values())) != len(labels):
        raise InputError(path, f"label ids are not unique: {raw!r}")
    return labels


def _contoured(raw: Any, labels: Mapping[str, int], path: Path, where: str) -> tuple[str, ...] | None:
    """A case's ``contoured`` declaration checked against the dataset's labels (``None`` when not declared)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        raise InputError(path, f"{where}: 'contoured' must be a list of label names, got {raw!r}")
    unknown = sorted(set(raw) - set(labels))
    if unknown:
        raise InputError(path, f"{where}: 'contoured' names {unknown}, which are not labels {sorted(labels)}")
    return tuple(sorted(set(raw), key=lambda n: labels[n]))


def read_msd_dataset(folder: str | os.PathLike[str]) -> MsdDataset:
    """Parse ``folder/dataset.json`` and list the labelled cases (files are not opened; see :func:`validate_msd`).

    Raises:
        InputError: missing or unreadable dataset.json, unknown label style, a training entry without a label,
            or more than one image channel.
    """
    folder = Path(folder)
    json_path = folder / "dataset.json"
    raw = read_json_object(json_path, "dataset.json", not_found="dataset.json not found: not an MSD / nnU-Net folder")
    labels = _labels(raw.get("labels"), json_path)
    channels = raw.get("channel_names", raw.get("modality", {"0": "CT"}))
    if isinstance(channels, dict) and len(channels) > 1:
        raise InputError(json_path, f"{len(channels)} image channels {channels!r}; medseg trains on one CT channel")
    name = str(raw.get("name", folder.name))
    declared = raw.get(CONTOURED_KEY, {})
    if not isinstance(declared, dict):
        raise InputError(json_path, f"top-level 'contoured' must map case ids to label names, got {declared!r}")
    cases = []
    if isinstance(raw.get("training"), list) and raw["training"]:
        style, file_ending = "msd", str(raw.get("file_ending", ".nii.gz"))
        for i, entry in enumerate(raw["training"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                raise InputError(json_path, f"training[{i}] has no image path: {entry!r}")
            if not isinstance(entry.get("label"), str):
                raise InputError(json_path, f"training[{i}] ({entry['image']}) has no label")
            image = (folder / entry["image"]).resolve()
            label = (folder / entry["label"]).resolve()
            case_id = CHANNEL_SUFFIX.sub(
                "", _strip_ending(_strip_ending(image.name, ".nii.gz"), file_ending).split(".")[0]
            )
            where = f"training[{i}] ({case_id})"
            contoured = _contoured(entry.get(CONTOURED_KEY, declared.get(case_id)), labels, json_path, where)
            cases.append(MsdCase(case_id, image, label, contoured))
    else:
        style = "nnunetv2"
        ending = raw.get("file_ending")
        if not isinstance(ending, str):
            raise InputError(json_path, "neither an MSD 'training' list nor an nnU-Net v2 'file_ending' is given")
        file_ending = ending
        for label in sorted((folder / "labelsTr").glob(f"*{file_ending}")):
            case_id = _strip_ending(label.name, file_ending)
            image = (folder / "imagesTr" / f"{case_id}_0000{file_ending}").resolve()
            contoured = _contoured(declared.get(case_id), labels, json_path, f"case {case_id}")
            cases.append(MsdCase(case_id, image, label.resolve(), contoured))
    if len({c.case_id for c in cases}) != len(cases):
        raise InputError(json_path, "two training entries share a case id")
    unknown_ids = sorted(set(declared) - {c.case_id for c in cases})
    if unknown_ids:
        raise InputError(
            json_path, f"top-level 'contoured' names cases that are not in the dataset: {unknown_ids[:10]}"
        )
    return MsdDataset(folder.resolve(), style, name, labels, file_ending, tuple(cases))


def _grid(path: Path) -> Grid:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return Grid.of(reader)


def _grid_problems(image_path: Path, label_path: Path) -> list[str]:
    differences = grid_differences(_grid(label_path), _grid(image_path))
    return [f"label grid differs from the image's (label vs image): {'; '.join(differences)}"] if differences else []


def _value_problems(label_path: Path, declared: Collection[int], contoured: Collection[int] | None) -> list[str]:
    image = sitk.ReadImage(str(label_path))  # keep a reference: the array view does not own the buffer
    values = np.unique(sitk.GetArrayViewFromImage(image))
    undeclared = sorted(float(v) if v != int(v) else int(v) for v in values if v not in declared or v != int(v))
    if undeclared:
        ids = sorted(declared)
        shown = f"{ids}" if len(ids) <= 10 else f"{ids[:10]} ... ({len(ids)} ids)"
        return [f"label values {undeclared[:10]} are not declared label ids {shown}"]
    if contoured is not None:
        uncontoured = sorted(int(v) for v in values if v != 0 and int(v) not in contoured)
        if uncontoured:
            return [f"label values {uncontoured} are present but not contoured in this case {sorted(contoured)}"]
    return []


def label_pair_problems(
    image: Path | None, label: Path, declared: Collection[int], contoured: Collection[int] | None = None
) -> list[str]:
    """What is wrong with an image/label pair of single-file volumes (NIfTI, NRRD, MetaImage): the label's grid
    (size, spacing, origin, direction) differs from the image's (not checked when ``image`` is ``None``); it holds
    values other than the ``declared`` label ids; or, for a partially contoured case (``contoured``: the label ids
    contoured in it), values of labels that were not contoured. Each problem is one sentence (without the path)."""
    try:
        grid = _grid_problems(image, label) if image is not None else []
        return grid + _value_problems(label, declared, contoured)
    except RuntimeError as err:  # SimpleITK cannot read one of the two
        return [f"cannot read the image/label pair: {str(err).splitlines()[0]}"]


def validate_msd(dataset: MsdDataset) -> list[str]:
    """Every problem of a parsed dataset: missing images or labels, images without a label (nnU-Net layout),
    image/label grids that differ, label values that are not declared. Each entry names the file."""
    problems = []
    declared = set(dataset.labels.values())
    listed_images = {c.image for c in dataset.cases}
    images_dir = dataset.folder / "imagesTr"
    if images_dir.is_dir():
        for image in sorted(images_dir.glob(f"*{dataset.file_ending}")):
            if image.resolve() not in listed_images and not image.name.startswith("."):
                problems.append(f"{image}: image has no label")
    for case in dataset.cases:
        missing = [p for p in (case.image, case.label) if not p.is_file()]
        problems += [f"{p}: missing" for p in missing]
        if missing:
            continue
        contoured = None if case.contoured is None else {dataset.labels[n] for n in case.contoured}
        problems += [f"{case.label}: {p}" for p in label_pair_problems(case.image, case.label, declared, contoured)]
    return problems


def msd_folds(dataset: MsdDataset, n_folds: int = 5, seed: int = 12345) -> Folds:
    """The dataset's folds: ``splits_final.json`` when present (nnU-Net's file), else :func:`make_folds`."""
    splits_path = dataset.folder / "splits_final.json"
    ids = [c.case_id for c in dataset.cases]
    if not splits_path.is_file():
        return make_folds(ids, n_folds, seed)
    try:
        raw = json.loads(splits_path.read_text(encoding="utf-8"))
        folds = tuple(Fold(tuple(f["train"]), tuple(f["val"])) for f in raw)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(splits_path, f"not an nnU-Net splits file: {err}") from None
    unknown = sorted({c for f in folds for c in (*f.train, *f.validation)} - set(ids))
    if unknown:
        raise InputError(splits_path, f"names cases that are not in the dataset: {unknown[:10]}")
    return Folds(len(folds), seed, "splits_final.json", tuple(sorted(ids)), folds)


def msd_fold_datalists(
    folder: str | os.PathLike[str], fold: int = 0, max_cases: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training, validation) datalists of fold ``fold`` of an MSD / nnU-Net folder: items ``{"image", "label"``
    (absolute paths), ``"case_id"``, ``"contoured"`` (0/1 per label id, see
    :func:`medseg.datasets.manifest.contoured_flags`)``}``."""
    dataset = read_msd_dataset(folder)
    folds = msd_folds(dataset)
    if not 0 <= fold < len(folds.folds):
        raise ManifestError(folder, f"fold {fold!r} does not exist: the dataset has folds 0..{len(folds.folds) - 1}")
    by_id = {c.case_id: c for c in dataset.cases}
    chosen = folds.folds[fold]
    train, val = list(chosen.train), list(chosen.validation)
    if max_cases is not None:
        train, val = train[:max_cases], val[:max_cases]

    def items(ids: Sequence[str]) -> list[dict[str, Any]]:
        return [
            {
                "image": str(by_id[c].image),
                "label": str(by_id[c].label),
                "case_id": c,
                CONTOURED_KEY: contoured_flags(dataset.labels, by_id[c].contoured),
            }
            for c in ids
        ]

    return items(train), items(val)


def write_msd_datalist(dataset: MsdDataset, out_dir: str | Path, folds: Folds) -> Path:
    """Write ``datalist.json`` (MONAI decathlon style: ``training`` items with ``image``, ``label``, ``case_id``,
    ``fold`` and ``contoured``, absolute paths) and nnU-Net's ``splits_final.json`` into ``out_dir``; return the
    datalist."""
    out_dir = Path(out_dir)
    fold_of = {c: i for i, f in enumerate(folds.folds) for c in f.validation}
    content = {
        "name": dataset.name,
        "source": str(dataset.folder),
        "style": dataset.style,
        "labels": {str(v): k for k, v in sorted(dataset.labels.items(), key=lambda kv: kv[1])},
        "fold_method": folds.method,
        "training": [
            {
                "image": str(c.image),
                "label": str(c.label),
                "case_id": c.case_id,
                "fold": fold_of.get(c.case_id, -1),
                CONTOURED_KEY: contoured_flags(dataset.labels, c.contoured),
            }
            for c in dataset.cases
        ],
    }
    with atomic_path(out_dir / "datalist.json") as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
    with atomic_path(out_dir / "splits_final.json") as tmp:
        splits = [{"train": list(f.train), "val": list(f.validation)} for f in folds.folds]
        tmp.write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    return out_dir / "datalist.json"
