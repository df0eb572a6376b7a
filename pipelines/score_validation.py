"""Score a model on the OpenKBP validation patients, on each scan's own grid, the way a user would.

    python pipelines/score_validation.py OUT_DIR [--model runs/ct_unet/<run>/checkpoints/model_best.pt]

Links the validation split's scans and reference label maps (imported into the cache; nothing copied) into
``OUT_DIR/patients`` and ``OUT_DIR/references``, writes ``OUT_DIR/contoured.json`` (the organs drawn per patient:
most validation patients are partially contoured), runs ``medseg segment`` (NIfTI masks only) and then
``medseg evaluate --contoured``, so an organ that was not contoured for a patient is not scored there. The
per-organ Dice, HD95 and NSD table is in ``OUT_DIR/evaluation/summary.csv``; per case in ``metrics.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def _link(link: Path, target: str) -> None:
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def prepare(out: Path, dataset: str = "openkbp") -> tuple[dict[str, int], int]:
    """Write the links and ``contoured.json``; return the organ labels and the number of patients."""
    from medseg.datasets import fold_datalists, label_names

    labels = {name: index for name, index in label_names(dataset).items() if index > 0}
    names = {index: name for name, index in labels.items()}
    _, validation = fold_datalists(dataset, fold=-1)
    for sub in ("patients", "references"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    contoured = {}
    for item in validation:
        case = item["case_id"]
        _link(out / "patients" / f"{case}.nii.gz", item["image"])
        _link(out / "references" / f"{case}.nii.gz", item["label"])
        flags = item.get("contoured") or [1] * (len(labels) + 1)
        contoured[case] = [names[i] for i, flag in enumerate(flags) if flag and i in names]
    (out / "contoured.json").write_text(json.dumps(contoured, indent=1) + "\n")
    return labels, len(validation)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", help="weights instead of the bundle's models/model.pt")
    args = parser.parse_args(argv)
    labels, count = prepare(args.out)
    segment = [sys.executable, "-m", "medseg", "segment", str(args.out / "patients"), str(args.out / "masks")]
    segment += ["--formats", "nifti", "--no-progress"] + (["--model", args.model] if args.model else [])
    status = subprocess.call(segment)
    predicted = args.out / "predicted"
    predicted.mkdir(exist_ok=True)
    for mask in sorted((args.out / "masks").glob("pt_*/pt_*_seg.nii.gz")):
        _link(predicted / mask.name, str(mask.resolve()))
    spec = ",".join(f"{name}={index}" for name, index in labels.items())
    evaluate = [sys.executable, "-m", "medseg", "evaluate", str(predicted), str(args.out / "references")]
    evaluate += [
        "--labels",
        spec,
        "--contoured",
        str(args.out / "contoured.json"),
        "--out",
        str(args.out / "evaluation"),
    ]
    print(f"{count} validation patients")
    return subprocess.call(evaluate) or status


if __name__ == "__main__":
    sys.exit(main())
