"""What MONAI's ignite workflows lack for the ``ct_unet`` bundle: option parsing for ``--key value`` overrides,
the run folder, exact resume, the per-epoch metrics CSV with ETA, the fp32 deep-supervision loss wrapper, and
per-case HD95 in millimetres. What defines a model (the model config) lives in :mod:`medseg.model_spec`; its readers
are re-exported here for the bundle configs (``$medseg.training.load_model_config(@ckpt_path)``).

The names below load on first use (PEP 562), so that importing one submodule does not import torch, MONAI and ignite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.model_spec import MODEL_KEYS, find_model_config, load_model_config, read_model_config
    from medseg.networks.factory import resolve_device
    from medseg.training.checkpoints import ResumableCheckpointSaver, ResumeFromCheckpoint
    from medseg.training.dataset_info import class_names, dataset_labels, median_spacing, target_spacing
    from medseg.training.engines import run_engine, run_training
    from medseg.training.epoch_report import EpochReport
    from medseg.training.losses import PartialLabelLoss, SegmentationLoss, build_loss, prepare_batch
    from medseg.training.metrics import HausdorffDistanceMM, PerCaseMetricsCSV
    from medseg.training.options import amp_enabled, as_bool, check_options, training_precision
    from medseg.training.recipe import (
        TimeBudget,
        build_optimizer,
        every_n_iterations,
        key_metric_score,
        prepare_model,
        warmup_cosine,
    )
    from medseg.training.run_dir import (
        default_output_dir,
        latest_checkpoint,
        log_to_file,
        prepare_output_dir,
        resume_checkpoint,
        write_run_config,
    )

_EXPORTS = {
    "medseg.training.checkpoints": ("ResumableCheckpointSaver", "ResumeFromCheckpoint"),
    "medseg.training.dataset_info": ("class_names", "dataset_labels", "median_spacing", "target_spacing"),
    "medseg.training.engines": ("run_engine", "run_training"),
    "medseg.training.epoch_report": ("EpochReport",),
    "medseg.training.losses": ("PartialLabelLoss", "SegmentationLoss", "build_loss", "prepare_batch"),
    "medseg.training.metrics": ("HausdorffDistanceMM", "PerCaseMetricsCSV"),
    "medseg.model_spec": ("MODEL_KEYS", "find_model_config", "load_model_config", "read_model_config"),
    "medseg.networks.factory": ("resolve_device",),
    "medseg.training.options": ("amp_enabled", "as_bool", "check_options", "training_precision"),
    "medseg.training.recipe": (
        "TimeBudget",
        "build_optimizer",
        "every_n_iterations",
        "key_metric_score",
        "prepare_model",
        "warmup_cosine",
    ),
    "medseg.training.run_dir": (
        "default_output_dir",
        "latest_checkpoint",
        "log_to_file",
        "prepare_output_dir",
        "resume_checkpoint",
        "write_run_config",
    ),
}
__all__ = [
    "MODEL_KEYS",
    "EpochReport",
    "HausdorffDistanceMM",
    "PartialLabelLoss",
    "PerCaseMetricsCSV",
    "ResumableCheckpointSaver",
    "ResumeFromCheckpoint",
    "SegmentationLoss",
    "TimeBudget",
    "amp_enabled",
    "as_bool",
    "build_loss",
    "build_optimizer",
    "check_options",
    "class_names",
    "dataset_labels",
    "default_output_dir",
    "every_n_iterations",
    "find_model_config",
    "key_metric_score",
    "latest_checkpoint",
    "load_model_config",
    "log_to_file",
    "median_spacing",
    "prepare_batch",
    "prepare_model",
    "prepare_output_dir",
    "read_model_config",
    "resolve_device",
    "resume_checkpoint",
    "run_engine",
    "run_training",
    "target_spacing",
    "training_precision",
    "warmup_cosine",
    "write_run_config",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
