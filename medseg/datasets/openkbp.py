"""OpenKBP sparse-CSV cases -> int16 HU + uint8 label NIfTI in MSD layout.

Source format (ababier/open-kbp ``provided-data/<split>/pt_N/``; see ``SOURCES.md`` section 7):

* every CSV has the header ``,data`` and rows ``flat_index,value``; the flat index is C order into the 128^3
  grid. Mask files leave the value empty (every listed voxel is 1); ``ct.csv`` stores HU + 1024 and omits zeros.
* ``voxel_dimensions.csv``: three floats, the voxel size in mm along array axes 0, 1, 2.
* axes: axis 0 runs anterior -> posterior, axis 1 patient right -> left, axis 2 superior -> inferior (index 0 at
  the vertex). No origin is stored, so the origin is 0. The RAS affine of the array as stored is therefore
  ``[[0, -s1, 0, 0], [-s0, 0, 0, 0], [0, 0, -s2, 0], [0, 0, 0, 1]]`` (nibabel orientation P, L, I).
* CT: clip the raw values to [0, 4095] (some scans are 16 bit with metal up to ~32k; the challenge's data
  description recommends the clip), then subtract 1024: air is -1024 HU.
* files may be gzip-compressed (``<name>.csv.gz``, as in ``openkbp_partial/``): they are read through Python's
  ``gzip`` module by the same parser; a case folder may mix both.
* a structure file is missing where the organ was not contoured for that plan (most of the 169 cases of
  ``openkbp_partial/``). The organ then simply has no voxels in the label map, and the case's ``contoured`` list
  (import report, ``dataset.json`` training entry, manifest case) says that the organ is unknown there, not absent:
  a partial-label loss must not treat those voxels as background.
* organs overlap on a few boundary voxels (0-19 per case): each voxel goes to the highest-priority organ of
  ``OVERLAP_PRIORITY`` (the smaller organ wins, since a stolen boundary voxel costs it more Dice).
"""

from __future__ import annotations

import gzip
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import nibabel as nib
import numpy as np

from medseg.datasets.msd import write_msd_dataset_json
from medseg.errors import InputError
from medseg.io.files import atomic_path

logger = logging.getLogger(__name__)

GRID = (128, 128, 128)
# The one list of the OpenKBP organs at risk and their label ids (ids as in openkbp/datalist.json).
LABELS: dict[str, int] = {
    "Brainstem": 1,
    "SpinalCord": 2,
    "RightParotid": 3,
    "LeftParotid": 4,
    "Esophagus": 5,
    "Larynx": 6,
    "Mandible": 7,
}
# Highest priority first: ordered by median organ volume in OpenKBP (Esophagus 12 ml ... Mandible 62 ml).
OVERLAP_PRIORITY = ("Esophagus", "Larynx", "Brainstem", "RightParotid", "LeftParotid", "SpinalCord", "Mandible")
RAW_MAX = 4095
HU_OFFSET = 1024
SPLIT_FOLDERS = {"train-pats": "train", "validation-pats": "validation", "test-pats": "test"}
CSV_ENDINGS = (".csv", ".csv.gz")


@dataclass(frozen=True)
class OpenKBPCaseFiles:
    """The files of one case: ``ct`` and ``voxel_dimensions`` (``.csv`` or ``.csv.gz``) and one sparse mask per
    contoured organ (``structures``: organ name -> file). An organ without a file was not contoured."""

    case_id: str
    split: str
    ct: Path
    voxel_dimensions: Path
    structures: dict[str, Path]


@dataclass(frozen=True)
class OpenKBPCaseReport:
    """What the importer found in one case (stored in ``import_report.json``).

    ``body_slices``: first and last axis-2 slice holding any non-air CT voxel; ``partial_field`` is true when
    the body does not reach slice 0 although the grid starts at the vertex (pt_22: slices 20-96 only).
    ``metal_clipped``: voxels whose raw value exceeded 4095. ``overlap_voxels``: voxels listed by two or more
    organs (resolved by priority). ``labels_outside_body``: labelled voxels where the CT is air-filled zero.
    ``contoured``: the organs that have a mask file in this case (label-id order); the others were not contoured
    and have 0 ``voxels``.
    """

    case_id: str
    split: str
    spacing_mm: tuple[float, float, float]
    voxels: dict[str, int]
    contoured: tuple[str, ...]
    overlap_voxels: int
    labels_outside_body: int
    metal_clipped: int
    raw_max: float
    body_slices: tuple[int, int] | None
    partial_field: bool


@dataclass(frozen=True)
class OpenKBPCase:
    """One decoded case. ``hu``: int16 HU array, shape (128, 128, 128), axes (A->P, R->L, S->I);
    ``label``: uint8 label map of the same shape; ``affine``: 4x4 RAS affine (mm)."""

    hu: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    report: OpenKBPCaseReport


