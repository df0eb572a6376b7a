"""``medseg inspect`` and ``medseg convert``: look at a scan the way medseg will read it, or write it as NIfTI.

The handlers import the readers (SimpleITK, nibabel, pydicom) when they run, so that ``medseg --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.errors import InputError

if TYPE_CHECKING:
    from medseg.io.readers import Scan


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``inspect`` and ``convert`` to ``subparsers``."""
    inspect = subparsers.add_parser(
        "inspect",
        help="show the series found, the one chosen, its geometry, HU range and warnings",
        description="Read a scan (image file, DICOM series or study folder) as medseg does and describe it.",
    )
    inspect.add_argument("path", type=Path, help="image file, DICOM file, series folder or study folder")
    inspect.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    _add_read_options(inspect)
    inspect.set_defaults(func=run_inspect)

    convert = subparsers.add_parser(
        "convert",
        help="write the chosen scan as NIfTI with its exact geometry",
        description="Read a scan as medseg does and write it as NIfTI (.nii or .nii.gz), atomically.",
    )
    convert.add_argument("path", type=Path, help="image file, DICOM file, series folder or study folder")
    convert.add_argument("output", type=Path, help="output file ending in .nii.gz or .nii")
    _add_read_options(convert)
    convert.set_defaults(func=run_convert)


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fix-geometry",
        action="store_true",
        help="repair uneven/missing/duplicate slices, tilt, mixed slices, qform/sform mismatch instead of refusing",
    )
    parser.add_argument("--series", metavar="UID", help="read this SeriesInstanceUID from a study folder")


def run_inspect(args: argparse.Namespace) -> int:
    from medseg.io.readers import read_scan

    scan = read_scan(args.path, fix_geometry=args.fix_geometry, series_uid=args.series)
    summary = scan.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from medseg.io.atomic import atomic_path
    from medseg.io.readers import read_scan

    output: Path = args.output
    if not output.name.lower().endswith((".nii.gz", ".nii")):
        raise InputError(output, "output must end in .nii.gz or .nii")
    scan = read_scan(args.path, fix_geometry=args.fix_geometry, series_uid=args.series)
    _refuse_overwriting_input(scan, output)
    with atomic_path(output) as tmp:
        sitk.WriteImage(scan.image, str(tmp), useCompression=output.name.lower().endswith(".gz"))
    for warning in scan.warnings:
        print(f"warning: {warning}")
    print(f"wrote {output} ({'x'.join(str(s) for s in scan.image.GetSize())}, {scan.orientation})")
    return 0


def _refuse_overwriting_input(scan: Scan, output: Path) -> None:
    inputs = [scan.path] if scan.series is None else [scan.path, *scan.series.files]
    target = output.resolve()
    if any(target == path.resolve() for path in inputs):
        raise InputError(output, "is an input of this conversion: refusing to overwrite it")


def format_summary(summary: dict[str, Any]) -> str:
    """The text ``medseg inspect`` prints for a :meth:`Scan.summary`."""
    lines = []
    if summary["candidates"]:
        lines.append(f"series found under {summary['path']}:")
        for series in summary["candidates"]:
            mark = "*" if series["skip_reason"] is None else "-"
            slices = f", {series['slices']} slices" if series["slices"] else ""
            step = "" if series["slice_step_mm"] is None else f", step {series['slice_step_mm']:g} mm"
            kernel = f", kernel {series['kernel']!r}" if series["kernel"] else ""
            lines.append(
                f"  {mark} {series['modality']} {series['description']!r} #{series['series_number']}: "
                f"{series['files']} files{slices}{step}{kernel}"
            )
            lines.append(f"      uid {series['uid'] or '(none)'} in {series['folder']}")
            if series["skip_reason"]:
                lines.append(f"      skipped: {series['skip_reason']}")
        chosen = summary["series"]
        lines.append(f"chosen: {chosen['uid'] or '(no SeriesInstanceUID)'} ({chosen['description']!r})")
    lines += [
        f"path:        {summary['path']} ({summary['source_format']})",
        f"size:        {' x '.join(str(s) for s in summary['size'])} ({summary['pixel_type']})",
        f"spacing:     {', '.join(f'{s:.6g}' for s in summary['spacing'])} mm",
        f"origin:      {', '.join(f'{s:.6g}' for s in summary['origin'])} mm (LPS)",
        f"direction:   {', '.join(f'{s:.6g}' for s in summary['direction'])}",
        f"orientation: {summary['orientation']}",
        f"HU range:    {summary['hu_range'][0]:g} .. {summary['hu_range'][1]:g}",
        f"repaired:    {'yes' if summary['repaired'] else 'no'}",
    ]
    lines += [f"warning: {w}" for w in summary["warnings"]] or ["warnings:   none"]
    return "\n".join(lines)
