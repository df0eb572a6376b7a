"""``medseg evaluate PRED REF``: Dice / HD95 / NSD tables and box plots of label maps against references."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from medseg.evaluation.labels import parse_contoured, parse_label_spec


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of mm >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``evaluate`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted label maps against references (Dice, HD95, NSD, volumes)",
        description=(
            "Compare predicted label maps with reference label maps on the same voxel grid, in mm. PRED and REF "
            "are two label-map files or two folders; in folders, files pair by case id = file name without its "
            "extension (.nii.gz .nii .nrrd .seg.nrrd .nhdr .mha .mhd) and without one trailing '_seg'. "
            "Grids that differ (size, spacing, origin, direction beyond 1e-4) are refused. A label in neither map "
            "scores NaN and is left out of the means; a label in one map only scores Dice 0, NSD 0 and HD95 = "
            "the image diagonal. Writes metrics.csv, summary.csv, unmatched.csv and boxplot.png."
        ),
    )
    parser.add_argument("pred", type=Path, metavar="PRED", help="predicted label map, or folder of them")
    parser.add_argument("ref", type=Path, metavar="REF", help="reference label map, or folder of them")
    parser.add_argument(
        "--labels",
        metavar="JSON_OR_NAME=ID,...",
        help='labels to score: a JSON file or object ({"1": "spleen"} or {"spleen": 1}, a whole nnU-Net '
        "dataset.json works) or NAME=ID,... such as liver=5,spleen=1; default: every label found",
    )
    parser.add_argument(
        "--tolerance-mm", type=_tolerance, default=2.0, help="NSD (surface Dice) tolerance in mm (default 2.0)"
    )
    parser.add_argument(
        "--contoured",
        type=Path,
        metavar="JSON",
        help='partially contoured references: {"case_id": ["Brainstem", ...]} lists the organs drawn per case; the '
        "others score not_contoured (NaN, left out of the means) instead of a miss",
    )
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default ./evaluation)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``medseg evaluate``: evaluate, print the summary table, say where the files are."""
    # Imported here so that ``medseg --help`` does not pay for torch / MONAI / matplotlib.
    from medseg.evaluation.evaluator import evaluate
    from medseg.evaluation.summary import format_table

    labels = parse_label_spec(args.labels)
    report = evaluate(
        args.pred,
        args.ref,
        args.out,
        labels=labels,
        tolerance_mm=args.tolerance_mm,
        contoured=parse_contoured(args.contoured, labels),
    )
    matching = report.matching
    print(f"{len(matching.pairs)} case(s) evaluated")
    for side, missing in (("reference", matching.pred_only), ("prediction", matching.ref_only)):
        if missing:
            print(f"{len(missing)} case(s) without a {side}, not scored: {', '.join(missing)}")
    for case_id, label_ids in report.unlisted_labels.items():
        print(f"{case_id}: labels {label_ids} are present but not in --labels, not scored")
    print(format_table(report.summaries, report.tolerance_mm))
    print(f"wrote {report.metrics_csv}, {report.summary_csv}, {report.unmatched_csv}, {report.boxplot_png}")
    return 0
