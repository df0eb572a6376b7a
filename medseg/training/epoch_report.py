"""One line per epoch on the log and one row per epoch in ``metrics.csv``, with the time left.

Columns: ``epoch, train_loss, lr, val_mean_dice, dice_<class>..., epoch_time_s`` (validation columns are empty on
epochs without validation). The per-class Dice is the mean over validation cases of MONAI ``MeanDice``'s
per-case, per-class values (``save_details``), ignoring cases where the class is absent (NaN). The file is
rewritten atomically each epoch; on resume the rows of epochs before the restart are kept.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from torch.optim import Optimizer

from medseg.io.files import atomic_path

logger = logging.getLogger("medseg.training")


def _format_duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EpochReport:
    """Trainer handler writing ``csv_path`` and logging a progress line with an ETA after every epoch.

    Attach it after ``ValidationHandler`` so that an epoch's validation has run when the row is written.

    Args:
        csv_path: the metrics CSV.
        optimizer: its first parameter group's learning rate is reported.
        evaluator: the validation engine (``None``: no validation columns).
        class_names: names of the foreground classes, in channel order 1..N.
        key_metric: the evaluator's mean-Dice metric name (its ``metric_details`` give the per-class values).
    """

    def __init__(
        self,
        csv_path: str | Path,
        optimizer: Optimizer,
        evaluator: Engine | None = None,
        class_names: Sequence[str] = (),
        key_metric: str = "val_mean_dice",
    ) -> None:
        self.csv_path = Path(csv_path)
        self.optimizer = optimizer
        self.evaluator = evaluator
        self.class_names = list(class_names)
        self.key_metric = key_metric
        self.columns = ["epoch", "train_loss", "lr", key_metric]
        self.columns += [f"dice_{name}" for name in self.class_names] + ["epoch_time_s"]
        self.rows: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._epoch_start = 0.0
        self._run_times: list[float] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, engine: Engine) -> None:
        # after a resume engine.state.epoch is the last finished epoch: keep the rows up to it
        self.rows = [row for row in self._read_existing() if int(row["epoch"]) <= engine.state.epoch]

    def _read_existing(self) -> list[dict[str, Any]]:
        if not self.csv_path.is_file():
            return []
        with self.csv_path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def _epoch_started(self, engine: Engine) -> None:
        self._losses = []
        self._epoch_start = time.perf_counter()

    def _iteration_completed(self, engine: Engine) -> None:
        output = engine.state.output
        item = output[0] if isinstance(output, list) and output else output
        if isinstance(item, dict) and "loss" in item:
            self._losses.append(float(item["loss"]))

    def _validation(self, epoch: int) -> tuple[float | None, list[float | None]]:
        if self.evaluator is None or self.evaluator.state.epoch != epoch:
            return None, [None] * len(self.class_names)
        metrics = self.evaluator.state.metrics
        mean = metrics.get(self.key_metric)
        details = getattr(self.evaluator.state, "metric_details", {}).get(self.key_metric)
        per_class: list[float | None] = [None] * len(self.class_names)
        if details is not None:
            values = torch.as_tensor(details, dtype=torch.float64)  # (cases, classes), NaN = class absent
            values = values.reshape(-1, values.shape[-1])
            for index in range(min(values.shape[1], len(self.class_names))):
                column = values[:, index]
                column = column[~torch.isnan(column)]
                per_class[index] = float(column.mean()) if column.numel() else None
        return (None if mean is None else float(mean)), per_class

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        max_epochs = engine.state.max_epochs or epoch
        elapsed = time.perf_counter() - self._epoch_start
        self._run_times.append(elapsed)
        loss = sum(self._losses) / len(self._losses) if self._losses else math.nan
        lr = float(self.optimizer.param_groups[0]["lr"])
        val_mean, per_class = self._validation(epoch)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": f"{loss:.6f}", "lr": f"{lr:.6e}"}
        row[self.key_metric] = "" if val_mean is None else f"{val_mean:.6f}"
        for name, value in zip(self.class_names, per_class, strict=True):
            row[f"dice_{name}"] = "" if value is None else f"{value:.6f}"
        row["epoch_time_s"] = f"{elapsed:.2f}"
        self.rows.append(row)
        self._write()
        self._log_progress(epoch, max_epochs, loss, lr, val_mean)

    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_path(self.csv_path) as tmp:
            tmp.write_text(buffer.getvalue())

    def _log_progress(self, epoch: int, max_epochs: int, loss: float, lr: float, val_mean: float | None) -> None:
        per_epoch = sum(self._run_times) / len(self._run_times)
        scored = [(float(r[self.key_metric]), int(r["epoch"])) for r in self.rows if r.get(self.key_metric)]
        parts = [f"epoch {epoch}/{max_epochs}", f"loss {loss:.4f}", f"lr {lr:.2e}"]
        if val_mean is not None:
            best, best_epoch = max(scored)
            parts.append(f"val mean Dice {val_mean:.4f} (best {best:.4f} @ {best_epoch})")
        parts.append(f"{self._run_times[-1]:.1f} s")
        parts.append(f"ETA {_format_duration(per_epoch * (max_epochs - epoch))}")
        logger.info("  ".join(parts))
