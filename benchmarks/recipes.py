"""Training recipes side by side at equal wall-clock time on one machine: the plain MONAI recipe (the anchor) against
medseg's candidates, each trained by the bundle's own command with the same ``--time_budget_s``, all at once.

    python -m benchmarks.recipes PACKED_DIR --budget_s 420 --out runs/recipes [--device cuda] [--recipes a,b]

``PACKED_DIR`` is a folder written by ``pipelines/pack_dataset.py --also-fully-contoured``: fold 0 trains on every
training case (partially contoured ones included), fold 1 on the fully contoured ones only, both validate on the
same cases. The recipes run concurrently (each gets ``cpu_count // n`` CPU threads and shares the accelerator, if
any), so they see the same machine for the same minutes. Each run's validation Dice per organ comes from its
``metrics.csv`` (MONAI ``MeanDice`` on the model grid; an organ counts only on cases where it is contoured).
``summary.json`` and ``summary.md`` in ``--out`` give per recipe: epochs, best mean Dice and its epoch, per-organ
Dice at that epoch, and the seconds it took to first reach the anchor's best Dice.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "bundles" / "ct_unet" / "train.json"
ON_DEVICE = ROOT / "bundles" / "ct_unet" / "configs" / "train_augment_on_device.json"
ANCHOR = "plain_monai"

# name -> bundle overrides. The anchor is the plain MONAI recipe of the spleen bundle: UNet 16-256 with batch norm,
# Dice + CE, Adam at 1e-3, 96^3 patches half on foreground, no augmentation, fully contoured cases only.
RECIPES: dict[str, dict[str, Any]] = {
    ANCHOR: {
        "fold": 1,
        "norm": "batch",
        "loss": "dicece",
        "weight_decay": 0.0,
        "crop": "posneg",
        "crop_pos": 1,
        "crop_neg": 1,
        "num_samples": 4,
        "augment": "false",
        "warmup_epochs": 0,
        "val_interval": 25,
    },
    "medseg_partial_3d": {"fold": 0, "val_interval": 5},
    "medseg_partial_3d_dicece": {"fold": 0, "loss": "dicece", "val_interval": 5},
    "medseg_full_only_3d": {"fold": 1, "val_interval": 25},
    "medseg_partial_2.5d": {
        "fold": 0,
        "spatial_dims": 2,
        "slice_neighbours": 2,
        "num_samples": 16,
        "val_interval": 5,
    },
}


def _command(
    name: str, packed: Path, out: Path, budget_s: float, device: str, on_device: bool, extra: dict[str, str]
) -> list[str]:
    configs = [str(TRAIN)] + ([str(ON_DEVICE)] if on_device else [])
    args = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(configs)]
    options = {
        "dataset_name": "packed",
        "dataset_dir": str(packed),
        "max_epochs": 1000,
        "time_budget_s": budget_s,
        "device": device,
        "amp": "true" if device.startswith("cuda") else "false",
        "output_dir": str(out / name),
        **RECIPES[name],
        **extra,
    }
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    return args


def _rows(metrics: Path) -> list[dict[str, str]]:
    if not metrics.is_file():
        return []
    with metrics.open(newline="") as handle:
        return list(csv.DictReader(handle))


def summarise(out: Path, names: Sequence[str]) -> dict[str, Any]:
    """Per recipe: epochs, best validation mean Dice (and epoch, per organ), time to reach the anchor's best."""
    table: dict[str, Any] = {}
    for name in names:
        rows = _rows(out / name / "metrics.csv")
        elapsed, timeline = 0.0, []
        for row in rows:
            elapsed += float(row.get("epoch_time_s") or 0)
            if row.get("val_mean_dice"):
                timeline.append((elapsed, int(row["epoch"]), float(row["val_mean_dice"]), row))
        best = max(timeline, key=lambda t: t[2]) if timeline else None
        table[name] = {
            "epochs": len(rows),
            "best_val_mean_dice": None if best is None else round(best[2], 4),
            "best_epoch": None if best is None else best[1],
            "per_organ": {}
            if best is None
            else {
                k.removeprefix("dice_"): round(float(v), 4) for k, v in best[3].items() if k.startswith("dice_") and v
            },
            "timeline": [(round(t, 1), e, round(d, 4)) for t, e, d, _ in timeline],
        }
    anchor = table.get(ANCHOR, {}).get("best_val_mean_dice")
    for entry in table.values():
        reached = [t for t, _, d in entry["timeline"] if anchor is not None and d >= anchor]
        entry["seconds_to_anchor_best"] = reached[0] if reached else None
    return table


def _markdown(table: dict[str, Any], budget_s: float) -> str:
    organs = sorted({organ for entry in table.values() for organ in entry["per_organ"]})
    lines = [
        f"Validation Dice (model grid) after {budget_s:.0f} s of training each, all recipes at once on one machine.",
        "",
        "| recipe | epochs | best mean Dice (epoch) | s to anchor's best | " + " | ".join(organs) + " |",
        "|---|---|---|---|" + "---|" * len(organs),
    ]
    for name, entry in table.items():
        organ_cells = " | ".join(f"{entry['per_organ'].get(o, float('nan')):.3f}" for o in organs)
        lines.append(
            f"| {name} | {entry['epochs']} | {entry['best_val_mean_dice']} ({entry['best_epoch']}) | "
            f"{entry['seconds_to_anchor_best']} | {organ_cells} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packed", type=Path)
    parser.add_argument("--budget_s", type=float, default=420)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "recipes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--augment_on_device", action="store_true", help="random transforms on the accelerator")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE bundle override for every recipe")
    args = parser.parse_args(argv)
    names = [n for n in args.recipes.split(",") if n]
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        print(f"unknown recipes: {', '.join(unknown)} (known: {', '.join(RECIPES)})", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 2) // len(names))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    started = time.monotonic()
    processes = {}
    for name in names:
        extra = dict(item.split("=", 1) for item in args.set)
        command = _command(name, args.packed, args.out, args.budget_s, args.device, args.augment_on_device, extra)
        log = (args.out / f"{name}.log").open("w")
        processes[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    codes = {}
    for name, (process, log) in processes.items():
        codes[name] = process.wait()
        log.close()
    table = summarise(args.out, names)
    for name in names:
        table[name]["exit_status"] = codes[name]
    result = {"budget_s": args.budget_s, "wall_s": round(time.monotonic() - started, 1), "recipes": table}
    (args.out / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "summary.md").write_text(_markdown(table, args.budget_s))
    print(_markdown(table, args.budget_s))
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
