"""What MONAI's ignite workflows lack for the ``ct_unet`` bundle: option parsing for ``--key value`` overrides,
the run folder, exact resume, the per-epoch metrics CSV with ETA, the fp32 deep-supervision loss wrapper, and
per-case HD95 in millimetres; the model config that pins what a checkpoint was trained with.

The names below load on first use (PEP 562), so that importing one submodule does not import torch, MONAI and ignite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medseg.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from medseg.training.checkpoints import ResumableCheckpointSaver, ResumeFromCheckpoint
    from medseg.training.dataset_info import dataset_labels, median_spacing, target_spacing
    from medseg.training.engines import run_engine
    from medseg.training.epoch_report import EpochReport
    from medseg.training.losses import SegmentationLoss
    from medseg.training.metrics import HausdorffDistanceMM, PerCaseMetricsCSV
    from medseg.training.model_config import MODEL_KEYS, find_model_config, load_model_config, read_model_config
    from medseg.training.options import amp_enabled, as_bool, check_options, resolve_device
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
    "medseg.training.dataset_info": ("dataset_labels", "median_spacing", "target_spacing"),
    "medseg.training.engines": ("run_engine",),
    "medseg.training.epoch_report": ("EpochReport",),
    "medseg.training.losses": ("SegmentationLoss",),
    "medseg.training.metrics": ("HausdorffDistanceMM", "PerCaseMetricsCSV"),
    "medseg.training.model_config": ("MODEL_KEYS", "find_model_config", "load_model_config", "read_model_config"),
    "medseg.training.options": ("amp_enabled", "as_bool", "check_options", "resolve_device"),
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
    "PerCaseMetricsCSV",
    "ResumableCheckpointSaver",
    "ResumeFromCheckpoint",
    "SegmentationLoss",
    "amp_enabled",
    "as_bool",
    "check_options",
    "dataset_labels",
    "default_output_dir",
    "find_model_config",
    "latest_checkpoint",
    "load_model_config",
    "log_to_file",
    "median_spacing",
    "prepare_output_dir",
    "read_model_config",
    "resolve_device",
    "resume_checkpoint",
    "run_engine",
    "target_spacing",
    "write_run_config",
]

__getattr__ = lazy_getattr(__name__, _EXPORTS)
