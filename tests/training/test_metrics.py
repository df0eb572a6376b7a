from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from medseg.evaluation.metrics import compare_label_maps
from medseg.training import HausdorffDistanceMM, PerCaseMetricsCSV


def _one_hot(points: list[tuple[int, int, int, int]], spacing: tuple[float, float, float]) -> MetaTensor:
    """(3, 10, 10, 8) one-hot with the given (class, i, j, k) voxels set; class 0 elsewhere."""
    labels = torch.zeros(10, 10, 8, dtype=torch.long)
    for cls, i, j, k in points:
        labels[i, j, k] = cls
    one_hot = torch.nn.functional.one_hot(labels, 3).permute(3, 0, 1, 2).float()
    return MetaTensor(one_hot, affine=torch.diag(torch.tensor([*spacing, 1.0])))


@pytest.mark.filterwarnings("ignore:the (ground truth|prediction) of class")
def test_hd95_is_in_millimetres_of_each_case() -> None:
    handler = HausdorffDistanceMM(output_transform=lambda out: out)
    handler.reset()
    # case 1: class 1 shifted by 2 slices of 3 mm -> 6 mm; class 2 absent from the reference -> NaN
    handler.update(([_one_hot([(1, 5, 5, 4)], (1.0, 1.0, 3.0))], [_one_hot([(1, 5, 5, 2)], (1.0, 1.0, 3.0))]))
    # case 2, other spacing: class 1 shifted 1 voxel along i at 0.5 mm, class 2 exact
    handler.update(
        (
            [_one_hot([(1, 3, 3, 3), (2, 7, 7, 1)], (0.5, 2.0, 2.0))],
            [_one_hot([(1, 4, 3, 3), (2, 7, 7, 1)], (0.5, 2.0, 2.0))],
        )
    )
    buffer = handler.metric_fn.get_buffer()
    assert buffer[0, 0].item() == pytest.approx(6.0)
    assert math.isnan(buffer[0, 1].item())
    assert buffer[1].tolist() == pytest.approx([0.5, 0.0])
    # MONAI "mean": classes first (NaN ignored), then cases
    assert handler.metric_fn.aggregate().item() == pytest.approx((6.0 + (0.5 + 0.0) / 2) / 2)


def test_per_case_csv_lists_every_case_and_class(tmp_path: Path) -> None:
    path = tmp_path / "per_case.csv"
    engine = Engine(lambda e, batch: None)
    writer = PerCaseMetricsCSV(path, ["dice", "hd95"], ["Brainstem", "Mandible"])
    writer.attach(engine)

    def fake_metrics(e: Engine) -> None:
        e.state.metric_details = {
            "dice": torch.tensor([[0.9, float("nan")], [0.8, 0.7]]),
            "hd95": torch.tensor([[1.5, float("nan")], [2.0, 3.25]]),
        }

    engine.add_event_handler(Events.EPOCH_COMPLETED, fake_metrics)
    engine.run(
        [[{"case_id": "pt_4"}], [{"image": MetaTensor(torch.zeros(1), meta={"filename_or_obj": "/x/pt_9.nii.gz"})}]]
    )
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["case_id", "class_id", "class_name", "dice", "hd95"]
    assert rows[1:] == [
        ["pt_4", "1", "Brainstem", "0.900000", "1.500000"],
        ["pt_4", "2", "Mandible", "", ""],
        ["pt_9.nii.gz", "1", "Brainstem", "0.800000", "2.000000"],
        ["pt_9.nii.gz", "2", "Mandible", "0.700000", "3.250000"],
    ]


def test_hd95_of_a_missing_organ_follows_medseg_evaluate() -> None:
    """One rule with :func:`medseg.evaluation.metrics.compare_label_maps`: an organ in one map only scores the
    image diagonal (not inf, not NaN), in neither map NaN, and the values equal medseg evaluate's."""
    spacing = (1.0, 1.0, 3.0)
    pred = _one_hot([(1, 5, 5, 4)], spacing)  # class 2 missing from the prediction
    ref = _one_hot([(1, 5, 5, 2), (2, 7, 7, 1)], spacing)
    handler = HausdorffDistanceMM(output_transform=lambda out: out)
    handler.reset()
    handler.update(([pred], [ref]))
    handler.update(([ref], [pred]))  # class 2 missing from the reference
    diagonal = math.sqrt(10**2 + 10**2 + (8 * 3.0) ** 2)
    assert handler.metric_fn.get_buffer().flatten().tolist() == pytest.approx([6.0, diagonal] * 2)
    expected = compare_label_maps(pred.argmax(0).numpy(), ref.argmax(0).numpy(), spacing, label_ids=[1, 2])
    assert [m.hd95_mm for m in expected] == pytest.approx([6.0, diagonal])
    assert [m.status for m in expected] == ["ok", "missing_in_pred"]
