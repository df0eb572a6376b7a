"""Pack a training dataset onto the model's grid, small enough to ship to a remote GPU machine.

    python pipelines/pack_dataset.py OUT_DIR                      # openkbp, fold -1 (official train / validation)
    python pipelines/pack_dataset.py OUT_DIR --also-fully-contoured   # + a fold of the fully contoured cases only

What it writes is an MSD folder that the bundle trains on unchanged (``--dataset_name NAME --dataset_dir OUT_DIR``):
each case after the deterministic half of the bundle's own chain (read, RAS, resample to the model spacing, crop to
the body), the image clipped to the HU window and rounded to int16 HU. That is lossless for the chain: on the packed
grid ``Spacingd`` is the identity, the clipped image has no air below the body threshold so the body crop keeps
everything, and ``HUWindowd`` clips to the same window (rounding moves a value by at most 0.5 HU, 1/700 of the
window). A 128^3 OpenKBP case shrinks from about 350 kB to about 100 kB after ``xz``.

``dataset.json`` lists each case with the organs contoured in it (``"contoured"``), and ``splits_final.json`` holds
fold 0 = the source fold's training / validation cases (and, with ``--also-fully-contoured``, fold 1 = only the
training cases with every organ contoured, same validation cases): the recipes of the model card compare on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medseg.config import REPO_ROOT
from medseg.errors import MedsegError

TRAIN_CONFIG = REPO_ROOT / "bundles" / "ct_unet" / "configs" / "train.json"
DETERMINISTIC = ("LoadImaged", "EnsureChannelFirstd", "Orientationd", "Spacingd", "CropForegroundd")


def _parser(dataset: str, fold: int) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    parser.update({"dataset_name": dataset, "fold": fold})
    return parser


def _chain(parser: Any) -> Any:
    from monai.transforms import Compose

    transforms = parser.get_parsed_content("preprocessing_transforms")
    kept = [t for t in transforms if type(t).__name__ in DETERMINISTIC]
    if [type(t).__name__ for t in kept] != list(DETERMINISTIC):
        raise MedsegError(TRAIN_CONFIG, f"preprocessing_transforms must start with {', '.join(DETERMINISTIC)}")
    return Compose(kept)


def _write(array: np.ndarray, affine: np.ndarray, path: Path, dtype: type) -> None:
    image = nib.Nifti1Image(array.astype(dtype), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def pack(dataset: str, out_dir: Path, fold: int = -1, fully_contoured_fold: bool = False) -> dict[str, Any]:
    """Write the packed MSD folder; return a summary (cases, spacing, seconds)."""
    from medseg.training import dataset_labels
    from medseg.transforms import hu_window_range

    start = time.monotonic()
    parser = _parser(dataset, fold)
    train, val = parser.get_parsed_content("datalists")
    labels = dataset_labels(dataset)
    names = {index: name for name, index in labels.items()}
    low, high = hu_window_range(parser.get_parsed_content("hu_window"))
    chain = _chain(parser)
    for sub in ("imagesTr", "labelsTr"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    for item in [*train, *val]:
        case = item["case_id"]
        data = chain({"image": item["image"], "label": item["label"]})
        image, label = data["image"], data["label"]
        affine = np.asarray(image.affine, dtype=np.float64)
        hu = np.clip(np.rint(image[0].numpy()), low, high)
        _write(hu, affine, out_dir / "imagesTr" / f"{case}.nii", np.int16)
        _write(np.rint(label[0].numpy()), affine, out_dir / "labelsTr" / f"{case}.nii", np.uint8)
        contoured = item.get("contoured") or [1] * len(labels)
        entries.append(
            {
                "image": f"./imagesTr/{case}.nii",
                "label": f"./labelsTr/{case}.nii",
                "contoured": [names[i] for i, flag in enumerate(contoured) if flag and i > 0],
            }
        )
    organs = len(labels) - 1
    description = {
        "name": f"{dataset}-packed",
        "description": f"{dataset} fold {fold} on the model grid (pipelines/pack_dataset.py)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(index): name for name, index in sorted(labels.items(), key=lambda kv: kv[1])},
        "numTraining": len(entries),
        "training": entries,
    }
    (out_dir / "dataset.json").write_text(json.dumps(description, indent=1) + "\n")
    train_ids, val_ids = [i["case_id"] for i in train], [i["case_id"] for i in val]
    splits = [{"train": train_ids, "val": val_ids}]
    if fully_contoured_fold:
        full = [e for e in entries[: len(train)] if len(e["contoured"]) == organs]
        splits.append({"train": [Path(str(e["image"])).name.removesuffix(".nii") for e in full], "val": val_ids})
    (out_dir / "splits_final.json").write_text(json.dumps(splits, indent=1) + "\n")
    return {
        "cases": len(entries),
        "folds": [(len(s["train"]), len(s["val"])) for s in splits],
        "spacing": parser.get_parsed_content("spacing"),
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dataset", default="openkbp")
    parser.add_argument("--fold", type=int, default=-1)
    parser.add_argument("--also-fully-contoured", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = pack(args.dataset, args.out_dir, args.fold, args.also_fully_contoured)
    except MedsegError as err:
        print(err, file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
