"""The shipped ``models/model.pt`` on a patient it never saw: the mask lies on the scan's exact grid, every organ is
found, and the scores stay near those the model card reports (a regression guard for the shipped weights, not a
measurement; the card's figures come from ``scripts/demo.sh``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medseg.config import REPO_ROOT
from medseg.datasets import fold_datalists, prepare_dataset
from medseg.evaluation.metrics import compare_label_maps
from medseg.inference.bundle import read_state_dict
from medseg.inference.segmenter import Segmenter

BUNDLE = REPO_ROOT / "bundles" / "ct_unet"
MODELS = BUNDLE / "models"
# pt_201 is one of the 4 OpenKBP validation patients, outside the shipped model's training cases.
CASE = "pt_201"
# Well below the card's per-case figures for pt_201, so that only a broken model or chain fails.
MIN_MEAN_DICE = 0.60


def test_shipped_files_belong_together() -> None:
    config = json.loads((MODELS / "model_config.json").read_text(encoding="utf-8"))
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text(encoding="utf-8"))
    labels = {int(k): v for k, v in metadata["network_data_format"]["outputs"]["pred"]["channel_def"].items()}
    assert {index: name for name, index in config["labels"].items()} == labels
    state = read_state_dict(MODELS / "model.pt")
    assert all(value.dtype in (torch.float32, torch.int64) for value in state.values())
    scripted = torch.jit.load(str(MODELS / "model.ts"), map_location="cpu")
    window = torch.randn(1, config["in_channels"], *config["patch_size"], generator=torch.Generator().manual_seed(0))
    assert scripted(window).shape == (1, config["num_classes"], *config["patch_size"])


@pytest.mark.data
@pytest.mark.slow
def test_shipped_model_segments_an_unseen_patient(data_root: Path) -> None:
    prepare_dataset("openkbp")
    _, validation = fold_datalists("openkbp", fold=-1)
    case = next(item for item in validation if item["case_id"] == CASE)
    result = Segmenter(BUNDLE, device="cpu").segment(case["image"])
    reference = sitk.ReadImage(case["label"])
    for attribute in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(result.labels, attribute)() == getattr(reference, attribute)()
    scores = compare_label_maps(
        sitk.GetArrayFromImage(result.labels),
        sitk.GetArrayFromImage(reference),
        spacing=reference.GetSpacing()[::-1],
        label_ids=range(1, 8),
    )
    present = [score for score in scores if score.volume_ref_ml > 0]
    assert all(score.volume_pred_ml > 0 for score in present), [s.label_id for s in present if not s.volume_pred_ml]
    assert float(np.mean([score.dice for score in present])) >= MIN_MEAN_DICE
