"""What the user hands ``medseg segment``: one scan, or a folder of patients, turned into a sorted list of cases.

The rule (no header is parsed here; :func:`medseg.io.readers.read_scan` chooses the series of each case later):

* a file (NIfTI, NRRD, MetaImage, or one DICOM file standing for its series) is one case;
* a folder that directly holds DICOM files is one case (a series or study folder);
* a folder holding exactly one sub-folder with scan data and no image file is one case named after the folder
  (a study exported as ``STS_019/CT/image/*.dcm`` + ``STS_019/CT/mask/RS.dcm``);
* any other folder is a folder of patients: each image file in it is a case, and each sub-folder holding scan data
  (DICOM files at any depth, or exactly one image file) is a case.

Sub-folders are searched with the same walk as ``medseg inspect`` (:func:`medseg.io.series.walk_files`): symbolic
links to folders are followed, each real folder is read once, hidden files are left out.

In a folder of patients nothing vanishes: every entry that is not a scan is still a :class:`Case`, with the reason

* ``problem`` (the batch records it as a *failed* case, unread): a sub-folder that holds no scan (empty, only
  zero-byte files, only files that are neither DICOM nor images, special files) or cannot be listed, a broken
  symbolic link, a file named as DICOM (``.dcm``) that is not DICOM;
* ``skip_reason`` (recorded as *skipped*): any other file that is not a scan (notes, spreadsheets, hidden files
  such as ``.DS_Store``, FIFOs and devices, which are never opened).

Case ids are the file or folder names (image suffix dropped) made file-system safe with
:func:`medseg.io.series.safe_name`; names that collide after that keep their suffix or get ``-2``, ``-3``...;
so do names of the batch's own files (``summary.csv``...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import InputError
from medseg.io.limits import special_mode_kind
from medseg.io.series import IMAGE_SUFFIXES, image_format, safe_name, walk_files
from medseg.io.series import is_dicom_file as _is_dicom_file

# Names that say "DICOM": such a file that is not DICOM is a failed case, not a stray file.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_EXAMPLES = 3
# Names in OUTPUT that are not case folders: a case called so gets a "-2" suffix.
RESERVED_IDS = frozenset({"summary.csv", "summary.json", "report.html"})


@dataclass(frozen=True)
class Case:
    """One scan to segment, or one entry of the input that is not a scan.

    Attributes:
        case_id: file-system-safe id, the name of the case's output folder.
        path: image file, DICOM file, or folder (series, study, patient) to read.
        problem: why the entry cannot be a scan; the case is recorded as failed with it, unread.
        skip_reason: why the entry is not a scan; the entry is recorded as skipped with it.
    """

    case_id: str
    path: Path
    problem: str | None = None
    skip_reason: str | None = None


def _examples(paths: list[Path]) -> str:
    names = ", ".join(p.name for p in paths[:_EXAMPLES])
    return names + (", ..." if len(paths) > _EXAMPLES else "")


def _no_scan_reason(empty: list[Path], special: list[tuple[Path, str]], other: list[Path], broken: list[Path]) -> str:
    """Why a folder without DICOM or image files holds no scan, naming what it does hold."""
    if not (empty or special or other or broken):
        return "holds no scan: the folder is empty"
    parts = []
    if empty:
        parts.append(f"{len(empty)} empty (zero-byte) file(s): {_examples(empty)}")
    if other:
        parts.append(f"{len(other)} file(s) that are neither DICOM nor images: {_examples(other)}")
    if broken:
        parts.append(f"{len(broken)} unreadable file(s) or broken link(s): {_examples(broken)}")
    if special:
        kinds = ", ".join(f"{p.name}: a {kind}" for p, kind in special[:_EXAMPLES])
        parts.append(f"{len(special)} special file(s), not read: {kinds}")
    return "holds no scan: no DICOM or image file, only " + "; ".join(parts)


def _scan_path(folder: Path) -> Path | str:
    """What to read for a patient folder: the folder when it holds DICOM files at any depth, its only image file
    when it holds exactly one and no DICOM, the folder again when it holds several image files (reading it then
    fails with a message naming them); otherwise the reason it holds no scan.

    Raises:
        InputError: the folder, or one below it, cannot be listed.
    """
    images: list[Path] = []
    empty: list[Path] = []
    special: list[tuple[Path, str]] = []
    other: list[Path] = []
    broken: list[Path] = []
    for path in walk_files(folder):
        try:
            info = os.stat(path)
        except OSError:
            broken.append(path)
            continue
        kind = special_mode_kind(info.st_mode)
        if kind is not None:
            special.append((path, kind))
        elif image_format(path):
            images.append(path)
        elif info.st_size == 0:
            empty.append(path)
        elif _is_dicom_file(path):
            return folder
        else:
            other.append(path)
    if len(images) == 1:
        return images[0]
    if images:
        return folder
    return _no_scan_reason(empty, special, other, broken)


def _file_case_name(path: Path) -> str:
    lower = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _file_entry(path: Path) -> Case:
    """A top-level entry of a folder of patients that is not a folder (image files excepted: they are cases)."""
    if path.name.startswith("."):
        return Case("", path, skip_reason="not a scan: hidden file (the name starts with '.')")
    try:
        info = os.stat(path)
    except OSError as err:
        if path.is_symlink():
            return Case("", path, problem=f"{path}: is a broken symbolic link (to {os.readlink(path)})")
        return Case("", path, problem=f"{path}: cannot be read: {err.strerror or err}")
    kind = special_mode_kind(info.st_mode)
    if kind is not None:
        return Case("", path, skip_reason=f"not a scan: a {kind}, special files are not read")
    dicom_name = path.name.lower().endswith(_DICOM_SUFFIXES)
    if info.st_size == 0:
        what = "empty file (0 bytes)"
    else:
        what = "neither DICOM (no DICOM signature) nor an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)"
    if dicom_name:
        return Case("", path, problem=f"{path}: is not DICOM: {what}")
    return Case("", path, skip_reason=f"not a scan: {what}")


def _folder_entry(folder: Path) -> Case:
    """A sub-folder of a folder of patients: a case, or a failed entry saying why it holds no scan."""
    if folder.name.startswith("."):
        return Case("", folder, skip_reason="not a scan: hidden folder (the name starts with '.'), not searched")
    try:
        scan = _scan_path(folder)
    except InputError as err:
        return Case("", folder, problem=str(err))
    if isinstance(scan, str):
        return Case("", folder, problem=f"{folder}: {scan}")
    return Case("", scan)


def _single_id(name: str) -> str:
    case_id = safe_name(name)
    return f"{case_id}-2" if case_id in RESERVED_IDS else case_id


def _unique_ids(cases: list[tuple[str, str, Case]]) -> list[Case]:
    """Cases from (preferred name, fallback name, case without id), ids made safe and distinct."""
    preferred = [safe_name(name) for name, _, _ in cases]
    ids = [
        safe_name(fallback) if preferred.count(name) > 1 else name
        for name, (_, fallback, _) in zip(preferred, cases, strict=True)
    ]
    taken: dict[str, int] = dict.fromkeys(RESERVED_IDS, 1)
    unique = []
    for case_id in ids:
        count = taken.get(case_id, 0) + 1
        taken[case_id] = count
        unique.append(case_id if count == 1 else f"{case_id}-{count}")
    return sorted(
        (
            Case(case_id, case.path, case.problem, case.skip_reason)
            for case_id, (_, _, case) in zip(unique, cases, strict=True)
        ),
        key=lambda c: c.case_id,
    )


def discover_cases(input_path: str | os.PathLike[str]) -> list[Case]:
    """The cases under ``input_path`` (see the module docstring for the rule), sorted by case id; in a folder of
    patients also the entries that are not scans, with their ``problem`` or ``skip_reason``.

    Raises:
        InputError: ``input_path`` does not exist, cannot be listed, or holds no scan data and no patient folder.
    """
    root = Path(input_path)
    if not root.exists():
        raise InputError(root, "does not exist")
    if not root.is_dir():
        return [Case(_single_id(_file_case_name(root)), root)]
    try:
        entries = sorted(root.iterdir())
    except OSError as err:
        raise InputError(root, f"cannot be listed: {err.strerror or err}") from err
    visible = [p for p in entries if not p.name.startswith(".")]
    files = [p for p in visible if p.is_file()]
    image_files = [p for p in files if image_format(p)]
    if any(_is_dicom_file(p) for p in files if not image_format(p)):
        return [Case(_single_id(root.resolve().name), root)]
    folders = {p: _folder_entry(p) for p in entries if p.is_dir()}
    data_folders = [(p, case) for p, case in folders.items() if case.problem is None and case.skip_reason is None]
    if not image_files and len(data_folders) == 1:
        folder, only = data_folders[0]
        return [Case(_single_id(root.resolve().name), root if only.path == folder else only.path)]
    named: list[tuple[str, str, Case]] = []
    for path in entries:
        if path in folders:
            named.append((path.name, path.name, folders[path]))
        elif path in image_files:
            named.append((_file_case_name(path), path.name, Case("", path)))
        else:
            named.append((_file_case_name(path), path.name, _file_entry(path)))
    if all(case.skip_reason is not None for _, _, case in named):
        stray = [case.path for _, _, case in named]
        held = f" ({len(stray)} other entries, e.g. {_examples(stray)})" if stray else ""
        raise InputError(
            root, f"holds no scan: no DICOM file, image file (.nii, .nii.gz, .nrrd, .mha) or patient folder in it{held}"
        )
    return _unique_ids(named)
