from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.optimizers import WarmupCosineSchedule

from medseg.errors import MedsegError
from medseg.training import ResumableCheckpointSaver, ResumeFromCheckpoint

EPOCH_LENGTH = 3


class _Run:
    """A minimal trainer: linear model, AdamW, warm-up + cosine stepped per iteration, latest-checkpoint saver."""

    def __init__(self, folder: Path, max_epochs: int) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(2, 1)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=0.1)
        self.scheduler = WarmupCosineSchedule(self.optimizer, warmup_steps=2, t_total=max_epochs * EPOCH_LENGTH)
        self.max_epochs = max_epochs
        self.epochs_run: list[int] = []
        self.engine = Engine(self._step)
        self.engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: self.epochs_run.append(e.state.epoch))
        self.saver = ResumableCheckpointSaver(
            save_dir=str(folder), save_dict=self.objects(), save_interval=1, n_saved=1, epoch_level=True
        )

    def _step(self, engine: Engine, batch: torch.Tensor) -> float:
        self.optimizer.zero_grad()
        loss = self.model(batch).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def objects(self) -> dict:
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "lr_scheduler": self.scheduler,
            "trainer": self.engine,
        }

    def run(self, resume_from: str | None = None) -> None:
        ResumeFromCheckpoint(self.objects(), resume_from, lr_scheduler=self.scheduler, latest_saver=self.saver).attach(
            self.engine
        )
        self.saver.attach(self.engine)
        self.engine.run([torch.ones(4, 2)] * EPOCH_LENGTH, max_epochs=self.max_epochs)


def test_resume_continues_at_next_epoch_on_the_new_schedule(tmp_path: Path) -> None:
    first = _Run(tmp_path, max_epochs=2)
    first.run()
    assert first.epochs_run == [1, 2]
    saved = tmp_path / "checkpoint_epoch=2.pt"
    assert [p.name for p in tmp_path.iterdir()] == [saved.name]

    longer = _Run(tmp_path, max_epochs=4)  # MONAI#1757: raising max_epochs on resume
    start_weights: list[torch.Tensor] = []
    longer.engine.add_event_handler(
        Events.EPOCH_STARTED(once=3), lambda e: start_weights.append(longer.model.weight.detach().clone())
    )
    longer.run(resume_from=str(saved))
    assert longer.epochs_run == [3, 4]
    assert torch.equal(start_weights[0], first.model.weight.detach())  # continued from the saved weights
    assert longer.scheduler.t_total == 4 * EPOCH_LENGTH  # horizon of this run, not the checkpoint's
    assert longer.scheduler.last_epoch == 4 * EPOCH_LENGTH
    assert longer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine reached its end
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_epoch=4.pt"]  # the resumed file was rotated


def test_resumed_learning_rate_is_the_new_schedule_at_the_saved_step(tmp_path: Path) -> None:
    _Run(tmp_path, max_epochs=1).run()
    resumed = _Run(tmp_path, max_epochs=4)
    seen: list[float] = []
    resumed.engine.add_event_handler(
        Events.EPOCH_STARTED, lambda e: seen.append(resumed.optimizer.param_groups[0]["lr"])
    )
    resumed.run(resume_from=str(tmp_path / "checkpoint_epoch=1.pt"))
    reference = WarmupCosineSchedule(torch.optim.SGD([torch.zeros(1)], lr=0.1), warmup_steps=2, t_total=12)
    assert seen[0] == pytest.approx(0.1 * reference.lr_lambda(EPOCH_LENGTH))


def test_resume_refuses_a_finished_run(tmp_path: Path) -> None:
    _Run(tmp_path, max_epochs=2).run()
    again = _Run(tmp_path, max_epochs=2)
    with pytest.raises(MedsegError, match="--max_epochs larger than 2"):
        again.run(resume_from=str(tmp_path / "checkpoint_epoch=2.pt"))


def test_best_saver_tracker_survives_a_restart(tmp_path: Path) -> None:
    def evaluator_with(scores: list[float], saver: ResumableCheckpointSaver) -> Engine:
        engine = Engine(lambda e, b: None)
        engine.add_event_handler(
            Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(dice=scores[e.state.epoch - 1])
        )
        saver.attach(engine)
        engine.run([0], max_epochs=len(scores))
        return engine

    model = torch.nn.Linear(1, 1)

    def best_saver() -> ResumableCheckpointSaver:
        return ResumableCheckpointSaver(
            save_dir=str(tmp_path),
            save_dict={"model": model},
            save_key_metric=True,
            key_metric_name="dice",
            key_metric_filename="model_best.pt",
        )

    first = best_saver()
    evaluator_with([0.5, 0.8], first)
    state = first.state_dict()
    assert [item[0] for item in state["_saved"]] == [0.8]

    best = tmp_path / "model_best.pt"
    stamp = best.stat().st_mtime_ns
    restarted = best_saver()
    restarted.load_state_dict(state)
    with torch.no_grad():
        model.weight.fill_(123.0)
    evaluator_with([0.6], restarted)  # worse than 0.8: must not replace the best model
    assert best.stat().st_mtime_ns == stamp
    assert float(torch.load(best, weights_only=True)["weight"]) != 123.0
