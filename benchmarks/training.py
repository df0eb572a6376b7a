"""Training throughput: training patches per second of the bundle's training loop against a plain MONAI loop with
the same network, patch size and batch, on the CPU.

Three loops: the bundle at its default ``--precision auto`` (bf16 autocast on a CPU with bfloat16 instructions,
else fp32), the bundle at ``--precision fp32``, and the plain loop (fp32).

Bundle side: ``bundles/ct_unet/configs/train.json`` parsed with MONAI's ``ConfigParser`` (overrides: ``max_cases``,
``patch_size``, a temporary ``output_dir``, no validation), its ``initialize`` run, and its ``train#trainer`` (an
ignite ``SupervisedTrainer`` with the bundle's ``CacheDataset``, ``ThreadDataLoader``, augmentation, DiceFocal loss,
AdamW and handlers) run until ``warmup + iterations`` iterations. Plain side: the spleen bundle's way, a
``Dataset`` (no cache) + ``DataLoader`` with the same worker count, LoadImaged -> EnsureChannelFirstd ->
Orientationd -> Spacingd -> ScaleIntensityRanged -> CropForegroundd -> SpatialPadd -> RandCropByPosNegLabeld ->
RandShiftIntensityd, DiceCE loss, AdamW, a hand-written loop. Both use the first ``max_cases`` training cases of
OpenKBP fold 0 and ``batch_size`` cases x ``num_samples`` patches per iteration.

Timed: the iterations after ``warmup``, wall clock from the end of the last warm-up iteration to the end of the last
one (data loading, forward, backward, optimiser step); ``data_seconds_per_iteration`` is the part spent waiting for
the next batch (loading, cropping, augmentation not hidden by the loader's workers). Dataset caching and network
set-up are excluded. Peak memory is the main process's (DataLoader worker processes are not in it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

from benchmarks.harness import interleaved, log, median_of, ratio, start_measuring, summarize


def _overrides(
    max_cases: int, patch: int, output_dir: str, num_workers: int | None, precision: str = "auto"
) -> dict[str, Any]:
    overrides: dict[str, Any] = {} if num_workers is None else {"num_workers": num_workers}
    return overrides | {
        "precision": precision,
        "max_cases": max_cases,
        "patch_size": [patch] * 3,
        "output_dir": output_dir,
        "val_interval": 10**6,
        "max_epochs": 10**6,
        "log_every": 10**6,
    }


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        return int(batch["image"].shape[0])
    if isinstance(batch, (list, tuple)):
        return sum(_batch_size(item) for item in batch) if batch and isinstance(batch[0], dict) else len(batch)
    return int(batch.shape[0])


def bundle_training_task(
    max_cases: int, patch: int, warmup: int, iterations: int, num_workers: int | None = None, precision: str = "auto"
) -> dict[str, Any]:
    """Harness task: the bundle's trainer for ``warmup + iterations`` iterations at ``--precision precision``
    (``auto``: the bundle's default, bf16 where the CPU has bfloat16 instructions)."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    from medseg.config import REPO_ROOT

    configs = REPO_ROOT / "bundles" / "ct_unet" / "configs"
    output_dir = tempfile.mkdtemp(prefix="medseg-bench-train-")
    try:
        tick = time.perf_counter()
        parser = ConfigParser()
        parser.read_meta(str(configs / "metadata.json"))
        parser.read_config(str(configs / "train.json"))
        for key, value in _overrides(max_cases, patch, output_dir, num_workers, precision).items():
            parser[key] = value
        parser.get_parsed_content("initialize")
        trainer = parser.get_parsed_content("train#trainer")
        setup_seconds = time.perf_counter() - tick
        marks: list[tuple[float, int]] = []
        data_seconds: list[float] = []
        fetch_started: list[float] = []

        def on_iteration(engine: Any) -> None:
            marks.append((time.perf_counter(), _batch_size(engine.state.batch)))
            if len(marks) >= warmup + iterations:
                engine.terminate()

        trainer.add_event_handler(Events.GET_BATCH_STARTED, lambda engine: fetch_started.append(time.perf_counter()))
        trainer.add_event_handler(
            Events.GET_BATCH_COMPLETED, lambda engine: data_seconds.append(time.perf_counter() - fetch_started[-1])
        )
        trainer.add_event_handler(Events.ITERATION_COMPLETED, on_iteration)
        start_measuring()
        trainer.run()
        result = _throughput(
            marks, warmup, setup_seconds, batch_size=int(parser["batch_size"]), num_samples=int(parser["num_samples"])
        )
        return result | {
            "num_workers": int(parser["num_workers"]),
            "precision": parser.get_parsed_content("train_precision"),
            **_data_share(data_seconds, warmup, iterations),
        }
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


def plain_training_task(
    max_cases: int, patch: int, warmup: int, iterations: int, num_workers: int | None = None
) -> dict[str, Any]:
    """Harness task: a plain MONAI Dataset + DataLoader loop with the bundle's network, same patch and batch."""
    import torch
    from monai.data import DataLoader, Dataset
    from monai.losses import DiceCELoss
    from monai.transforms import (
        Compose,
        CropForegroundd,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        RandCropByPosNegLabeld,
        RandShiftIntensityd,
        ScaleIntensityRanged,
        Spacingd,
        SpatialPadd,
    )
    from monai.utils import set_determinism

    from benchmarks.reference import bundle_model_settings, bundle_parser
    from medseg.datasets import fold_datalists

    tick = time.perf_counter()
    parser = bundle_parser("bundles/ct_unet")
    settings = bundle_model_settings(parser)
    batch_size, num_samples = int(parser["batch_size"]), int(parser["num_samples"])
    num_workers = int(parser["num_workers"]) if num_workers is None else num_workers
    set_determinism(seed=12345)
    network = parser.get_parsed_content("network_def", instantiate=True).train()
    keys = ["image", "label"]
    transforms = Compose(
        [
            LoadImaged(keys=keys),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=settings["spacing"], mode=("bilinear", "nearest")),
            ScaleIntensityRanged(
                keys="image",
                a_min=settings["hu_window"][0],
                a_max=settings["hu_window"][1],
                b_min=0.0,
                b_max=1.0,
                clip=True,
            ),
            CropForegroundd(keys=keys, source_key="image"),
            SpatialPadd(keys=keys, spatial_size=[patch] * 3),
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=[patch] * 3,
                pos=1,
                neg=1,
                num_samples=num_samples,
                image_key="image",
                image_threshold=0,
            ),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        ]
    )
    train_items = fold_datalists("openkbp", 0, max_cases=max_cases)[0]
    loader = DataLoader(Dataset(train_items, transforms), batch_size=batch_size, shuffle=True, num_workers=num_workers)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(network.parameters(), lr=float(parser["learning_rate"]))
    setup_seconds = time.perf_counter() - tick
    marks: list[tuple[float, int]] = []
    data_seconds: list[float] = []
    start_measuring()
    while len(marks) < warmup + iterations:
        batches = iter(loader)
        while len(marks) < warmup + iterations:
            tick = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            data_seconds.append(time.perf_counter() - tick)
            optimizer.zero_grad()
            logits = network(batch["image"])
            loss = loss_function(logits, batch["label"])
            loss.backward()
            optimizer.step()
            marks.append((time.perf_counter(), int(batch["image"].shape[0])))
    result = _throughput(marks, warmup, setup_seconds, batch_size=batch_size, num_samples=num_samples)
    return result | {"num_workers": num_workers, **_data_share(data_seconds, warmup, iterations)}


