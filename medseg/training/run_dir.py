"""The training run folder: where it is, refusing to clobber an earlier run, finding the checkpoint to resume.

Layout of ``output_dir``::

    run_config.json          what defines the model of this run (medseg.model_spec.MODEL_KEYS): evaluation
                             and inference find it above checkpoints/; shipped as models/model_config.json
    train.log                the log of every run in this folder (appended on resume)
    metrics.csv              one row per epoch (medseg.training.epoch_report.EpochReport)
    checkpoints/checkpoint_epoch=N.pt   the latest epoch: model, optimizer, scheduler, trainer, best-model tracker
    checkpoints/model_best.pt           the weights with the best validation mean Dice so far
    tensorboard/             TensorBoard event files
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch.distributed as dist

from medseg.config import REPO_ROOT
from medseg.errors import MedsegError
from medseg.io.files import atomic_path
from medseg.training.options import as_bool

CHECKPOINT_DIR = "checkpoints"
LATEST_PREFIX = "checkpoint"
_LATEST_PATTERN = re.compile(rf"^{LATEST_PREFIX}_epoch=(\d+)\.pt$")
RUNS_ROOT = REPO_ROOT / "runs" / "ct_unet"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_output_dir(tag: str, runs_root: str | Path | None = None) -> str:
    """``runs/ct_unet/<tag>-<YYYYmmdd-HHMMSS>`` under the repository (git-ignored); the same on every DDP rank."""
    stamp = [time.strftime("%Y%m%d-%H%M%S")]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(stamp, src=0)  # ranks start at slightly different times
    return str(Path(runs_root or RUNS_ROOT) / f"{tag}-{stamp[0]}")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The ``checkpoint_epoch=N.pt`` with the largest N in ``output_dir/checkpoints``, or ``None``."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    found = []
    for path in folder.glob(f"{LATEST_PREFIX}_epoch=*.pt"):
        match = _LATEST_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def prepare_output_dir(output_dir: str | Path, resume: Any = False, protected: str | Path | None = None) -> str:
    """Create ``output_dir`` (and its ``checkpoints`` folder) for a run; return it as an absolute path.

    Args:
        output_dir: the run folder.
        resume: false, true (continue from this folder's latest checkpoint) or a checkpoint path.
        protected: a folder the run must not write into (the bundle's ``models/`` with the shipped model).

    Raises:
        MedsegError: the folder lies inside ``protected``, or it already holds checkpoints of an earlier run and
            this run does not resume (it would mix two runs' checkpoints and metrics).
    """
    path = Path(output_dir).expanduser().resolve()
    if protected is not None:
        guard = Path(protected).expanduser().resolve()
        if path == guard or guard in path.parents:
            raise MedsegError(path, f"training output may not go inside {guard} (it holds the shipped model)")
    if latest_checkpoint(path) is not None and not _resuming(resume):
        raise MedsegError(
            path,
            "already holds checkpoints of an earlier run: pass --resume true to continue it or another --output_dir",
        )
    (path / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    return str(path)


def _resuming(resume: Any) -> bool:
    if isinstance(resume, str) and resume.strip().lower().endswith(".pt"):
        return True
    return as_bool(resume, "resume")


def resume_checkpoint(resume: Any, output_dir: str | Path) -> str | None:
    """The checkpoint to resume from: ``None`` for ``--resume false``, the latest one of ``output_dir`` for
    ``--resume true``, or the given ``.pt`` path.

    Raises:
        MedsegError: ``--resume true`` with no checkpoint in ``output_dir``, or a path that does not exist.
    """
    if isinstance(resume, str) and resume.strip().lower().endswith(".pt"):
        path = Path(resume).expanduser()
        if not path.is_file():
            raise MedsegError(path, "--resume names a checkpoint that does not exist")
        return str(path.resolve())
    if not as_bool(resume, "resume"):
        return None
    latest = latest_checkpoint(output_dir)
    if latest is None:
        raise MedsegError(output_dir, "--resume true but this --output_dir holds no checkpoint_epoch=N.pt")
    return str(latest)


def write_run_config(output_dir: str | Path, values: dict[str, Any], filename: str = "run_config.json") -> str:
    """Write the options that define the model and its preprocessing as JSON (atomically); return the path.

    The file is a valid ``--args_file`` for ``python -m monai.bundle run``, so evaluation and inference with a
    checkpoint of this run rebuild exactly this network and transform chain.
    """
    path = Path(output_dir) / filename
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(values, indent=2, default=jsonable) + "\n")
    return str(path)


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it (arrays and tuples as lists, anything else as its string)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def log_to_file(output_dir: str | Path, filename: str = "train.log") -> str:
    """Also write the root logger's records to ``output_dir/filename`` (appending); return the path."""
    path = Path(output_dir) / filename
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    return str(path)
