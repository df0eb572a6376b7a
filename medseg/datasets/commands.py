"""Subcommands of stage 0: ``medseg manifest validate`` and ``medseg import openkbp|ibsi|msd``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from medseg.errors import InputError
from medseg.io.files import read_json_object

IMPORT_KINDS = ("openkbp", "ibsi", "msd")
MANIFEST_NAMES = {"openkbp": "openkbp", "ibsi": "ibsi_sts"}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this stage's subcommands to ``subparsers``."""
    manifest = subparsers.add_parser("manifest", help="check data_manifest.json against the data on disk")
    manifest_sub = manifest.add_subparsers(dest="manifest_command", metavar="ACTION", required=True)
    validate = manifest_sub.add_parser(
        "validate", help="list every problem: missing files, checksums, grids, label values, folds"
    )
    validate.add_argument("--manifest", type=Path, default=None, help="manifest file (default: the repository's)")
    validate.add_argument("--data-root", type=Path, default=None, help="data root (default: MEDSEG_DATA)")
    validate.add_argument("--no-checksums", action="store_true", help="compare sizes only, skip sha256")
    validate.add_argument("--dataset", action="append", default=None, help="only this dataset (repeatable)")
    validate.set_defaults(func=_validate)

    importer = subparsers.add_parser(
        "import", help="import a dataset into training-ready MSD layout (imagesTr/labelsTr/dataset.json)"
    )
    importer.add_argument(
        "kind",
        choices=IMPORT_KINDS,
        help="openkbp: sparse CSV; ibsi: DICOM CT + RTSTRUCT; msd: "
        "check an MSD / nnU-Net v2 folder and write its datalist and folds",
    )
    importer.add_argument(
        "--source",
        type=Path,
        default=None,
        help="raw dataset folder (default for openkbp/ibsi: the manifest's copy in the data root)",
    )
    importer.add_argument("--out", type=Path, default=None, help="output folder (default: <cache>/datasets/<name>)")
    importer.set_defaults(func=_import)


def _validate(args: argparse.Namespace) -> int:
    from medseg.datasets.manifest import load_manifest
    from medseg.datasets.validate import validate_manifest

    start = time.perf_counter()
    problems = validate_manifest(args.manifest, args.data_root, checksums=not args.no_checksums, datasets=args.dataset)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    manifest = load_manifest(args.manifest)
    names = args.dataset or list(manifest.datasets)
    files = [f for n in names for f in manifest.datasets[n].files]
    cases = sum(len(manifest.datasets[n].cases) for n in names)
    checked = "sha256" if not args.no_checksums else "sizes"
    print(
        f"manifest OK: {len(names)} datasets, {len(files)} files ({sum(f.bytes for f in files) / 1e6:.1f} MB, "
        f"{checked} checked), {cases} cases, in {time.perf_counter() - start:.1f} s"
    )
    return 0


def _out_dir(args: argparse.Namespace, name: str) -> Path:
    from medseg.config import cache_root

    return args.out if args.out is not None else cache_root() / "datasets" / name


def _import(args: argparse.Namespace) -> int:
    if args.kind == "msd":
        return _import_msd(args)
    from medseg.datasets.datalist import prepare_dataset
    from medseg.datasets.manifest import load_manifest

    name = MANIFEST_NAMES[args.kind]
    if args.source is None:
        folder = Path(prepare_dataset(name, args.out))
    else:
        folder = _out_dir(args, args.source.resolve().name)
        if args.kind == "openkbp":
            from medseg.datasets.openkbp import import_openkbp

            import_openkbp(args.source, folder, skip_existing=True)
        else:
            from medseg.datasets.rtstruct import find_rtstruct_cases, import_rtstruct_cases

            dataset = load_manifest().dataset(name)
            cases = find_rtstruct_cases(args.source)
            references = {c: args.source / "nifti" / c / "CT_mask.nii.gz" for c in cases}
            references = {c: p for c, p in references.items() if p.is_file()}
            roi_names = dataset.importer_options.get("roi_names")
            import_rtstruct_cases(cases, folder, dataset.labels, roi_names, name, references)
    _print_import_summary(folder)
    return 0


def _print_import_summary(folder: Path) -> None:
    info = read_json_object(folder / "dataset.json", "the imported dataset.json")
    print(f"{folder}: {info['numTraining']} cases, labels {info['labels']}")
    for line in import_report_lines(folder):
        print(line)


def import_report_lines(folder: Path) -> list[str]:
    """What an importer found, from ``folder/import_report.json``: one line per case worth a note (Dice of a
    rasterised RTSTRUCT against its reference, partial field of view, metal clipped), then a line on which organs
    the cases carry (OpenKBP). Empty when there is no report."""
    from medseg.datasets.openkbp import contoured_summary

    report_path = folder / "import_report.json"
    if not report_path.is_file():
        return []
    rows = read_json_object(report_path, "the import report").get("cases", [])
    lines = []
    for row in rows:
        notes = []
        if row.get("dice_vs_reference") is not None:
            notes.append(f"Dice vs reference mask {row['dice_vs_reference']:.4f}")
        if row.get("partial_field"):
            notes.append(f"partial field of view: body only in slices {row['body_slices']}")
        if row.get("metal_clipped"):
            notes.append(f"{row['metal_clipped']} metal voxels clipped at 4095")
        if notes:
            lines.append(f"  {row['case_id']}: " + "; ".join(notes))
    summary = contoured_summary(rows)
    return lines + ([f"  {summary}"] if summary else [])


def _import_msd(args: argparse.Namespace) -> int:
    from medseg.datasets.msd import msd_folds, read_msd_dataset, validate_msd, write_msd_datalist

    if args.source is None:
        raise InputError(None, "medseg import msd needs --source DIR (the folder holding dataset.json)")
    dataset = read_msd_dataset(args.source)
    problems = validate_msd(dataset)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s): nothing written")
        return 1
    folds = msd_folds(dataset)
    datalist = write_msd_datalist(dataset, _out_dir(args, dataset.folder.name), folds)
    print(
        f"{dataset.folder} ({dataset.style}): {len(dataset.cases)} cases, labels {dataset.labels}, "
        f"{folds.n_folds} folds -> {datalist}"
    )
    return 0
