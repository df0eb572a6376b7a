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
* a structure file may be missing where the organ was not contoured: the organ is then absent from the label.
* organs overlap on a few boundary voxels (0-19 per case): each voxel goes to the highest-priority organ of
  ``OVERLAP_PRIORITY`` (the smaller organ wins, since a stolen boundary voxel costs it more Dice).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from medseg.datasets.msd import write_msd_dataset_json
from medseg.errors import InputError
from medseg.io.atomic import atomic_path

logger = logging.getLogger(__name__)

GRID = (128, 128, 128)
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


@dataclass(frozen=True)
class OpenKBPCaseReport:
    """What the importer found in one case (stored in ``import_report.json``).

    ``body_slices``: first and last axis-2 slice holding any non-air CT voxel; ``partial_field`` is true when
    the body does not reach slice 0 although the grid starts at the vertex (pt_22: slices 20-96 only).
    ``metal_clipped``: voxels whose raw value exceeded 4095. ``overlap_voxels``: voxels listed by two or more
    organs (resolved by priority). ``labels_outside_body``: labelled voxels where the CT is air-filled zero.
    """

    case_id: str
    split: str
    spacing_mm: tuple[float, float, float]
    voxels: dict[str, int]
    absent: tuple[str, ...]
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


def read_sparse_csv(path: Path, n_voxels: int, values: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Parse an OpenKBP sparse CSV.

    Returns:
        (flat indices int64 shape (N,), values float64 shape (N,) or None when ``values`` is False).

    Raises:
        InputError: missing file, wrong header, unparsable row, or an index outside [0, n_voxels).
    """
    try:
        with open(path, encoding="ascii") as handle:
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
    except (ValueError, UnicodeDecodeError) as err:
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
    """Voxel size (mm) along axes 0, 1, 2 from ``voxel_dimensions.csv``."""
    try:
        spacing = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except ValueError as err:
        raise InputError(path, f"cannot read 3 voxel sizes: {err}") from None
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(path, f"expected 3 positive voxel sizes in mm, found {spacing.tolist()!r}")
    return float(spacing[0]), float(spacing[1]), float(spacing[2])


def load_case(
    case_dir: Path,
    split: str = "train",
    labels: Mapping[str, int] = LABELS,
    priority: Sequence[str] = OVERLAP_PRIORITY,
) -> OpenKBPCase:
    """Decode one OpenKBP case folder (``ct.csv``, ``voxel_dimensions.csv``, ``<Organ>.csv``).

    Args:
        case_dir: the ``pt_N`` folder.
        split: recorded in the report.
        labels: organ name -> label id written into the label map.
        priority: organ names, highest priority first; organs not named rank below all named ones.
    """
    n_voxels = int(np.prod(GRID))
    spacing = read_spacing(case_dir / "voxel_dimensions.csv")
    ct_index, ct_values = read_sparse_csv(case_dir / "ct.csv", n_voxels, values=True)
    assert ct_values is not None
    raw = np.zeros(n_voxels, np.float64)
    raw[ct_index] = ct_values
    metal = int(np.count_nonzero(raw > RAW_MAX))
    hu = (np.rint(np.clip(raw, 0, RAW_MAX)) - HU_OFFSET).astype(np.int16)
    body = raw > 0

    rank = {name: i for i, name in enumerate(priority)}
    order = sorted(labels, key=lambda name: rank.get(name, len(rank)))
    label = np.zeros(n_voxels, np.uint8)
    voxels: dict[str, int] = {}
    absent = []
    claimed = np.zeros(n_voxels, np.uint8)
    for name in reversed(order):  # lowest priority first, so higher priorities overwrite shared voxels
        path = case_dir / f"{name}.csv"
        if not path.exists():
            absent.append(name)
            voxels[name] = 0
            continue
        index, _ = read_sparse_csv(path, n_voxels, values=False)
        index = np.unique(index)
        label[index] = labels[name]
        claimed[index] += 1
        voxels[name] = int(index.size)
    body_z = np.flatnonzero(body.reshape(GRID).any(axis=(0, 1)))
    body_slices = (int(body_z[0]), int(body_z[-1])) if body_z.size else None
    report = OpenKBPCaseReport(
        case_id=case_dir.name,
        split=split,
        spacing_mm=spacing,
        voxels={name: voxels[name] for name in labels},
        absent=tuple(sorted(absent, key=lambda n: labels[n])),
        overlap_voxels=int(np.count_nonzero(claimed > 1)),
        labels_outside_body=int(np.count_nonzero((label > 0) & ~body)),
        metal_clipped=metal,
        raw_max=float(raw.max()),
        body_slices=body_slices,
        partial_field=body_slices is None or body_slices[0] > 0,
    )
    return OpenKBPCase(hu.reshape(GRID), label.reshape(GRID), openkbp_affine(spacing), report)


def find_cases(source_dir: Path) -> list[tuple[str, Path]]:
    """(split, case folder) of every ``<split-folder>/pt_N`` under ``source_dir`` that has a ``ct.csv``,
    sorted by split then patient number. ``source_dir`` may also be a single split folder."""
    found = []
    for split_folder, split in SPLIT_FOLDERS.items():
        base = source_dir / split_folder if (source_dir / split_folder).is_dir() else None
        if base is None and source_dir.name == split_folder:
            base = source_dir
        if base is None:
            continue
        for case_dir in base.glob("pt_*"):
            if (case_dir / "ct.csv").is_file():
                found.append((split, case_dir))
    found.sort(key=lambda item: (list(SPLIT_FOLDERS.values()).index(item[0]), _patient_number(item[1].name)))
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
    """Import OpenKBP cases into an MSD folder: ``imagesTr/<id>.nii.gz`` (int16 HU), ``labelsTr/<id>.nii.gz``
    (uint8), ``dataset.json`` and ``import_report.json`` (per-case :class:`OpenKBPCaseReport`).

    Args:
        source_dir: folder holding ``train-pats``/``validation-pats``/``test-pats`` (or one of them).
        out_dir: the MSD folder to write (created).
        case_ids: import only these ids (default: every case with a ``ct.csv``).
        skip_existing: keep cases whose two NIfTI files already exist (their reports are re-read).

    Returns:
        The reports of the imported cases, in source order.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    cases = find_cases(source_dir)
    if not cases:
        raise InputError(source_dir, "no OpenKBP case folders (train-pats/pt_N/ct.csv) found")
    if case_ids is not None:
        wanted = set(case_ids)
        missing = wanted - {case_dir.name for _, case_dir in cases}
        if missing:
            raise InputError(source_dir, f"cases not found: {sorted(missing)}")
        cases = [(split, case_dir) for split, case_dir in cases if case_dir.name in wanted]
    old_reports = _read_reports(out_dir / "import_report.json")
    reports = []
    for split, case_dir in cases:
        case_id = case_dir.name
        image_path = out_dir / "imagesTr" / f"{case_id}.nii.gz"
        label_path = out_dir / "labelsTr" / f"{case_id}.nii.gz"
        if skip_existing and image_path.is_file() and label_path.is_file() and case_id in old_reports:
            reports.append(old_reports[case_id])
            continue
        case = load_case(case_dir, split, labels, priority)
        save_nifti(case.hu, case.affine, image_path)
        save_nifti(case.label, case.affine, label_path)
        if case.report.partial_field:
            logger.info("%s: body only in slices %s of the 128-slice grid", case_id, case.report.body_slices)
        reports.append(case.report)
    write_msd_dataset_json(
        out_dir,
        name="OpenKBP",
        description="OpenKBP head-and-neck CT with 7 OAR labels (imported by medseg from the sparse CSV)",
        labels=labels,
        case_ids=sorted({r.case_id for r in reports} | _existing_cases(out_dir, old_reports), key=_patient_number),
    )
    merged = {**old_reports, **{r.case_id: r for r in reports}}
    _write_reports(out_dir / "import_report.json", [merged[k] for k in sorted(merged, key=_patient_number)], priority)
    return reports


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
                    "absent": tuple(row["absent"]),
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
