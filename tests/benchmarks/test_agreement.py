"""Confusion-count Dice, checked by hand and against medseg's MONAI-based metrics."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.agreement import dice_per_label
from medseg.evaluation import compare_label_maps


def test_hand_checked_dice() -> None:
    first = np.array([[0, 1, 1], [2, 2, 0]])
    second = np.array([[0, 1, 0], [2, 1, 0]])
    # label 1: |A|=2, |B|=2, overlap 1 -> 0.5; label 2: |A|=2, |B|=1, overlap 1 -> 2/3; label 3: nowhere
    assert dice_per_label(first, second, [1, 2, 3]) == {1: 0.5, 2: pytest.approx(2 / 3), 3: None}


def test_matches_compare_label_maps() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    second = np.where(rng.random(first.shape) < 0.8, first, rng.integers(0, 4, size=first.shape)).astype(np.uint8)
    ours = dice_per_label(first, second, [1, 2, 3])
    theirs = {m.label_id: m.dice for m in compare_label_maps(first, second, (1.0, 1.0, 1.0), label_ids=[1, 2, 3])}
    for label in (1, 2, 3):
        assert ours[label] == pytest.approx(theirs[label], abs=1e-6)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_label(np.zeros((2, 2)), np.zeros((2, 3)), [1])