def openkbp_affine(spacing: Sequence[float]) -> np.ndarray:
    """RAS affine (4x4, float64) of an OpenKBP array with voxel sizes ``spacing`` = (s0, s1, s2) mm."""
    s0, s1, s2 = (float(s) for s in spacing)
    return np.array([[0.0, -s1, 0.0, 0.0], [-s0, 0.0, 0.0, 0.0], [0.0, 0.0, -s2, 0.0], [0.0, 0.0, 0.0, 1.0]])


@contextmanager
def open_csv(path: Path) -> Iterator[TextIO]:
    """``path`` opened as ASCII text; a name ending in ``.gz`` is decompressed on the fly (Python's gzip)."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="ascii") as handle:
            yield handle
    else:
        with open(path, encoding="ascii") as handle:
            yield handle


def read_sparse_csv(path: Path, n_voxels: int, values: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an OpenKBP sparse CSV (plain or gzip-compressed ``.csv.gz``).

    Returns:
        (flat indices int64 shape (N,), values float64 shape (N,) or None when ``values`` is False).

    Raises:
        InputError: missing file, wrong header, unparsable row, or an index outside [0, n_voxels).
    """
    try:
        with open_csv(path) as handle:
            header = handle.readline().strip()
            if header != ",data":
                raise InputError(path, f"expected the OpenKBP header ',data', found {header[:40]!r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data" for an empty mask
                if values:
                    table = np.loadtxt(handle, delimiter=",", dtype=np.float64, ndmin=2)
                else:
                    table = np.loadtxt(handle, delimiter=",", usecols=0, dtype=np.float64, ndmin=2)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (ValueError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(path, f"not an OpenKBP sparse CSV: {err}") from None
    if table.size == 0:
        return np.zeros(0, np.int64), (np.zeros(0) if values else None)
    if values and table.shape[1] != 2:
        raise InputError(path, f"expected 2 columns (index, value), found {table.shape[1]}")
    index = table[:, 0]
    flat = index.astype(np.int64)
    bad = (flat != index) | (flat < 0) | (flat >= n_voxels)
    if bad.any():
        value = float(index[bad][0])
        shown = int(value) if value.is_integer() else value
        raise InputError(path, f"flat index {shown} is not an integer in [0, {n_voxels})")
    return flat, (table[:, 1] if values else None)


def read_spacing(path: Path) -> tuple[float, float, float]:
    """Voxel size (mm) along axes 0, 1, 2 from ``voxel_dimensions.csv`` (or ``.csv.gz``)."""
    try:
        with open_csv(path) as handle:
            spacing = np.loadtxt(handle, dtype=np.float64, ndmin=1)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (ValueError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(path, f"cannot read 3 voxel sizes: {err}") from None
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(path, f"expected 3 positive voxel sizes in mm, found {spacing.tolist()!r}")
    return float(spacing[0]), float(spacing[1]), float(spacing[2])


def _csv_file(case_dir: Path, stem: str) -> Path | None:
    """``case_dir/<stem>.csv`` or, failing that, ``<stem>.csv.gz``; ``None`` when neither exists."""
    for ending in CSV_ENDINGS:
        path = case_dir / f"{stem}{ending}"
        if path.is_file():
            return path
    return None


def case_files(case_dir: Path, split: str = "train", labels: Mapping[str, int] = LABELS) -> OpenKBPCaseFiles:
    """The files of the case folder ``case_dir`` (``pt_N``): ``ct``, ``voxel_dimensions`` and every organ of
    ``labels`` that has a mask file, each as ``.csv`` or ``.csv.gz``.

    Raises:
        InputError: no ``ct`` or no ``voxel_dimensions`` file.
    """
    ct = _csv_file(case_dir, "ct")
    spacing = _csv_file(case_dir, "voxel_dimensions")
    if ct is None or spacing is None:
        missing = "ct.csv" if ct is None else "voxel_dimensions.csv"
        raise InputError(case_dir, f"not an OpenKBP case folder: no {missing} (or {missing}.gz)")
    structures = {name: path for name in labels if (path := _csv_file(case_dir, name)) is not None}
    return OpenKBPCaseFiles(case_dir.name, split, ct, spacing, structures)


def load_case(
    case: OpenKBPCaseFiles | Path,
    split: str = "train",
    labels: Mapping[str, int] = LABELS,
    priority: Sequence[str] = OVERLAP_PRIORITY,
) -> OpenKBPCase:
    """Decode one OpenKBP case (``ct``, ``voxel_dimensions``, one mask per contoured organ; ``.csv`` or ``.csv.gz``).

    Args:
        case: the case's files, or its ``pt_N`` folder (then ``split`` is recorded in the report).
        labels: organ name -> label id written into the label map.
        priority: organ names, highest priority first; organs not named rank below all named ones.
    """
    files = case if isinstance(case, OpenKBPCaseFiles) else case_files(case, split, labels)
    unknown = sorted(set(files.structures) - set(labels))
    if unknown:
        raise InputError(files.ct.parent, f"masks of organs that are not labels {sorted(labels)}: {unknown}")
    n_voxels = int(np.prod(GRID))
    spacing = read_spacing(files.voxel_dimensions)
    ct_index, ct_values = read_sparse_csv(files.ct, n_voxels, values=True)
    assert ct_values is not None
    raw = np.zeros(n_voxels, np.float64)
    raw[ct_index] = ct_values
    metal = int(np.count_nonzero(raw > RAW_MAX))
    hu = (np.rint(np.clip(raw, 0, RAW_MAX)) - HU_OFFSET).astype(np.int16)
    body = raw > 0

    rank = {name: i for i, name in enumerate(priority)}
    order = sorted(labels, key=lambda name: rank.get(name, len(rank)))
    label = np.zeros(n_voxels, np.uint8)
    voxels = dict.fromkeys(labels, 0)
    claimed = np.zeros(n_voxels, np.uint8)
    for name in reversed(order):  # lowest priority first, so higher priorities overwrite shared voxels
        if name not in files.structures:
            continue  # not contoured in this case: no voxels, and the report says it is unknown here
        index, _ = read_sparse_csv(files.structures[name], n_voxels, values=False)
        index = np.unique(index)
        label[index] = labels[name]
        claimed[index] += 1
        voxels[name] = int(index.size)
    body_z = np.flatnonzero(body.reshape(GRID).any(axis=(0, 1)))
    body_slices = (int(body_z[0]), int(body_z[-1])) if body_z.size else None
    report = OpenKBPCaseReport(
        case_id=files.case_id,
        split=files.split,
        spacing_mm=spacing,
        voxels=voxels,
        contoured=tuple(sorted(files.structures, key=lambda n: labels[n])),
        overlap_voxels=int(np.count_nonzero(claimed > 1)),
        labels_outside_body=int(np.count_nonzero((label > 0) & ~body)),
        metal_clipped=metal,
        raw_max=float(raw.max()),
        body_slices=body_slices,
        partial_field=body_slices is None or body_slices[0] > 0,
    )
    return OpenKBPCase(hu.reshape(GRID), label.reshape(GRID), openkbp_affine(spacing), report)


def find_cases(source_dir: Path, labels: Mapping[str, int] = LABELS) -> list[OpenKBPCaseFiles]:
    """The files of every ``<split-folder>/pt_N`` under ``source_dir`` that has a ``ct.csv`` (or ``ct.csv.gz``),
    sorted by split then patient number. ``source_dir`` may also be a single split folder."""
    found = []
    for split_folder, split in SPLIT_FOLDERS.items():
        base = source_dir / split_folder if (source_dir / split_folder).is_dir() else None
        if base is None and source_dir.name == split_folder:
            base = source_dir
        if base is None:
            continue
        for case_dir in base.glob("pt_*"):
            if _csv_file(case_dir, "ct") is not None:
                found.append(case_files(case_dir, split, labels))
    splits = list(SPLIT_FOLDERS.values())
    found.sort(key=lambda case: (splits.index(case.split), _patient_number(case.case_id)))
    return found


def _patient_number(case_id: str) -> int:
    try:
        return int(case_id.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return -1


def save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` with ``affine`` as qform and sform (code 1, scanner) and mm units, atomically."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def import_openkbp(
    source_dir: str | Path,
    out_dir: str | Path,
    case_ids: Sequence[str] | None = None,
    labels: Mapping[str, int] = LABELS,
    priority: Sequence[str] = OVERLAP_PRIORITY,
    skip_existing: bool = False,
) -> list[OpenKBPCaseReport]:
    """Import the OpenKBP cases found in ``source_dir`` (see :func:`import_openkbp_cases`).

    Args:
        source_dir: folder holding ``train-pats``/``validation-pats``/``test-pats`` (or one of them).
        case_ids: import only these ids (default: every case with a ``ct.csv`` or ``ct.csv.gz``).
    """
    source_dir = Path(source_dir)
    cases = find_cases(source_dir, labels)
    if not cases:
        raise InputError(source_dir, "no OpenKBP case folders (train-pats/pt_N/ct.csv or ct.csv.gz) found")
    if case_ids is not None:
        wanted = set(case_ids)
        missing = wanted - {case.case_id for case in cases}
        if missing:
            raise InputError(source_dir, f"cases not found: {sorted(missing)}")
        cases = [case for case in cases if case.case_id in wanted]
    return import_openkbp_cases(cases, out_dir, labels, priority, skip_existing)


def import_openkbp_cases(
    cases: Sequence[OpenKBPCaseFiles],
    out_dir: str | Path,
    labels: Mapping[str, int] = LABELS,
    priority: Sequence[str] = OVERLAP_PRIORITY,
    skip_existing: bool = False,
) -> list[OpenKBPCaseReport]:
    """Import OpenKBP cases into an MSD folder: ``imagesTr/<id>.nii.gz`` (int16 HU), ``labelsTr/<id>.nii.gz``
    (uint8), ``dataset.json`` (each training entry with its ``contoured`` organs) and ``import_report.json``
    (per-case :class:`OpenKBPCaseReport`). Cases already in the folder stay listed.

    Args:
        cases: the cases' files (from :func:`find_cases`, or from the manifest).
        out_dir: the MSD folder to write (created).
        skip_existing: keep cases whose two NIfTI files already exist (their reports are re-read).

    Returns:
        The reports of the given cases, in the given order.

    Raises:
        InputError: after importing every readable case, naming each case that could not be read and why.
    """
    out_dir = Path(out_dir)
    old_reports = _read_reports(out_dir / "import_report.json")
    reports = []
    failed: list[str] = []
    for files in cases:
        case_id = files.case_id
        image_path = out_dir / "imagesTr" / f"{case_id}.nii.gz"
        label_path = out_dir / "labelsTr" / f"{case_id}.nii.gz"
        if skip_existing and image_path.is_file() and label_path.is_file() and case_id in old_reports:
            reports.append(old_reports[case_id])
            continue
        try:
            case = load_case(files, files.split, labels, priority)
        except InputError as err:  # one bad case does not stop the others; it is named at the end
            logger.error("%s: not imported: %s", case_id, err)
            failed.append(f"{case_id} ({err})")
            continue
        save_nifti(case.hu, case.affine, image_path)
        save_nifti(case.label, case.affine, label_path)
        if case.report.partial_field:
            logger.info("%s: body only in slices %s of the 128-slice grid", case_id, case.report.body_slices)
        reports.append(case.report)
    merged = {**old_reports, **{r.case_id: r for r in reports}}
    listed = sorted({r.case_id for r in reports} | _existing_cases(out_dir, old_reports), key=_patient_number)
    write_msd_dataset_json(
        out_dir,
        name="OpenKBP",
        description="OpenKBP head-and-neck CT with 7 OAR labels (imported by medseg from the sparse CSV); "
        "'contoured' lists the organs contoured in each case, the others are unknown there, not absent",
        labels=labels,
        case_ids=listed,
        contoured={case_id: merged[case_id].contoured for case_id in listed},
    )
    _write_reports(out_dir / "import_report.json", [merged[k] for k in sorted(merged, key=_patient_number)], priority)
    if failed:
        raise InputError(out_dir, f"{len(failed)} of {len(cases)} case(s) not imported: " + "; ".join(failed))
    return reports


def contoured_summary(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """One line on the import report's rows (``import_report.json`` ``cases``): how many cases are fully contoured
    and in how many each organ was contoured; ``None`` for reports without ``contoured`` (other importers)."""
    contoured = [row["contoured"] for row in rows if "contoured" in row]
    if not contoured:
        return None
    organs = list(dict.fromkeys(name for row in rows for name in row.get("voxels", {})))
    full = sum(len(c) == len(organs) for c in contoured)
    per_organ = ", ".join(f"{name} {sum(name in c for c in contoured)}" for name in organs)
    return f"{full} of {len(contoured)} cases fully contoured; cases per organ: {per_organ}"


def _existing_cases(out_dir: Path, reports: Mapping[str, OpenKBPCaseReport]) -> set[str]:
    return {
        case_id
        for case_id in reports
        if (out_dir / "imagesTr" / f"{case_id}.nii.gz").is_file()
        and (out_dir / "labelsTr" / f"{case_id}.nii.gz").is_file()
    }


def _read_reports(path: Path) -> dict[str, OpenKBPCaseReport]:
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["cases"]
        return {
            row["case_id"]: OpenKBPCaseReport(
                **{
                    **row,
                    "spacing_mm": tuple(row["spacing_mm"]),
                    "contoured": tuple(row["contoured"]),
                    "body_slices": None if row["body_slices"] is None else tuple(row["body_slices"]),
                }
            )
            for row in rows
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # an unreadable report only costs a re-import


def _write_reports(path: Path, reports: Sequence[OpenKBPCaseReport], priority: Sequence[str]) -> None:
    content = {
        "importer": "openkbp",
        "overlap_priority": list(priority),
        "cases": [asdict(r) for r in reports],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
