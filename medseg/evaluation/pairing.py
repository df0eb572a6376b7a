"""Pair prediction and reference label maps by case id.

Matching rule: only the files directly inside each folder are considered (no recursion, hidden files skipped), and
only label-map formats SimpleITK reads (``.nii.gz``, ``.nii``, ``.nrrd``/``.seg.nrrd``, ``.nhdr``, ``.mha``,
``.mhd``); anything else (``dataset.json``, ``.csv``...) is ignored. A file's case id is its name without the
extension and without one trailing ``_seg``, so ``liver_3_seg.nii.gz`` (medseg output) matches ``liver_3.nii.gz``
(nnU-Net / MSD ``labelsTr``). Comparison is exact and case-sensitive. Cases found on one side only are reported,
not scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.errors import InputError

LABEL_MAP_EXTENSIONS = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd")
SEG_SUFFIX = "_seg"


def case_id(path: str | Path) -> str | None:
    """The case id of a label-map file name, or ``None`` when the name has no label-map extension."""
    name = Path(path).name
    for extension in LABEL_MAP_EXTENSIONS:
        if name.lower().endswith(extension):
            stem = name[: -len(extension)]
            return stem[: -len(SEG_SUFFIX)] if stem.endswith(SEG_SUFFIX) and len(stem) > len(SEG_SUFFIX) else stem
    return None


@dataclass(frozen=True)
class CasePair:
    case_id: str
    pred: Path
    ref: Path


@dataclass(frozen=True)
class CaseMatching:
    """Result of :func:`match_cases`: matched pairs sorted by case id, and what one side lacks."""

    pairs: list[CasePair]
    pred_only: dict[str, Path] = field(default_factory=dict)
    ref_only: dict[str, Path] = field(default_factory=dict)


def _cases_in(folder: Path) -> dict[str, Path]:
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key = case_id(path)
        if key is None:
            continue
        if key in cases:
            raise InputError(folder, f"two files have case id {key!r}: {cases[key].name} and {path.name}")
        cases[key] = path
    return cases


def match_cases(pred: str | Path, ref: str | Path) -> CaseMatching:
    """Pair ``pred`` with ``ref``: two label-map files (one pair, case id from the prediction's name) or two
    folders matched by case id (see the module docstring).

    Raises:
        InputError: a path that does not exist, a file paired with a folder, a folder with no label maps, two
            files with the same case id in one folder, or folders that share no case id.
    """
    pred, ref = Path(pred), Path(ref)
    for path in (pred, ref):
        if not path.exists():
            raise InputError(path, "does not exist")
        if not (path.is_file() or path.is_dir()):
            raise InputError(path, "is neither a file nor a folder")
    if pred.is_file() and ref.is_file():
        return CaseMatching([CasePair(case_id(pred) or pred.name, pred, ref)])
    if pred.is_dir() != ref.is_dir():
        folder, single = (pred, ref) if pred.is_dir() else (ref, pred)
        raise InputError(single, f"is a file but {folder} is a folder: give two files or two folders")
    pred_cases, ref_cases = _cases_in(pred), _cases_in(ref)
    for folder, cases in ((pred, pred_cases), (ref, ref_cases)):
        if not cases:
            raise InputError(folder, f"holds no label maps ({', '.join(LABEL_MAP_EXTENSIONS)})")
    shared = sorted(pred_cases.keys() & ref_cases.keys())
    if not shared:
        raise InputError(
            pred,
            f"no case id in common with {ref}: predictions {sorted(pred_cases)[:5]}, "
            f"references {sorted(ref_cases)[:5]} (first five each)",
        )
    return CaseMatching(
        pairs=[CasePair(key, pred_cases[key], ref_cases[key]) for key in shared],
        pred_only={key: path for key, path in sorted(pred_cases.items()) if key not in ref_cases},
        ref_only={key: path for key, path in sorted(ref_cases.items()) if key not in pred_cases},
    )
