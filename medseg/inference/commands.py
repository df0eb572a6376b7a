"""``medseg segment INPUT OUTPUT``: segment a folder of patients (or one scan) with the bundle's model.

Examples::

    medseg segment /data/patients outputs/
    medseg segment scan.nii.gz outputs/ --formats nifti,png --device cpu
    medseg segment /data/patients outputs/ --precision bf16   # about 2x faster on CPUs with avx512_bf16
    torchrun --standalone --nproc_per_node 4 -m medseg segment /data/patients outputs/   # a shard per process
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from medseg.inference.bundle import BUNDLE_ENV
from medseg.inference.options import FORMATS

DESCRIPTION = (
    "Segment every case of INPUT (a folder of patients: DICOM study/series folders or NIfTI/NRRD files; or a single "
    "scan) into OUTPUT/<case_id>/: label map <case>_seg.nii.gz on the scan's exact grid, Slicer <case>.seg.nrrd "
    "and colour table, DICOM SEG and RTSTRUCT for DICOM input, a quick-look PNG, and summary.csv/summary.json "
    "with volumes, timings and QA flags. Complete cases are skipped on a rerun; a failing case is recorded and the "
    "batch goes on (exit code 1 if any case failed). Under torchrun each process takes a shard of the cases."
)


def add_segment_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``medseg segment`` (shared with ``pipelines/segment_folder.py``)."""
    parser.add_argument("input", type=Path, help="folder of patients, or one scan (file, DICOM series or study folder)")
    parser.add_argument("output", type=Path, help="output folder (created)")
    parser.add_argument(
        "--bundle",
        help=f"MONAI bundle folder; looked up in the repository when not found here (default: ${BUNDLE_ENV}, else "
        "the bundle shipped with medseg)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="weights to use instead of the bundle's models/model.pt, e.g. runs/ct_unet/<run>/checkpoints/"
        "model_best.pt; its model_config.json or run_config.json (beside it or in the folder above) gives the "
        "spacing, labels and network options",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default auto)"
    )
    parser.add_argument("--tta", action="store_true", help="test-time augmentation: average mirrored predictions")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),  # medseg.networks.factory.PRECISIONS; not imported: it imports torch
        default="fp32",
        help="fp32 (default: exact, reproducible) or bf16: channels-last + bfloat16 autocast, about 2x faster on "
        "CPUs with avx512_bf16/amx_bf16 or bf16-capable GPUs, a few organ-boundary voxels differ; auto: bf16 where "
        "the hardware has it, else fp32",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo cases whose outputs are already complete")
    parser.add_argument(
        "--formats",
        default="all",
        help=f"comma list of {','.join(FORMATS)}, or all (default; DICOM outputs only for DICOM input)",
    )
    parser.add_argument(
        "--strict-formats",
        action="store_true",
        help="fail a case when a requested output format could not be written (default: the case succeeds with "
        "its other outputs, and the format is named for it and counted in the final line)",
    )
    parser.add_argument(
        "--fix-geometry",
        action="store_true",
        help="repair uneven/missing/duplicate slices, tilt and header disagreements instead of refusing the case",
    )
    parser.add_argument(
        "--postprocess",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep each organ's largest connected component and drop specks (default on)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``segment`` to ``subparsers``."""
    parser = subparsers.add_parser(
        "segment", help="segment a folder of patients (or one scan) with the bundle's model", description=DESCRIPTION
    )
    add_segment_arguments(parser)
    parser.set_defaults(func=run_segment)


def run_segment(args: argparse.Namespace) -> int:
    """Run the batch; 0 when every case succeeded, 1 when any failed (input errors raise MedsegError).

    The last line printed counts what happened to every entry of the input: cases segmented, failed, entries
    skipped as not a scan, and requested outputs not written. ``--debug`` (or ``MEDSEG_DEBUG=1``) prints the
    traceback of each failure.
    """
    from medseg.inference.batch import segment_folder  # torch and MONAI: not for ``medseg --help``

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    debug = bool(getattr(args, "debug", False)) or os.environ.get("MEDSEG_DEBUG") == "1"
    result = segment_folder(
        args.input,
        args.output,
        bundle=args.bundle,
        model_file=args.model,
        device=args.device,
        tta=args.tta,
        precision=args.precision,
        postprocess=args.postprocess,
        fix_geometry=args.fix_geometry,
        formats=args.formats,
        overwrite=args.overwrite,
        progress=args.progress,
        strict_formats=args.strict_formats,
        debug=debug,
    )
    for record in result.failed:
        print(f"  FAILED {record.case_id}: {record.error}")
    not_written = result.not_written
    for case_id, formats in not_written.items():
        for fmt, reason in formats.items():
            print(f"  NOT WRITTEN {case_id} {fmt}: {reason}")
    if result.summary_csv is not None:
        print(f"summary: {result.summary_csv}")
    cases = len(result.ok) + len(result.failed)
    line = f"{len(result.ok)} of {cases} case(s) segmented into {args.output}"
    line += f"; {len(result.failed)} failed; {len(result.skipped)} skipped (not a scan)"
    missing = sum(len(formats) for formats in not_written.values())
    if missing:
        line += f"; {missing} requested output(s) not written in {len(not_written)} case(s)"
    print(line)
    return result.exit_code
