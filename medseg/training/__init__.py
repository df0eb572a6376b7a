"""What MONAI's ignite workflows lack for the ``ct_unet`` bundle: option parsing for ``--key value`` overrides,
the run folder, exact resume, the per-epoch metrics CSV with ETA, the fp32 deep-supervision loss wrapper, and
per-case HD95 in millimetres."""

from medseg.training.checkpoints import ResumableCheckpointSaver, ResumeFromCheckpoint
from medseg.training.dataset_info import dataset_labels, median_spacing, target_spacing
from medseg.training.epoch_report import EpochReport
from medseg.training.losses import SegmentationLoss
from medseg.training.metrics import HausdorffDistanceMM, PerCaseMetricsCSV
from medseg.training.options import amp_enabled, as_bool, check_options, resolve_device
from medseg.training.run_dir import (
    default_output_dir,
    latest_checkpoint,
    log_to_file,
    prepare_output_dir,
    resume_checkpoint,
    write_run_config,
)

__all__ = [
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
    "latest_checkpoint",
    "log_to_file",
    "median_spacing",
    "prepare_output_dir",
    "resolve_device",
    "resume_checkpoint",
    "target_spacing",
    "write_run_config",
]
