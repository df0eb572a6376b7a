"""What the user hands ``medseg segment``: one scan, or a folder of patients, turned into a sorted list of cases.

The rule (no header is parsed here; :func:`medseg.io.readers.read_scan` chooses the series of each case later):

* a file (NIfTI, NRRD, MetaImage, or one DICOM file standing for its series) is one case;
* a folder that directly holds DICOM files is one case (a series or study folder);
* a folder holding exactly one sub-folder with scan data and no image file is one case named after the folder
  (a study exported as ``STS_019/CT/image/*.dcm`` + ``STS_019/CT/mask/RS.dcm``);
* any other folder is a folder of patients: each image file in it is a case, and each sub-folder holding scan data
  (DICOM files at any depth, or exactly one image file) is a case. Sub-folders without scan data are ignored.

Case ids are the file or folder names (image suffix dropped) made file-system safe with
:func:`medseg.io.series.safe_name`; names that collide after that keep their suffix or get ``-2``, ``-3``...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError
from medseg.io.series import IMAGE_SUFFIXES, image_format, safe_name
from medseg.io.series import is_dicom_file as _is_dicom_file


@dataclass(frozen=True)
class Case:
    """One scan to segment.

    Attributes:
        case_id: file-system-safe id, the name of the case's output folder.
        path: image file, DICOM file, or folder (series, study, patient) to read.
    """

    case_id: str
    path: Path


def _visible(entries: list[Path]) -> list[Path]:
    return sorted(p for p in entries if not p.name.startswith("."))


def _scan_path(folder: Path) -> Path | None:
    """What to read for a case folder: the folder when it holds DICOM files at any depth, its only image file when
    it holds exactly one and no DICOM, the folder again when it holds several image files (reading it then fails
    with a message naming them); ``None`` when there is no scan data."""
    images: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith("."):
                continue
            if image_format(path):
                images.append(path)
            elif _is_dicom_file(path):
                return folder
    if len(images) == 1:
        return images[0]
    return folder if images else None


def _file_case_name(path: Path) -> str:
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _unique_ids(cases: list[tuple[str, str, Path]]) -> list[Case]:
    """Cases from (preferred name, fallback name, path), ids made safe and distinct."""
    preferred = [safe_name(name) for name, _, _ in cases]
    ids = [
        safe_name(fallback) if preferred.count(name) > 1 else name
        for name, (_, fallback, _) in zip(preferred, cases, strict=True)
    ]
    taken: dict[str, int] = {}
    unique = []
    for case_id in ids:
        count = taken.get(case_id, 0) + 1
        taken[case_id] = count
        unique.append(case_id if count == 1 else f"{case_id}-{count}")
    return sorted(
        (Case(case_id, path) for case_id, (_, _, path) in zip(unique, cases, strict=True)), key=lambda c: c.case_id
    )


def discover_cases(input_path: str | os.PathLike[str]) -> list[Case]:
    """The cases under ``input_path`` (see the module docstring for the rule), sorted by case id.

    Raises:
        InputError: ``input_path`` does not exist, cannot be listed, or holds no scan data at all.
    """
    root = Path(input_path)
    if not root.exists():
        raise InputError(root, "does not exist")
    if root.is_file():
        return [Case(safe_name(_file_case_name(root)), root)]
    try:
        entries = _visible(list(root.iterdir()))
    except OSError as err:
        raise InputError(root, f"cannot be listed: {err.strerror or err}") from err
    files = [p for p in entries if p.is_file()]
    image_files = [p for p in files if image_format(p)]
    if any(_is_dicom_file(p) for p in files if not image_format(p)):
        return [Case(safe_name(root.resolve().name), root)]
    folders = [(p, _scan_path(p)) for p in entries if p.is_dir()]
    data_folders = [(folder, scan) for folder, scan in folders if scan is not None]
    if not image_files and len(data_folders) == 1:
        only = data_folders[0][1]
        return [Case(safe_name(root.resolve().name), root if only == data_folders[0][0] else only)]
    named: list[tuple[str, str, Path]] = [(_file_case_name(p), p.name, p) for p in image_files]
    named += [(folder.name, folder.name, scan) for folder, scan in data_folders]
    if not named:
        raise InputError(root, "holds no scan: no DICOM file and no image file (.nii, .nii.gz, .nrrd, .mha) in it")
    return _unique_ids(named)
