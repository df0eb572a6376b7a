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
    import SimpleITK as sitk

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
    from medseg.io.readers import read_scan

    output: Path = args.output
    _check_output_name(output)
    scan = read_scan(args.path, fix_geometry=args.fix_geometry, series_uid=args.series)
    _refuse_overwriting_input(scan, output)
    _write_nifti(scan.image, output)
    for warning in scan.warnings:
        print(f"warning: {warning}")
    print(f"wrote {output} ({'x'.join(str(s) for s in scan.image.GetSize())}, {scan.orientation})")
    return 0


# ITK's NIfTI writer takes these endings of the name before .nii/.nii.gz as its own and writes another file.
_NIFTI_WRITER_ENDINGS = (".nii", ".gz", ".hdr", ".img", ".nia")


def _check_output_name(output: Path) -> None:
    """Refuse, before reading anything, an output that is not a ``.nii``/``.nii.gz`` file name the NIfTI writer
    writes as named, or that is an existing folder."""
    if output.is_dir():
        raise InputError(output, "is a folder: name the output file, e.g. FOLDER/scan.nii.gz")
    lower = output.name.lower()
    if not lower.endswith((".nii.gz", ".nii")):
        raise InputError(output, "output must end in .nii.gz or .nii")
    stem = lower.removesuffix(".gz").removesuffix(".nii")
    if not stem or stem.endswith(_NIFTI_WRITER_ENDINGS):
        raise InputError(output, "output name must be NAME.nii.gz or NAME.nii with no other image suffix in NAME")


def _write_nifti(image: sitk.Image, output: Path) -> None:
    """Write ``image`` to ``output`` atomically; any problem is one :class:`InputError` naming the file, and no
    temporary is left.

    Raises:
        InputError: the folder cannot be created or written, or the writer failed.
    """
    import SimpleITK as sitk

    from medseg.io.files import TMP_PREFIX, atomic_path, probe_writable

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        probe_writable(output.parent)
    except OSError as err:
        raise InputError(output.parent, f"cannot be written: {err.strerror or err}") from err
    tmp_name = ""
    try:
        with atomic_path(output) as tmp:
            tmp_name = tmp.name
            sitk.WriteImage(image, str(tmp), useCompression=output.name.lower().endswith(".gz"))
            if not tmp.is_file():
                raise InputError(output, "the NIfTI writer did not write the file under its name")
    except (OSError, RuntimeError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else str(err).strip().splitlines()[-1]
        raise InputError(output, f"cannot be written: {detail}") from err
    finally:
        # A writer that changed the name leaves its file beside the temporary one: same unique prefix.
        prefix = tmp_name[: len(TMP_PREFIX) + 9]
        if prefix:
            for stray in output.parent.glob(f"{prefix}*"):
                stray.unlink(missing_ok=True)


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
