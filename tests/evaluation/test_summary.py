from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.evaluation.metrics import (
    STATUS_BOTH_EMPTY,
    STATUS_MISSING_IN_PRED,
    STATUS_OK,
    LabelMetrics,
)
from medseg.evaluation.summary import bootstrap_ci, format_table, summarize, summarize_metric

NAN = math.nan


def test_bootstrap_ci_is_reproducible_and_brackets_the_mean() -> None:
    values = [0.91, 0.85, 0.95, 0.7, 0.88, 0.93]
    low, high = bootstrap_ci(values, seed=0)
    assert (low, high) == bootstrap_ci(values, seed=0)
    assert low < np.mean(values) < high
    assert min(values) <= low and high <= max(values)
    # The percentile-bootstrap interval of the mean is close to the t-interval for well-behaved data.
    half_width = 2.571 * np.std(values, ddof=1) / np.sqrt(len(values))
    assert high - low == pytest.approx(2 * half_width, rel=0.35)


def test_degenerate_intervals() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([0.8]))
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    empty = summarize_metric([NAN, NAN])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_summarize_counts_statuses_and_skips_both_empty() -> None:
    results = {
        "a": [LabelMetrics(1, STATUS_OK, 0.8, 2.0, 0.9, 10.0, 11.0)],
        "b": [LabelMetrics(1, STATUS_MISSING_IN_PRED, 0.0, 400.0, 0.0, 0.0, 12.0)],
        "c": [LabelMetrics(1, STATUS_BOTH_EMPTY, NAN, NAN, NAN, 0.0, 0.0)],
        "d": [LabelMetrics(1, STATUS_OK, 0.6, 4.0, 0.7, 9.0, 9.5)],
    }
    (liver, never) = summarize(results, {1: "liver", 2: "spleen"})
    assert (liver.label, liver.n, liver.n_both_empty, liver.n_missing_in_pred) == ("liver", 3, 1, 1)
    assert liver.dice.mean == pytest.approx(1.4 / 3)
    assert liver.dice.median == pytest.approx(0.6)
    assert liver.hd95_mm.mean == pytest.approx(406 / 3)
    assert liver.nsd.median == pytest.approx(0.7)
    assert liver.dice.ci_low <= liver.dice.mean <= liver.dice.ci_high
    assert (never.label, never.n, never.n_both_empty) == ("spleen", 0, 4)
    table = format_table([liver, never], tolerance_mm=2.0)
    assert "liver" in table and "spleen" not in table
    assert "NSD@2mm" in table and "1 label(s) absent" in table and "bootstrap" in table
