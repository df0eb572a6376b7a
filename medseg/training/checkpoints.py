"""Resuming training exactly where it stopped.

MONAI's ``CheckpointLoader`` restores the model, optimizer, scheduler and trainer state and keeps a raised
``max_epochs`` (MONAI#1757). Two gaps remain, closed here:

- the best-model ``CheckpointSaver`` forgets its best score on restart, so the first validation after a resume
  would overwrite ``model_best.pt`` with a worse model. :class:`ResumableCheckpointSaver` exposes that tracker's
  ``state_dict`` so the latest checkpoint can carry it.
- a learning-rate scheduler's state holds its horizon (``WarmupCosineSchedule.t_total``). Restored as saved, a run
  resumed with a larger ``--max_epochs`` would decay on the old schedule and then climb again.
  :class:`ResumeFromCheckpoint` takes only the position (``last_epoch``) from the checkpoint and keeps the shape
  the current run configured.
  It also refuses a checkpoint that already reached ``max_epochs`` (ignite would silently restart at epoch 1).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver
from torch.optim.lr_scheduler import LRScheduler

from medseg.errors import MedsegError

logger = logging.getLogger(__name__)

# What a scheduler's state says about *where* it is; everything else (t_total, warmup, base_lrs...) is *shape*.
_POSITION_KEYS = ("last_epoch", "_step_count")


class ResumableCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` that survives a restart.

    - its best-key-metric tracker can be saved in and restored from a checkpoint (``state_dict``);
    - :meth:`adopt` makes the "keep the latest ``n_saved``" rotation aware of the checkpoint a run resumed from,
      so that file is replaced by the next save instead of lingering forever;
    - ``None`` entries of ``save_dict`` (objects disabled on this DDP rank, such as the best-model saver that lives
      on rank 0 only) are left out.
    """

    def __init__(self, save_dir: str, save_dict: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(save_dir, {name: obj for name, obj in save_dict.items() if obj is not None}, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        if self._key_metric_checkpoint is None:
            return {}
        return dict(self._key_metric_checkpoint.state_dict())

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            super().load_state_dict(state_dict)

    def adopt(self, path: str | Path, epoch: int) -> None:
        """Treat ``path`` (in this saver's folder) as the interval checkpoint it saved at ``epoch``."""
        path = Path(path)
        if self._interval_checkpoint is None or path.parent.resolve() != Path(self.save_dir).resolve():
            return
        saved = self._interval_checkpoint.state_dict()["_saved"]
        self._interval_checkpoint.load_state_dict({"_saved": [*saved, (epoch, path.name)]})


class ResumeFromCheckpoint:
    """Trainer handler: at ``STARTED`` restore ``load_dict`` from ``load_path`` (no-op when ``load_path`` is None).

    Args:
        load_path: a checkpoint written by the run's "latest" ``CheckpointSaver`` (or ``None``: start fresh).
        load_dict: name -> object with ``load_state_dict`` (``model``, ``optimizer``, ``lr_scheduler``, ``trainer``,
            ``best_saver``), the same names as the saver's ``save_dict``.
        lr_scheduler: the scheduler in ``load_dict`` whose shape must come from the current configuration.
        map_location: where to map the stored tensors.
        latest_saver: the saver writing this run's latest checkpoints; it adopts ``load_path`` (when that lies in
            its folder) so that its rotation replaces the file.
    """

    def __init__(
        self,
        load_dict: Mapping[str, Any],
        load_path: str | None = None,
        lr_scheduler: LRScheduler | None = None,
        map_location: str | torch.device | None = "cpu",
        latest_saver: ResumableCheckpointSaver | None = None,
    ) -> None:
        self.load_path = load_path
        self.latest_saver = latest_saver
        # None entries are objects disabled on this DDP rank (e.g. the best-model saver lives on rank 0 only)
        self.load_dict = {name: obj for name, obj in load_dict.items() if obj is not None}
        self.lr_scheduler = lr_scheduler
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        if self.load_path:
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        assert self.load_path is not None
        max_epochs = engine.state.max_epochs
        configured = self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None
        try:
            # MONAI annotates map_location as a dict, but hands it to torch.load, which also takes a device
            loader = CheckpointLoader(self.load_path, self.load_dict, map_location=cast(Any, self.map_location))
            loader(engine)
        except ValueError as err:  # MONAI: the checkpoint's epoch exceeds max_epochs
            raise MedsegError(self.load_path, f"cannot resume: {err}") from err
        if max_epochs is not None and engine.state.epoch >= max_epochs:
            raise MedsegError(
                self.load_path,
                f"was saved after epoch {engine.state.epoch}, and --max_epochs is {max_epochs}: "
                f"pass --max_epochs larger than {engine.state.epoch} to train further",
            )
        if self.lr_scheduler is not None and configured is not None:
            self._keep_configured_shape(configured)
        if self.latest_saver is not None:
            self.latest_saver.adopt(self.load_path, engine.state.epoch)
        logger.info("resumed from %s at epoch %d of %s", self.load_path, engine.state.epoch + 1, max_epochs)

    def _keep_configured_shape(self, configured: dict[str, Any]) -> None:
        scheduler = self.lr_scheduler
        assert scheduler is not None
        restored = scheduler.state_dict()
        merged = dict(configured)
        merged.update({key: restored[key] for key in _POSITION_KEYS if key in restored})
        scheduler.load_state_dict(merged)
        with warnings.catch_warnings():  # get_lr() outside step() warns; here it is the intended closed form
            warnings.simplefilter("ignore", UserWarning)
            rates = scheduler.get_lr()
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = list(rates)  # what get_last_lr() reports
