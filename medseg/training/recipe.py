"""Small factories for the training recipe's variants, so ``train.json`` names a choice instead of switching
between blocks: the optimiser, and a wall-clock budget that sizes the run (the fair way to compare recipes on
one machine, and the way to use a lent GPU for exactly the minutes it is lent)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.optimizers import WarmupCosineSchedule

from medseg.errors import MedsegError

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd")


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    optimizer: str = "adamw",
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-5,
    momentum: float = 0.99,
) -> torch.optim.Optimizer:
    """``adamw`` (AdamW) or ``sgd`` (nesterov SGD with ``momentum``, nnU-Net's choice)."""
    if optimizer == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    raise MedsegError(None, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")


class TimeBudget:
    """End training after ``budget_s`` seconds of wall-clock time, with the learning-rate schedule fitted to it.

    After every epoch the epochs that still fit are estimated from the mean epoch time so far (validation
    included); ``max_epochs`` of the trainer and ``t_total`` of a MONAI ``WarmupCosineSchedule`` are set to match,
    so the cosine reaches its end when the time does. ``budget_s <= 0`` turns the budget off.

    Args:
        budget_s: seconds from the start of the first epoch.
        lr_scheduler: the step-level scheduler (anything with a ``t_total`` attribute), or ``None``.
        round_to: end on a multiple of this many epochs (the validation interval), so the last epoch is validated.
    """

    def __init__(self, budget_s: float, lr_scheduler: Any = None, round_to: int = 1) -> None:
        self.budget_s = float(budget_s or 0)
        self.lr_scheduler = lr_scheduler
        self.round_to = max(1, int(round_to))
        self.start = 0.0

    def attach(self, engine: Engine) -> None:
        if self.budget_s <= 0:
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._fit)

    def _started(self, engine: Engine) -> None:
        self.start = time.monotonic()

    def _fit(self, engine: Engine) -> None:
        elapsed = time.monotonic() - self.start
        done = engine.state.epoch
        fit = done + int((self.budget_s - elapsed) // (elapsed / done))
        fit = max(done, fit - fit % self.round_to)  # end on a validation epoch
        if fit != engine.state.max_epochs:
            engine.state.max_epochs = fit
            if self.lr_scheduler is not None and hasattr(self.lr_scheduler, "t_total"):
                self.lr_scheduler.t_total = fit * max(1, engine.state.epoch_length or 1)
            logger.info(
                "time budget %.0f s: %.0f s used after %d epochs, training %d epochs", self.budget_s, elapsed, done, fit
            )


def warmup_cosine(
    optimizer: torch.optim.Optimizer, dataloader: Any, warmup_epochs: int = 5, max_epochs: int = 300
) -> WarmupCosineSchedule:
    """MONAI ``WarmupCosineSchedule`` stepped per iteration: linear warm-up from 0.1x over ``warmup_epochs``, then
    cosine down to 0.01x of the optimiser's learning rate at ``max_epochs`` (:class:`TimeBudget` may move the end)."""
    steps = max(1, len(dataloader))
    base_lr = float(optimizer.param_groups[0]["lr"])
    return WarmupCosineSchedule(
        optimizer,
        warmup_steps=int(warmup_epochs) * steps,
        t_total=int(max_epochs) * steps,
        end_lr=base_lr * 0.01,
        warmup_multiplier=0.1,
    )


def every_n_iterations(n: int = 10) -> Callable[[Engine, int], bool]:
    """An ignite event filter for ``StatsHandler(iteration_log=...)``: log every ``n``-th iteration."""
    step = max(1, int(n))

    def _filter(engine: Engine, iteration: int) -> bool:
        return iteration % step == 0

    return _filter


def key_metric_score(engine: Engine) -> float:
    """``EarlyStopHandler``'s score: the evaluator's key metric (validation mean Dice)."""
    return float(engine.state.metrics[engine.state.key_metric_name])  # type: ignore[attr-defined]


def prepare_model(
    network: torch.nn.Module,
    device: torch.device,
    init_weights: str | None = None,
    precision: str = "fp32",
    spatial_dims: int = 3,
) -> torch.nn.Module:
    """``network`` on ``device``, first initialised from ``init_weights`` when given: a ``model.pt`` /
    ``model_best.pt`` / ``checkpoint_epoch=N.pt`` of an earlier run with the same network options, read with
    ``weights_only=True``. This is how a run continues from another run's weights with a fresh schedule
    (``--init_weights PATH``); ``--resume true`` instead continues the same run exactly. For ``bf16`` training
    the weights are put in channels-last memory order (same values, same state dict)."""
    if init_weights:
        from pathlib import Path

        from medseg.inference.bundle import read_state_dict

        path = Path(str(init_weights))
        if not path.is_file():
            raise MedsegError(path, "--init_weights: no such file")
        try:
            network.load_state_dict(read_state_dict(path))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise MedsegError(path, f"--init_weights does not fit the network ({first})") from err
        logger.info("initialised the network from %s", path)
    from medseg.networks.factory import prepare_network

    return prepare_network(network.to(device), "bf16" if precision == "bf16" else "fp32", spatial_dims)
