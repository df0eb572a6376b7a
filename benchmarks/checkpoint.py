"""A small trained checkpoint of the bundle's network, so that the end-to-end *agreement* compares masks of a model
that predicts organs, not the near-tied logits of a random initialisation.

``python -m benchmarks.checkpoint [--epochs 20] [--patch 64]`` runs the bundle's own training workflow
(``python -m monai.bundle run training --config_file bundles/ct_unet/configs/train.json``) on OpenKBP fold 0 for a
few epochs on smaller patches and stores its best checkpoint (by validation mean Dice) as a model folder,
``cache_root()/benchmarks/checkpoint/``: ``model.pt``, ``model_config.json`` (the run's ``run_config.json``, which
``medseg segment`` and the bundle's ``inference.json`` read beside the weights) and ``training.json`` (command,
epochs, best validation Dice). The model config's ``patch_size`` (the inference window) is the bundle's default
96^3, not the smaller training patch, so that the benchmarks time the bundle's default inference; the trained patch
is kept in ``training.json``. The architecture is the bundle's, so the Segmenter and the reference load it
unchanged. This is a benchmark fixture, not a model to use: a few hundred CPU iterations.

:func:`benchmark_checkpoint` returns it when it exists; :mod:`benchmarks.run` prefers, in order, the bundle's
``models/model.pt``, this checkpoint, and a fixed-seed random initialisation.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.workloads import bench_cache
from medseg.config import REPO_ROOT
from medseg.io.files import atomic_path

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE, MODEL_CONFIG, SIDECAR = "model.pt", "model_config.json", "training.json"


def benchmark_checkpoint() -> tuple[Path, dict[str, Any]] | None:
    """(weights, the training sidecar) when :func:`train_checkpoint` has made them, else ``None``."""
    folder = bench_cache() / CHECKPOINT_DIR
    if not all((folder / name).is_file() for name in (MODEL_FILE, MODEL_CONFIG, SIDECAR)):
        return None
    return folder / MODEL_FILE, json.loads((folder / SIDECAR).read_text(encoding="utf-8"))


def default_run_config(bundle: str = "bundles/ct_unet") -> dict[str, Any]:
    """The ``run_config`` of the bundle's ``train.json`` with its default options (what a training run with no
    overrides writes as ``run_config.json``)."""
    from benchmarks.reference import bundle_parser

    return json.loads(json.dumps(bundle_parser(bundle).get_parsed_content("run_config")))


def write_model_folder(folder: Path, weights: Path, model_config: dict[str, Any], sidecar: dict[str, Any]) -> Path:
    """``folder/model.pt`` (a copy of ``weights``), ``model_config.json`` and ``training.json``, each atomically;
    returns the weights' path."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MODEL_FILE) as tmp:
        shutil.copyfile(weights, tmp)
    with atomic_path(folder / MODEL_CONFIG) as tmp:
        tmp.write_text(json.dumps(model_config, indent=1) + "\n", encoding="utf-8")
    with atomic_path(folder / SIDECAR) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1) + "\n", encoding="utf-8")
    return folder / MODEL_FILE


def store_run(run_dir: Path, sidecar: dict[str, Any]) -> Path:
    """Store the best checkpoint of the training run ``run_dir`` as the benchmark model folder."""
    best = run_dir / "checkpoints" / "model_best.pt"
    if not best.is_file():
        raise FileNotFoundError(f"the training run left no {best}")
    model_config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    sidecar = dict(sidecar, patch_size_trained=model_config["patch_size"])
    model_config["patch_size"] = default_run_config()["patch_size"]  # the bundle's default inference window
    sidecar["best_val_mean_dice"] = _best_validation_dice(run_dir)
    return write_model_folder(bench_cache() / CHECKPOINT_DIR, best, model_config, sidecar)


def _best_validation_dice(run_dir: Path) -> float | None:
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        return None
    with open(metrics, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(row["val_mean_dice"]) for row in rows if row.get("val_mean_dice") not in (None, "")]
    return max(values) if values else None


def train_checkpoint(epochs: int = 20, patch: int = 64, val_interval: int = 5, resume: bool = False) -> Path:
    """Train with the bundle's workflow (see the module docstring) and store the best checkpoint in the cache;
    ``resume`` continues the previous run (the bundle's ``--resume true``) up to ``epochs`` in all."""
    run_dir = bench_cache() / "checkpoint-run"
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    configs = REPO_ROOT / "bundles" / "ct_unet" / "configs"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        str(configs / "train.json"),
        "--meta_file",
        str(configs / "metadata.json"),
        "--logging_file",
        str(configs / "logging.conf"),
        "--max_epochs",
        str(epochs),
        "--patch_size",
        json.dumps([patch] * 3),
        "--val_interval",
        str(val_interval),
        "--num_workers",
        "0",
        "--output_dir",
        str(run_dir),
        "--resume",
        "true" if resume else "false",
    ]
    previous = benchmark_checkpoint()
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO_ROOT)
    seconds = time.perf_counter() - start
    if resume and previous is not None:
        seconds += float(previous[1].get("training_seconds", 0.0))
    sidecar = {
        "command": " ".join(command[1:]),
        "epochs": epochs,
        "training_seconds": round(seconds, 1),
        "note": "benchmark fixture: a few hundred CPU iterations on OpenKBP fold 0, not a usable model",
    }
    return store_run(run_dir, sidecar)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    parser.add_argument("--patch", type=int, default=64, help="cubic training patch size (default 64)")
    parser.add_argument("--val-interval", type=int, default=5, help="validate every N epochs (default 5)")
    parser.add_argument("--resume", action="store_true", help="continue the previous run up to --epochs in all")
    args = parser.parse_args(argv)
    path = train_checkpoint(args.epochs, args.patch, args.val_interval, args.resume)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
