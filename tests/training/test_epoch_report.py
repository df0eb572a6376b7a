from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from medseg.training import EpochReport


def _engines(losses: list[float], validate_every: int) -> tuple[Engine, Engine, torch.optim.Optimizer]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    trainer = Engine(lambda e, b: [{"loss": torch.tensor(losses[(e.state.iteration - 1) % len(losses)])}])
    evaluator = Engine(lambda e, b: None)

    def validate(engine: Engine) -> None:
        if engine.state.epoch % validate_every == 0:
            evaluator.run([0], max_epochs=engine.state.epoch)  # as ValidationHandler: evaluator epoch = trainer's
            evaluator.state.metrics["val_mean_dice"] = 0.1 * engine.state.epoch
            # two cases x three classes; NaN = class absent from that case
            evaluator.state.metric_details = {
                "val_mean_dice": torch.tensor([[0.2, float("nan"), 0.6], [0.4, 0.5, 0.8]])
            }

    evaluator.state.epoch = 0
    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    return trainer, evaluator, optimizer


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_columns_and_progress_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trainer, evaluator, optimizer = _engines([1.0, 3.0], validate_every=2)
    report = EpochReport(tmp_path / "metrics.csv", optimizer, evaluator, class_names=["A", "B", "C"])
    report.attach(trainer)
    with caplog.at_level(logging.INFO, logger="medseg.training"):
        trainer.run([0, 1], max_epochs=3)
    rows = _rows(tmp_path / "metrics.csv")
    assert list(rows[0]) == ["epoch", "train_loss", "lr", "val_mean_dice", "dice_A", "dice_B", "dice_C", "epoch_time_s"]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["train_loss"]) == pytest.approx(2.0) and rows[0]["val_mean_dice"] == ""
    assert float(rows[1]["val_mean_dice"]) == pytest.approx(0.2)
    assert [float(rows[1][f"dice_{c}"]) for c in "ABC"] == pytest.approx([0.3, 0.5, 0.7])  # NaN ignored for B
    assert float(rows[1]["lr"]) == pytest.approx(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "medseg.training"]
    assert len(lines) == 3 and lines[1].startswith("epoch 2/3") and "val mean Dice 0.2000 (best 0.2000 @ 2)" in lines[1]
    assert "ETA 0:00:00" in lines[2]


def test_resume_keeps_earlier_rows_and_drops_later_ones(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    trainer, evaluator, optimizer = _engines([1.0], validate_every=1)
    EpochReport(path, optimizer, evaluator, class_names=["A", "B", "C"]).attach(trainer)
    trainer.run([0], max_epochs=3)
    # a resumed run restarts after epoch 2 (epoch 3's row came from the interrupted run and is replaced)
    resumed, evaluator2, optimizer2 = _engines([5.0], validate_every=1)
    resumed.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", 2))
    EpochReport(path, optimizer2, evaluator2, class_names=["A", "B", "C"]).attach(resumed)
    resumed.run([0], max_epochs=4)
    rows = _rows(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert [float(r["train_loss"]) for r in rows] == [1.0, 1.0, 5.0, 5.0]