def _data_share(data_seconds: list[float], warmup: int, iterations: int) -> dict[str, float]:
    """Seconds per timed iteration spent waiting for the data loader (loading, cropping, augmentation)."""
    timed = data_seconds[warmup : warmup + iterations]
    return {"data_seconds_per_iteration": sum(timed) / len(timed)} if timed else {}


def _throughput(
    marks: list[tuple[float, int]], warmup: int, setup_seconds: float, batch_size: int, num_samples: int
) -> dict[str, Any]:
    timed = marks[warmup:]
    if warmup < 1 or not timed:
        raise ValueError("need at least one warm-up and one timed iteration")
    seconds = timed[-1][0] - marks[warmup - 1][0]
    samples = sum(count for _, count in timed)
    return {
        "seconds": seconds,
        "samples": samples,
        "samples_per_second": samples / seconds,
        "seconds_per_iteration": seconds / len(timed),
        "iterations": len(timed),
        "setup_seconds": setup_seconds,
        "batch": f"{batch_size} cases x {num_samples} patches",
    }


def run_training(
    max_cases: int, patch: int, warmup: int, iterations: int, repetitions: int, num_workers: int | None = None
) -> dict[str, Any]:
    """Both loops interleaved; samples per second and the bundle / plain ratio. ``num_workers``: data-loader
    workers of both loops (default: the bundle's ``num_workers``)."""
    kwargs = {
        "max_cases": max_cases,
        "patch": patch,
        "warmup": warmup,
        "iterations": iterations,
        "num_workers": num_workers,
    }
    runs = interleaved(
        {
            "bundle": (bundle_training_task, kwargs),
            "bundle_fp32": (bundle_training_task, dict(kwargs, precision="fp32")),
            "plain_monai": (plain_training_task, kwargs),
        },
        repetitions,
        label="training",
    )
    bundle_rate = median_of(runs["bundle"], "samples_per_second")
    plain_rate = median_of(runs["plain_monai"], "samples_per_second")
    keys = (
        "samples_per_second",
        "seconds_per_iteration",
        "data_seconds_per_iteration",
        "setup_seconds",
        "peak_rss_mib",
    )
    settings: dict[str, Any] = dict(kwargs, patch_size=[patch] * 3, dataset="openkbp fold 0")
    result: dict[str, Any] = {
        "settings": settings,
        "bundle": summarize(runs["bundle"], keys),
        "bundle_fp32": summarize(runs["bundle_fp32"], keys),
        "plain_monai": summarize(runs["plain_monai"], keys),
        "throughput_ratio": ratio(bundle_rate, plain_rate),
        "fp32_throughput_ratio": ratio(median_of(runs["bundle_fp32"], "samples_per_second"), plain_rate),
    }
    first = next((run for run in runs["bundle"] if run.get("ok")), None)
    if first:
        settings["batch"] = first["batch"]
        settings["num_workers"] = first["num_workers"]
        settings["bundle_precision"] = first["precision"]
    log(f"training: bundle {bundle_rate} vs plain {plain_rate} samples/s")
    return result
